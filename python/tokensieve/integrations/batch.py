"""Batch functions: picklable callables that add tokensieve columns to a batch of rows.

One object serves every engine:

* Ray Data: :func:`tokensieve.integrations.ray.apply` runs it on an actor pool (an Arrow table
  in, the table with the new columns out);
* Hugging Face ``datasets``: ``dataset.map(fn, batched=True, num_proc=N)`` (a dict of lists in,
  a dict of the new columns out) or, without copies, :func:`tokensieve.integrations.hf.add_columns`;
* datatrove: the steps of :mod:`tokensieve.integrations.datatrove` call :meth:`BatchFunction.compute`.

A row whose text is not a document (null, not a string) gets nulls in every new column, and
:meth:`BatchFunction.compute` says why (one of :data:`tokensieve.io.SKIP_REASONS`, or for
:class:`TokenScores` of :data:`tokensieve.scoring.SCORE_SKIP_REASONS`).

Batch functions pickle as their saved state, never as compiled objects or torch modules: a
feature space, the DSIR estimator's arrays, a model's path and SHA-256. The compiled objects
(the language model) are built again in the process that uses them, on first use, so a model
is read once per worker, and equal functions pickle to equal bytes (``datasets`` fingerprints
them stably and its cache is hit).
"""

from __future__ import annotations

import os
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa

from tokensieve import _core
from tokensieve.dsir import DSIR
from tokensieve.exceptions import InvalidArgumentError, ModelFormatError
from tokensieve.fasttext import PRESETS, FastTextModel
from tokensieve.features import HashedNgrams
from tokensieve.integrations.machine import SharedArray, map_shared_arrays
from tokensieve.output import directory_sha256

if TYPE_CHECKING:
    import torch

    from tokensieve.scoring import Packing, TokenScorer

__all__ = ["BatchFunction", "Computed", "DSIRWeights", "FastTextScores", "NgramFeatures", "TokenScores"]

#: Rows given to one compiled call: a read report locates at most 10,000 skipped records, and
#: every skipped row must be located to keep the outputs aligned with the rows.
MAX_ROWS_PER_CALL = 10_000
#: The columns :class:`TokenScores` adds by default (prefixed): the scored token count, the total
#: and mean negative log-likelihood in nats, and bits per UTF-8 byte.
DEFAULT_SCORE_COLUMNS = ("tokens", "sum_nll", "mean_nll", "bits_per_byte")
#: The functions of this process already built over the arrays they share on the machine.
_ATTACHED: weakref.WeakSet[BatchFunction] = weakref.WeakSet()


class Computed(NamedTuple):
    """The new columns of a batch (aligned with its rows, null where a row is not a document)
    and, per row, why it is not a document (null for documents)."""

    columns: dict[str, pa.Array]
    skipped: pa.Array


