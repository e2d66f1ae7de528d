"""Type stubs of the compiled module ``tokensieve._core`` (checked with ``mypy.stubtest``)."""

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DocumentBatchReader",
    "FastTextModel",
    "ImportanceModel",
    "NgramFeaturizer",
    "__version__",
    "parse_json_lines",
    "read_batches",
    "resolve_num_threads",
    "scan_files",
    "tokenize",
    "train_supervised",
    "write_selected_files",
    "write_selected_texts",
]
__version__: str

_Csr = tuple[npt.NDArray[np.int64], npt.NDArray[np.int32 | np.int64], npt.NDArray[np.int32 | np.int64]]
_Report = dict[str, Any]

@final
class NgramFeaturizer:
    """A hashed n-gram feature space and the featuriser over it."""

    def __new__(
        cls, *, ngrams: int, buckets: int, tokenizer: str, hash: str, lowercase: bool
    ) -> NgramFeaturizer: ...
    @property
    def ngrams(self) -> int: ...
    @property
    def buckets(self) -> int: ...
    @property
    def tokenizer(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def lowercase(self) -> bool: ...
    def transform_texts(
        self, texts: object, *, on_error: str = "raise", num_threads: int | None = None
    ) -> tuple[_Csr, _Report]: ...
    def sum_counts_texts(
        self,
        texts: object,
        *,
        include: npt.NDArray[np.bool_] | None = None,
        on_error: str = "skip",
        num_threads: int | None = None,
        chunk_words: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], _Report]: ...
    def sum_counts_files(
        self,
        paths: Sequence[str | PathLike[str]],
        *,
        include: npt.NDArray[np.bool_] | None = None,
        text_field: str = "text",
        on_error: str = "skip",
        num_threads: int | None = None,
        progress: Callable[[int, int], object] | None = None,
        chunk_words: int | None = None,
        spill: str | PathLike[str] | None = None,
    ) -> tuple[npt.NDArray[np.int64], _Report]: ...
    def transform_ids(
        self, ids: npt.NDArray[Any], offsets: npt.NDArray[np.int64], *, num_threads: int | None = None
    ) -> _Csr: ...
    def sum_counts_ids(
        self, ids: npt.NDArray[Any], offsets: npt.NDArray[np.int64], *, num_threads: int | None = None
    ) -> npt.NDArray[np.int64]: ...

def tokenize(text: str, *, tokenizer: str, lowercase: bool) -> list[str]:
    """The tokens of `text` as the featuriser sees them."""

def resolve_num_threads(num_threads: int | None = None) -> int:
    """The thread count a call with `num_threads` would use."""

def scan_files(
    paths: Sequence[str | PathLike[str]],
    *,
    text_field: str = "text",
    on_error: str = "skip",
    num_threads: int | None = None,
) -> _Report:
    """Reads `paths` and returns the report of what was found, without keeping any text."""

def parse_json_lines(
    lines: Sequence[bytes], *, text_field: str = "text", id_field: str | None = None
) -> list[tuple[str | None, str | None, tuple[str, str] | None]]:
    """The verdict of the readers on each of `lines` (JSON Lines records without their line
    breaks), with the `id_field` of each document (see `tokensieve_core::io::parse_record`)."""

def read_batches(
    paths: Sequence[str | PathLike[str]],
    *,
    text_field: str = "text",
    on_error: str = "skip",
    num_threads: int | None = None,
    batch_rows: int = 4096,
) -> DocumentBatchReader:
    """Starts reading `paths` on a thread of its own; iterate the returned object for the batches."""

@final
class DocumentBatchReader:
    """The documents of corpus files in batches: each item is `(source, lines, (schema, array))`,
    the file's index, the uint64 line (or row) of each document and the texts as Arrow
    PyCapsules of a large_string array. The end of the iteration raises the read's error, if
    any; then `report()` describes the whole read."""

    def __iter__(self) -> DocumentBatchReader: ...
    def __next__(self) -> tuple[int, npt.NDArray[np.uint64], tuple[object, object]]: ...
    def report(self) -> _Report:
        """The report of the read, once every batch has been taken."""

_Scored = tuple[npt.NDArray[np.float64], npt.NDArray[np.uint32], _Report]

@final
class ImportanceModel:
    """A feature space with fitted `log_diff` rows, one per target."""

    def __new__(cls, featurizer: NgramFeaturizer, log_diff: npt.NDArray[np.float64]) -> ImportanceModel: ...
    def score_texts(
        self,
        texts: object,
        *,
        on_error: str = "skip",
        num_threads: int | None = None,
        chunk_words: int | None = None,
    ) -> _Scored: ...
    def score_spilled(
        self,
        path: str | PathLike[str],
        *,
        expected_documents: int | None = None,
        num_threads: int | None = None,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint32]]: ...
    def score_files(
        self,
        paths: Sequence[str | PathLike[str]],
        *,
        text_field: str = "text",
        on_error: str = "skip",
        num_threads: int | None = None,
        progress: Callable[[int, int], object] | None = None,
        chunk_words: int | None = None,
        expected_documents: int | None = None,
    ) -> _Scored: ...