class BatchFunction(ABC):
    """Adds columns computed from a batch's text column.

    Call it on a ``pyarrow.Table`` or ``RecordBatch`` (returns a table: the batch with the new
    columns appended, replacing columns of the same name) or on a dict of lists, as
    ``datasets`` passes batches (returns a dict of the new columns as lists).
    """

    #: Set by :func:`~tokensieve.integrations.machine.share_arrays_on_machine` for its block:
    #: where this function's shareable arrays are on the machine (pickled with the function).
    _shared_on_machine: tuple[SharedArray, ...] = ()

    def __init__(self, text_column: str, num_threads: int | None) -> None:
        self.text_column = text_column
        #: Threads of each compiled call; ``None`` uses ``TOKENSIEVE_NUM_THREADS``, else every CPU.
        self.num_threads = num_threads

    @property
    @abstractmethod
    def column_names(self) -> tuple[str, ...]:
        """The names of the columns this function adds."""

    def load(self) -> None:  # noqa: B027 (a hook: most functions have nothing to build)
        """Builds the compiled objects now (e.g. reads the model) instead of on the first call."""

    def shareable_arrays(self) -> dict[str, np.ndarray]:
        """The large read-only arrays of this function's compiled state that workers on one
        machine may share instead of each building its own (:func:`tokensieve.integrations.ray.apply`
        puts them once in Ray's object store); none by default."""
        return {}

    def use_shared_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:  # noqa: B027 (a hook)
        """Called on a worker before :meth:`load` with the arrays of :meth:`shareable_arrays`,
        read-only in memory that processes share: the compiled state is built over them."""

    def shared_arrays_key(self) -> str:
        """A name of the content of :meth:`shareable_arrays` (equal arrays, equal names) that
        names their files on the machine; needed by functions that have shareable arrays."""
        raise NotImplementedError(f"{type(self).__name__} has no arrays to share")

    def _attach_shared_on_machine(self) -> None:
        """Builds this function over the arrays it shares on the machine, once per process
        (called before its compiled state is first used)."""
        if self._shared_on_machine and self not in _ATTACHED:
            _ATTACHED.add(self)
            arrays = map_shared_arrays(self._shared_on_machine)
            if arrays:
                self.use_shared_arrays(arrays)

    def place(self, *, num_threads: int, gpu: bool) -> None:
        """Called on a worker that runs this function before :meth:`load`: the worker's CPU
        count (the threads of each call) and whether a GPU was reserved for it."""
        self.num_threads = num_threads

    @abstractmethod
    def _compute(self, texts: Any) -> Computed:
        """The columns of at most :data:`MAX_ROWS_PER_CALL` texts."""

    def compute(self, texts: Sequence[Any] | pa.Array | pa.ChunkedArray) -> Computed:
        """The new columns of ``texts`` (a list, or an Arrow string or binary array)."""
        self._attach_shared_on_machine()
        n = len(texts)
        if n <= MAX_ROWS_PER_CALL:
            return self._compute(texts)
        parts = [self._compute(texts[i : i + MAX_ROWS_PER_CALL]) for i in range(0, n, MAX_ROWS_PER_CALL)]
        columns = {name: pa.concat_arrays([p.columns[name] for p in parts]) for name in self.column_names}
        return Computed(columns, pa.concat_arrays([p.skipped for p in parts]))

    def __call__(self, batch: pa.Table | pa.RecordBatch | Mapping[str, Any]) -> Any:
        if isinstance(batch, (pa.Table, pa.RecordBatch)):
            return self.with_columns(batch)
        if isinstance(batch, Mapping):
            texts = _text_column(list(batch.keys()), self.text_column, batch)
            computed = self.compute(list(texts))
            return {name: values.to_pylist() for name, values in computed.columns.items()}
        raise InvalidArgumentError(
            f"a batch is a pyarrow.Table, RecordBatch or a dict of lists, not {type(batch).__name__}"
        )

    def with_columns(
        self, batch: pa.Table | pa.RecordBatch, keep_columns: Sequence[str] | None = None
    ) -> pa.Table:
        """``batch`` with this function's columns added (replacing columns of the same name);
        of its own columns, only ``keep_columns`` when given."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        missing = [name for name in keep_columns or () if name not in table.column_names]
        if missing:
            detail = f"columns: {', '.join(table.column_names)}"
            raise InvalidArgumentError(f"no column {missing[0]!r} to keep ({detail})")
        computed = self.compute(_text_column(table.column_names, self.text_column, table))
        if keep_columns is not None:
            table = table.select(list(keep_columns))
        for name, values in computed.columns.items():
            index = table.schema.get_field_index(name)
            table = table.append_column(name, values) if index < 0 else table.set_column(index, name, values)
        return table


class NgramFeatures(BatchFunction):
    """Per-document hashed n-gram counts as two list columns: ``<prefix>_buckets`` (the buckets
    with a non-zero count, ascending) and ``<prefix>_counts`` (their counts), the rows of
    :meth:`HashedNgrams.transform <tokensieve.features.HashedNgrams.transform>`."""

    def __init__(
        self,
        featurizer: HashedNgrams,
        *,
        prefix: str = "ngram",
        text_column: str = "text",
        num_threads: int | None = None,
    ) -> None:
        super().__init__(text_column, num_threads)
        self.featurizer = featurizer
        self.prefix = prefix

    @property
    def column_names(self) -> tuple[str, ...]:
        return f"{self.prefix}_buckets", f"{self.prefix}_counts"

    def _compute(self, texts: Any) -> Computed:
        (data, indices, indptr), report = self.featurizer._core.transform_texts(
            texts, on_error="skip", num_threads=self.num_threads
        )
        # The rows stay aligned with the texts (a skipped row is empty): null them.
        skipped = _skipped(report, len(texts))
        lists = pa.ListArray if indptr.dtype == np.int32 else pa.LargeListArray
        offsets, mask = pa.array(indptr), skipped.is_valid()
        buckets = lists.from_arrays(offsets, pa.array(indices), mask=mask)
        counts = lists.from_arrays(offsets, pa.array(data), mask=mask)
        return Computed(dict(zip(self.column_names, (buckets, counts), strict=True)), skipped)


class FastTextScores(BatchFunction):
    """The probability of ``label`` under a fastText classifier, float32 (NaN for a text
    without any feature), as :meth:`FastTextModel.score <tokensieve.fasttext.FastTextModel.score>`
    computes it. ``preset`` names the newline handling (:data:`tokensieve.fasttext.PRESETS`);
    ``model`` is a :class:`~tokensieve.fasttext.FastTextModel` or the path of one."""

    def __init__(
        self,
        model: FastTextModel | str | Any,
        label: str,
        *,
        preset: str = "dclm",
        column: str = "fasttext_score",
        text_column: str = "text",
        num_threads: int | None = None,
    ) -> None:
        super().__init__(text_column, num_threads)
        if preset not in PRESETS:
            raise InvalidArgumentError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.model = model if isinstance(model, FastTextModel) else FastTextModel(model)
        self.label = label
        self._label_id = self.model._label_id(label)
        self.preset = preset
        self.column = column

    @property
    def column_names(self) -> tuple[str, ...]:
        return (self.column,)

    def load(self) -> None:
        self._attach_shared_on_machine()
        self.model._native  # noqa: B018 (reads the file)

    def shareable_arrays(self) -> dict[str, np.ndarray]:
        """The input matrix (most of a model's bytes), unless the model is quantised."""
        return {} if self.model.is_quantized() else {"input_matrix": self.model.get_input_matrix()}

    def shared_arrays_key(self) -> str:
        """The model file's SHA-256."""
        return self.model.sha256

    def use_shared_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        if "input_matrix" in arrays:
            self.model._use_input_matrix(arrays["input_matrix"])

    def _compute(self, texts: Any) -> Computed:
        scores, report = self.model._native.score_texts(
            texts,
            label=self._label_id,
            on_error="skip",
            num_threads=self.num_threads,
            **PRESETS[self.preset],
        )
        skipped = _skipped(report, len(texts))
        return Computed({self.column: _spread(pa.array(scores), skipped)}, skipped)


class DSIRWeights(BatchFunction):
    """DSIR's log importance weight of each document, float64 (a fixed-size list of one weight
    per target with several targets), and its token count (uint32): the numbers of
    :meth:`DSIR.weights <tokensieve.dsir.DSIR.weights>` and :attr:`DSIR.tokens
    <tokensieve.dsir.DSIR.tokens>`, computed by the same compiled code.

    Pickles as the feature space and the estimator's ``log_diff`` array.
    """

    def __init__(
        self,
        dsir: DSIR,
        *,
        column: str = "dsir_log_weight",
        tokens_column: str = "dsir_tokens",
        text_column: str = "text",
        num_threads: int | None = None,
    ) -> None:
        super().__init__(text_column, num_threads)
        if dsir.chunk_words is not None:
            raise InvalidArgumentError(
                "DSIRWeights weighs whole documents: the estimator cuts them in chunks"
            )
        self.feature_space = dsir.feature_space
        self.log_diff = np.ascontiguousarray(np.atleast_2d(dsir.log_diff), dtype=np.float64)
        self.targets = tuple(dsir.targets)
        self.column = column
        self.tokens_column = tokens_column
        self._model: _core.ImportanceModel | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return self.column, self.tokens_column

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _model=None)

    def load(self) -> None:
        if self._model is None:
            featurizer = HashedNgrams(**self.feature_space)
            self._model = _core.ImportanceModel(featurizer._core, self.log_diff)

    def _compute(self, texts: Any) -> Computed:
        self.load()
        assert self._model is not None
        weights, tokens, report = self._model.score_texts(
            texts, on_error="skip", num_threads=self.num_threads
        )
        skipped = _skipped(report, len(texts))
        if len(self.targets) == 1:
            values = pa.array(weights[:, 0])
        else:
            values = pa.FixedSizeListArray.from_arrays(pa.array(weights.ravel()), len(self.targets))
        columns = {
            self.column: _spread(values, skipped),
            self.tokens_column: _spread(pa.array(tokens), skipped),
        }
        return Computed(columns, skipped)