def write_selected_files(
    paths: Sequence[str | PathLike[str]],
    documents_per_file: Sequence[int],
    skipped_lines: Sequence[Sequence[int]] | None,
    copies: npt.NDArray[np.unsignedinteger],
    out_dir: str | PathLike[str],
    *,
    format: str,
    text_field: str = "text",
    on_error: str = "skip",
    num_threads: int | None = None,
    chunk_words: int | None = None,
) -> list[tuple[int, str, int]]:
    """Writes `copies[k]` copies of the k-th document of `paths` into `out_dir` shards
    (`copies`: contiguous uint8 or uint32).

    `skipped_lines`, per file the ascending lines of its skipped records other than blank lines
    (when all are known), lets JSONL files be copied line by line without parsing."""

def write_selected_texts(
    texts: object,
    copies: npt.NDArray[np.unsignedinteger],
    path: str | PathLike[str],
    *,
    format: str,
    text_field: str = "text",
    on_error: str = "skip",
    chunk_words: int | None = None,
) -> int:
    """Writes `copies[k]` copies of the k-th document among `texts` to the shard `path`."""

@final
class FastTextModel:
    """A supervised fastText model (`.bin` or `.ftz`)."""

    def __new__(
        cls, path: str | PathLike[str], *, shared_input: npt.NDArray[np.float32] | None = None
    ) -> FastTextModel:
        """Reads the model at `path`; with `shared_input` (a read-only float32 array equal to the
        file's dense input matrix), uses that array's memory instead of a copy of its own."""
    def input_matrix(self) -> npt.NDArray[np.float32] | None:
        """The dense input matrix (`[rows, dim]`) as a read-only array over the model's own
        memory, or None for a quantised model."""
    def save(self, path: str | PathLike[str]) -> None:
        """Writes the model in fastText's format (version 12)."""
    @property
    def path(self) -> Path: ...
    @property
    def dim(self) -> int: ...
    @property
    def quantized(self) -> bool: ...
    def args(self) -> dict[str, Any]:
        """The arguments stored in the file, with the format `version` and the `loss` name."""
    def entries(self, *, labels: bool) -> tuple[list[bytes], npt.NDArray[np.int64]]:
        """The dictionary entries (`labels=False`: words, else labels) as bytes, with their counts."""
    def label_id(self, label: str) -> int | None:
        """The id of a label (its full name, prefix included), or None."""
    def predict_batch(
        self,
        texts: object,
        *,
        k: int = 1,
        threshold: float = 0.0,
        newline: str = "error",
        strip: bool = False,
        num_threads: int | None = None,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
    def score_texts(
        self,
        texts: object,
        *,
        label: int,
        newline: str = "error",
        strip: bool = False,
        on_error: str = "skip",
        num_threads: int | None = None,
    ) -> tuple[npt.NDArray[np.float32], _Report]: ...
    def score_files(
        self,
        paths: Sequence[str | PathLike[str]],
        *,
        label: int,
        newline: str = "error",
        strip: bool = False,
        text_field: str = "text",
        on_error: str = "skip",
        num_threads: int | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> tuple[npt.NDArray[np.float32], _Report]:
        """The same over the documents of corpus files, streamed.

        `progress(bytes_read, documents)` is called after each batch of documents."""
    def word_vector(self, word: str) -> npt.NDArray[np.float32]:
        """fastText's word vector: the average of the word's row and character n-gram rows."""
    def sentence_vector(
        self, text: str, *, newline: str = "error", strip: bool = False
    ) -> npt.NDArray[np.float32]:
        """fastText's sentence vector of a supervised model: the average of the text's rows."""

def train_supervised(
    *,
    path: str | PathLike[str] | None = None,
    data: bytes | None = None,
    lr: float,
    dim: int,
    ws: int,
    epoch: int,
    min_count: int,
    min_count_label: int,
    minn: int,
    maxn: int,
    neg: int,
    word_ngrams: int,
    loss: str,
    bucket: int,
    thread: int,
    lr_update_rate: int,
    t: float,
    label: str,
    seed: int,
    progress: Callable[[float, float, float, int], object] | None = None,
) -> FastTextModel:
    """Trains a supervised classifier on fastText-format text (`data`) or on the file at `path`,
    on `thread` threads of its own with the GIL released. `progress(fraction, lr, loss, tokens)`
    is called every 20 ms; an exception in it stops training and is raised."""