class TokenScores(BatchFunction):
    """Per-document statistics under a causal language model, as :meth:`TokenScorer.score
    <tokensieve.scoring.TokenScorer.score>` computes them: the ``columns`` chosen from
    :data:`tokensieve.scoring.COLUMNS` (default :data:`DEFAULT_SCORE_COLUMNS`), each added as
    ``<prefix>_<name>`` with the scorer's type (int64 counts, float64 statistics). A text the
    scorer does not score gets nulls, with its reason: ``empty_text`` (``""``), ``too_short``
    (fewer than 2 tokens), or the reader's (a null text).

    ``model_dir`` is a local Hugging Face model directory (``save_pretrained``), read by
    :meth:`TokenScorer.from_pretrained <tokensieve.scoring.TokenScorer.from_pretrained>` with
    ``device``, ``dtype`` (a ``torch.dtype`` or its name) and ``packing``; ``device=None`` is
    CUDA when the process sees a GPU, else the CPU, and on Ray actors the GPU exactly when the
    actor reserved one (:func:`tokensieve.integrations.ray.apply`'s ``num_gpus``).
    ``max_length``, ``stride``, ``batch_size`` (windows per forward pass) and ``min_k_ratio``
    are the options of ``TokenScorer.score``. ``num_threads``: torch's intra-op threads in the
    process that loads the model (``None`` leaves torch's setting alone).

    Pickles as the directory's absolute path, the SHA-256 of its top-level files (hashed once,
    on first pickling, e.g. when ``datasets`` fingerprints the function) and the options: never
    the model. The model is loaded on first use (or :meth:`load`) in the process that uses it,
    once; a directory whose files changed since pickling raises
    :class:`~tokensieve.exceptions.ModelFormatError` there.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        columns: Sequence[str] = DEFAULT_SCORE_COLUMNS,
        prefix: str = "lm",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        packing: Packing = "auto",
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int = 8,
        min_k_ratio: float = 0.2,
        text_column: str = "text",
        num_threads: int | None = None,
    ) -> None:
        import torch

        from tokensieve import scoring

        super().__init__(text_column, num_threads)
        self.model_dir = os.path.abspath(model_dir)
        if not os.path.isdir(self.model_dir):
            raise InvalidArgumentError(f"{self.model_dir} is not a directory with a saved model")
        unknown = [c for c in columns if c not in scoring.COLUMNS or c == "id"]
        if unknown or not columns:
            choices = [c for c in scoring.COLUMNS if c != "id"]
            raise InvalidArgumentError(f"columns must be some of {choices}, got {list(columns)}")
        self.columns = tuple(columns)
        self.prefix = prefix
        try:
            self.device = None if device is None else str(torch.device(device))
        except RuntimeError as e:
            raise InvalidArgumentError(f"device {device!r} is not a torch device: {e}") from None
        self.dtype = None if dtype is None else str(dtype).removeprefix("torch.")
        if self.dtype is not None and not isinstance(getattr(torch, self.dtype, None), torch.dtype):
            raise InvalidArgumentError(f"dtype {dtype!r} is not a torch dtype")
        if packing not in ("auto", "pad", "pack"):
            raise InvalidArgumentError(f'packing must be "auto", "pad" or "pack", got {packing!r}')
        self.packing = packing
        self.options: dict[str, Any] = {
            "max_length": max_length,
            "stride": stride,
            "batch_size": batch_size,
            "min_k_ratio": min_k_ratio,
        }
        scoring._options(None, **self.options)  # the model's own limit is checked when it is loaded
        self._sha256: str | None = None
        self._scorer: TokenScorer | None = None
        #: (name, size, mtime) of the directory's files when this process hashed or loaded them.
        self._files: list[tuple[str, int, int]] | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}_{name}" for name in self.columns)

    @property
    def sha256(self) -> str:
        """The SHA-256 of the model directory's top-level files
        (:func:`tokensieve.output.directory_sha256`), hashed once."""
        if self._sha256 is None:
            files = _files_stat(self.model_dir)
            if self._files is not None and files != self._files:
                raise ModelFormatError(f"{self.model_dir} changed after the model was loaded", self.model_dir)
            self._sha256, self._files = directory_sha256(self.model_dir), files
        return self._sha256

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_scorer", "_files")}
        return state | {"_sha256": self.sha256}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _scorer=None, _files=None)

    def place(self, *, num_threads: int, gpu: bool) -> None:
        super().place(num_threads=num_threads, gpu=gpu)
        if self.device is None:
            self.device = "cuda" if gpu else "cpu"

    def load(self) -> None:
        self._loaded()

    def _loaded(self) -> TokenScorer:
        if self._scorer is None:
            import torch

            from tokensieve.scoring import TokenScorer

            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            # A clone (or a function whose files changed since it hashed them) checks the hash.
            files = _files_stat(self.model_dir)
            changed = self._sha256 is not None and files != self._files
            if changed and directory_sha256(self.model_dir) != self._sha256:
                wrong = f"{self.model_dir} is not the model directory the function was pickled with"
                raise ModelFormatError(wrong, self.model_dir)
            scorer = TokenScorer.from_pretrained(
                self.model_dir,
                device=self.device,
                dtype=None if self.dtype is None else getattr(torch, self.dtype),
                packing=self.packing,
            )
            scorer._options(**self.options)  # max_length within the model's positions
            self._scorer, self._files = scorer, files
        return self._scorer

    def _compute(self, texts: Any) -> Computed:
        table, report = self._loaded().score(texts, id_field=None, return_report=True, **self.options)
        # Documents are identified by their position in ``texts``; every skipped one is located
        # (at most MAX_ROWS_PER_CALL rows per call).
        reasons: list[str | None] = [None] * len(texts)
        for record in (*report.read.skipped_records, *report.skipped_documents):
            reasons[record.line - 1] = record.reason
        skipped = pa.array(reasons, type=pa.string())
        scored = np.flatnonzero(np.asarray(skipped.is_null()))
        if not np.array_equal(np.asarray(table.column("id").to_pylist(), dtype=np.int64), scored):
            raise AssertionError("the scored rows are not the rows that were not skipped")
        columns = {
            f"{self.prefix}_{name}": _spread(table.column(name).combine_chunks(), skipped)
            for name in self.columns
        }
        return Computed(columns, skipped)


def _text_column(names: list[str], text_column: str, batch: Any) -> Any:
    if text_column not in names:
        raise InvalidArgumentError(f"the batch has no {text_column!r} column (its columns: {names})")
    return batch[text_column]


def _skipped(report: Mapping[str, Any], rows: int) -> pa.Array:
    """Per row, the reason it was skipped (null for documents), from a compiled call's report."""
    reasons: list[str | None] = [None] * rows
    for _source, line, reason, _detail in report["skipped_records"]:
        reasons[line - 1] = reason
    documents = sum(source["documents"] for source in report["sources"])
    if rows - documents != len(report["skipped_records"]):
        # Blank lines are not listed, but batches of texts have none: this cannot happen.
        raise AssertionError(f"{rows - documents} rows skipped, {len(report['skipped_records'])} located")
    return pa.array(reasons, type=pa.string())


def _spread(values: pa.Array, skipped: pa.Array) -> pa.Array:
    """``values`` of the documents placed on their rows, nulls on the skipped rows."""
    if skipped.null_count == len(skipped):
        return values
    is_document = np.asarray(skipped.is_null())
    index = np.cumsum(is_document) - 1
    return values.take(pa.array(index, mask=~is_document))


def _files_stat(directory: str) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of a directory's top-level files, to notice them changing."""
    entries = sorted(p for p in Path(directory).iterdir() if p.is_file())
    return [(p.name, (info := p.stat()).st_size, info.st_mtime_ns) for p in entries]
