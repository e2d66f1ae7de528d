"""Per-document statistics of a corpus under a causal language model.

:class:`TokenScorer` runs a causal LM over documents and returns one row per document with the
statistics the token-level selection methods start from (methods.md): perplexity filtering
(CCNet, Marion et al.), bits per byte and per character (§9.3, PreSelect, perplexity
correlations), Min-K% and Min-K%++ (§4), EL2N (§7) and token-loss quantiles (cascades, §10)::

    from tokensieve.scoring import TokenScorer

    scorer = TokenScorer.from_pretrained("path/to/model")   # a local Hugging Face directory
    table = scorer.score(["some text", "another text"])     # a pyarrow.Table
    report = scorer.score_to_parquet(Files("corpus/*.jsonl.zst"), "scores.parquet")

**Columns** (:data:`COLUMNS`). ``id`` (string: the record's id field, else ``"<file>:<line>"``
for files and the 0-based position in memory, see :class:`~tokensieve.io.DocumentReader`),
``tokens``, ``bytes`` (UTF-8), ``chars`` (code points) as int64, and float64 ``sum_nll`` and
``mean_nll`` (nats), ``bits_per_byte = sum_nll / (bytes ln 2)``, ``bits_per_char = sum_nll /
(chars ln 2)``, ``perplexity = exp(mean_nll)``, ``mean_entropy`` (nats), ``min_k`` (the mean of
the ``floor(tokens * min_k_ratio)`` smallest log p(target): the paper's and mink-plus-plus's
sign, so higher means more typical; swj0419's script reports ``-min_k``; NaN when that count is
0, as in the references), ``min_k_plus_plus`` (the same mean over ``z = (log p(y) - mu) /
sigma`` with ``mu = E_p[log p]`` and ``sigma^2 = Var_p[log p]``; a token whose ``sigma`` is 0 in
fp32 gets ``z = 0`` where the reference divides by zero), ``el2n`` (the mean over tokens of
``||p - onehot(y)||_2``) and ``nll_q10``, ``nll_q50``, ``nll_q90`` (quantiles of the token NLLs,
numpy's linear rule).

**Which tokens count.** A document is encoded as the reference codes do (methods.md §0.4):
``tokenizer(text)`` with the tokenizer's own special tokens; position t predicts token t+1, so
the first token has no prediction. With a tokenizer that prepends BOS (LLaMA's, and those of
:mod:`tokensieve.training`) every token of the text is scored; with one that prepends nothing
(GPT-2, Pythia) the first token of the text is not. ``tokens`` is the number of scored tokens,
``len(ids) - 1``; the byte and character counts cover the whole text either way (§9.3).
Documents that cannot be scored are skipped and counted: ``empty_text`` (the text is ``""``)
and ``too_short`` (fewer than 2 tokens, so nothing to predict).

**Long documents.** A document longer than ``max_length`` tokens is scored in windows of
``max_length`` tokens that start every ``stride`` tokens, within the document (PreSelect's
scheme, §1, without its crossing of document boundaries and without dropping the tail): the
first window scores all its targets, each later one only the targets after the previous window,
so every target is scored exactly once and, past the first window, with at least
``max_length - stride`` tokens of context. ``stride=None`` means ``max_length - 1``: consecutive
windows share one token, the least compute that still scores every token.

**Batches.** Each forward pass holds at most ``batch_size * max_length`` token slots, in one of
two layouts, both free of attention across documents:

* ``"pad"``: one window per row, right-padded. Always correct for a causal model (no real token
  can see a later padding token). Windows are sorted by length within a chunk of the stream, and
  a forward pass of short rows holds more of them.
* ``"pack"``: several windows per row with position ids restarting at 0 at each window and no
  attention mask; Hugging Face models that build their masks with ``masking_utils`` (LLaMA,
  Mistral, Qwen, GPT-2, GPT-NeoX, ...) then mask attention per window. Rows of a fixed width
  and no padding waste.

``packing="auto"`` (the default) packs when a probe at construction shows the model keeps
packed windows apart (two short random sequences packed in one row give the hidden states each
gives alone), and pads otherwise.

**Model.** A Hugging Face causal LM (its ``base_model`` gives the hidden states, its output
embeddings are the LM head; checked at construction against the model's own logits, with Gemma
2's final-logit softcap honoured), or any module given with ``lm_head=``: it is called as
``model(input_ids, attention_mask=..., position_ids=...)`` and returns the final hidden states
``[B, T, D]`` (a tensor or an object with ``last_hidden_state``). The trunk runs under
``torch.inference_mode``; the LM head and the per-token statistics of the scored positions are
one call of :func:`tokensieve.kernels.linear_token_stats`: on a GPU the fused Triton kernel,
which never materialises the logits; on the CPU its torch backend, which reduces them a
cache-sized chunk of tokens at a time in fp32. Per-document reductions use
:mod:`tokensieve.kernels` too, in float64 on CPU.

**Memory** stays bounded on any corpus size with :meth:`TokenScorer.score_to_parquet`: the
input is streamed (:class:`~tokensieve.io.DocumentReader`), tokenised on a background thread a
chunk ahead (a chunk holds about 16 forward passes of tokens, or one document if longer), and
each chunk's rows go into a Parquet row group of 65,536 rows held in columns allocated once.
Results do not depend on the chunking, except for floating-point rounding in the batched
matrix products.

**Interrupted runs resume.** :meth:`TokenScorer.score_to_parquet` commits a checkpoint to
``<out>.parts/`` every 65,536 rows or 60 seconds: a Parquet part with the rows scored since
the last one, and ``state.json`` with how many input records were read through them and the
counts then. Run again with the same input files (path, size, modification time), model
(class, name, dtype, device, and a fingerprint of every weight: each tensor's float64 sum) and
options, it reads past those records without scoring them and goes on; the output and manifest
are those of an uninterrupted run (the chunks after the checkpoint are the same ones, so even
the rounding is). Different settings raise an error naming them; ``resume=False``
(``--no-resume``) starts over. The parts are removed once the output is complete. Input held
in memory always starts over.

Needs torch, transformers (or a ``tokenizers.Tokenizer``) and pyarrow:
``pip install tokensieve[scoring]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, cast

import numpy as np
import torch
from torch.nn import functional

from tokensieve import kernels
from tokensieve.exceptions import InvalidArgumentError, MissingDependencyError, ModelFormatError
from tokensieve.io import (
    MAX_SKIPPED_LISTED,
    DocumentReader,
    OnError,
    ReadReport,
    Record,
    SkippedRecord,
    corpus_files,
    is_file_source,
)
from tokensieve.output import atomic_file, file_sha256, manifest_header, write_json
from tokensieve.progress import ProgressBar

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "COLUMNS",
    "SCORE_SKIP_REASONS",
    "ScoreReport",
    "TokenScorer",
    "manifest_path",
    "windows",
]

logger = logging.getLogger("tokensieve")

Packing = Literal["auto", "pad", "pack"]
#: A window of a document in a chunk: ``(document, start, end, first_target)`` (see :func:`windows`).
Segment = tuple[int, int, int, int]

#: The output columns, in order, with their Arrow types (see the module docstring).
COLUMNS: dict[str, str] = {
    "id": "string",
    "tokens": "int64",
    "bytes": "int64",
    "chars": "int64",
    **{
        name: "float64"
        for name in (
            "sum_nll",
            "mean_nll",
            "bits_per_byte",
            "bits_per_char",
            "perplexity",
            "mean_entropy",
            "min_k",
            "min_k_plus_plus",
            "el2n",
            "nll_q10",
            "nll_q50",
            "nll_q90",
        )
    },
}
NLL_QUANTILES = (0.1, 0.5, 0.9)
#: Why a document that was read is not scored.
SCORE_SKIP_REASONS = ("empty_text", "too_short")
#: Forward passes' worth of tokens per chunk of the stream (tokenised ahead, reduced together).
CHUNK_BATCHES = 16
#: Rows are padded to a multiple of this many tokens (tensor-core friendly shapes).
ROW_MULTIPLE = 8
DEFAULT_MAX_LENGTH = 1024
#: Rows gathered into one Parquet row group (about 8 MB of numeric columns, plus the ids).
PARQUET_ROW_GROUP_ROWS = 1 << 16
#: score_to_parquet commits a checkpoint after this many rows or seconds, whichever comes first:
#: an interrupted run loses at most that much work.
CHECKPOINT_ROWS = PARQUET_ROW_GROUP_ROWS
CHECKPOINT_SECONDS = 60.0
LN2 = math.log(2.0)

T = TypeVar("T")


def windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows of a document of ``n_tokens`` tokens: ``(start, end, first_target)`` with
    tokens ``start:end`` as input and targets ``first_target .. end - 1`` scored (each target
    once, in order; see the module docstring). Needs ``1 <= stride < max_length``."""
    out = []
    start, first = 0, 1
    while True:
        end = min(start + max_length, n_tokens)
        out.append((start, end, first))
        if end == n_tokens:
            return out
        first = end
        start += stride


@dataclass(frozen=True)
class ScoreReport:
    """What a scoring run saw. ``read.records == scored + read.skipped_total +
    sum(skipped.values())`` always holds: every record is scored, skipped by the reader, or
    read but not scored (``skipped``: ``empty_text``, ``too_short``)."""

    read: ReadReport
    scored: int
    tokens: int
    skipped: Mapping[str, int]
    #: The documents read but not scored (the first 10,000), with where they are.
    skipped_documents: tuple[SkippedRecord, ...]
    #: Documents scored per source, in the order of ``read.sources``.
    scored_per_source: tuple[int, ...]
    seconds: float
    #: Of ``scored``, the documents an interrupted earlier run scored (taken from its checkpoint).
    resumed: int = 0

    @property
    def records(self) -> int:
        return self.read.records

    def summary(self) -> str:
        """One line: documents scored, tokens, speed (of a run that did not resume), and skips
        per reason."""
        text = f"{self.scored:,} documents scored, {self.tokens:,} tokens in {self.seconds:.2f} s"
        if self.resumed:
            text += f" ({self.resumed:,} of the documents by an interrupted run, resumed)"
        else:
            text += f" ({self.tokens / max(self.seconds, 1e-9):,.0f} tokens/s)"
        skips = {**self.read.skipped, **self.skipped}
        if skips:
            text += "; skipped: " + ", ".join(f"{n:,} {reason}" for reason, n in sorted(skips.items()))
        return text


@dataclass(frozen=True)
class _Options:
    max_length: int
    stride: int
    batch_size: int
    text_field: str
    id_field: str | None
    on_error: OnError
    min_k_ratio: float

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.max_length


@dataclass
class _Tally:
    """Documents read but not scored, and scored ones, counted by the producer thread."""

    skipped: dict[str, int] = field(default_factory=dict)
    listed: list[SkippedRecord] = field(default_factory=list)
    scored: dict[int, int] = field(default_factory=dict)
    tokens: int = 0

    def skip(self, reader: DocumentReader, record: Record, reason: str, detail: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.listed) < MAX_SKIPPED_LISTED:
            name = reader.report.sources[record.source].name
            self.listed.append(SkippedRecord(name, record.line, reason, detail))

    def snapshot(self) -> _Tally:
        """A copy that later counting leaves as it is (the listed records are immutable)."""
        return _Tally(dict(self.skipped), list(self.listed), dict(self.scored), self.tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "listed": [dataclasses.astuple(r) for r in self.listed],
            "scored": {str(source): n for source, n in self.scored.items()},
            "tokens": self.tokens,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> _Tally:
        return cls(
            dict(value["skipped"]),
            [SkippedRecord(*r) for r in value["listed"]],
            {int(source): n for source, n in value["scored"].items()},
            value["tokens"],
        )


@dataclass
class _Batch:
    """One forward pass: rows of token ids, and where the scored positions go."""

    input_ids: torch.Tensor  # [R, W]
    position_ids: torch.Tensor  # [R, W]
    attention_mask: torch.Tensor | None  # [R, W] for "pad", None for "pack"
    positions: torch.Tensor  # [N] flat positions of the scored hidden states
    targets: torch.Tensor  # [N] what they predict
    slots: torch.Tensor  # [N] where their statistics go in the chunk (document order)


@dataclass
class _Chunk:
    """Documents of the stream scored and reduced together."""

    records: list[Record]
    nbytes: np.ndarray
    chars: np.ndarray
    cu_seqlens: np.ndarray  # [D + 1] offsets of each document's scored tokens
    batches: list[_Batch]
    bytes_read: int
    #: Records the reader had handed out through this chunk's last one, and the counts then.
    records_read: int
    tally: _Tally


class _Scored(NamedTuple):
    """The rows of a chunk, the records read through it and the counts then."""

    batch: pa.RecordBatch
    records_read: int
    tally: _Tally


class TokenScorer:
    """Scores documents with a causal LM (module docstring).

    Args:
        model: a Hugging Face causal LM, or a module returning hidden states (with ``lm_head``).
        tokenizer: a ``transformers`` tokenizer or a ``tokenizers.Tokenizer``.
        lm_head: for a model that is not a Hugging Face causal LM: its ``torch.nn.Linear`` head
            (or the ``[V, D]`` weight).
        packing: ``"auto"``, ``"pad"`` or ``"pack"`` (module docstring).
        add_special_tokens: encode with the tokenizer's special tokens (BOS), as the
            references do.
        backend: the :mod:`tokensieve.kernels` backend (``"auto"``: Triton on CUDA).

    The model is put in eval mode. Construction runs two probes of a few tokens (the LM head
    check and the packing probe).

    Raises:
        InvalidArgumentError: the model's logits are not its LM head applied to its hidden
            states (a logit scale this class does not know), or ``packing="pack"`` for a model
            that attends across packed windows.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        lm_head: torch.nn.Module | torch.Tensor | None = None,
        packing: Packing = "auto",
        add_special_tokens: bool = True,
        backend: kernels.Backend = "auto",
    ) -> None:
        if packing not in ("auto", "pad", "pack"):
            raise InvalidArgumentError(f'packing must be "auto", "pad" or "pack", got {packing!r}')
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.add_special_tokens = add_special_tokens
        self.backend = backend
        self._encode = _encoder(tokenizer, add_special_tokens)
        self.pad_id = getattr(tokenizer, "pad_token_id", None) or 0
        config = getattr(model, "config", None)
        self.softcap: float | None = getattr(config, "final_logit_softcapping", None)
        self.max_positions: int | None = getattr(config, "max_position_embeddings", None)
        self._hugging_face = lm_head is None
        if lm_head is None:
            if not (hasattr(model, "get_output_embeddings") and hasattr(model, "base_model")):
                raise InvalidArgumentError(
                    f"{type(model).__name__} is not a Hugging Face causal LM: pass its LM head as lm_head="
                )
            lm_head = cast(Any, model).get_output_embeddings()
        if isinstance(lm_head, torch.Tensor):
            self.head_weight, self.head_bias = lm_head, None
        else:
            self.head_weight, self.head_bias = (
                cast(torch.Tensor, lm_head.weight),
                getattr(lm_head, "bias", None),
            )
        self.device = self.head_weight.device
        with torch.inference_mode():
            if self._hugging_face:
                self._check_head()
            packs = packing != "pad" and self._keeps_packed_windows_apart()
        if packing == "pack" and not packs:
            raise InvalidArgumentError(
                f"{type(model).__name__} attends across windows packed in one row: use packing='pad'"
            )
        self.packing: Literal["pad", "pack"] = "pack" if packs else "pad"

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> TokenScorer:
        """Loads the model and tokenizer saved in ``local_dir`` (``save_pretrained``; never
        downloads). ``device``: default CUDA when available, else CPU; ``dtype``: default
        bfloat16 on a GPU that supports it, else float32. Other arguments go to the
        constructor."""
        transformers = _transformers()
        path = Path(local_dir)
        if not path.is_dir():
            raise InvalidArgumentError(f"{path} is not a directory with a saved model")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
            dtype = torch.bfloat16 if bf16 else torch.float32
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, local_files_only=True
            )
        except (OSError, ValueError, KeyError) as e:
            err = ModelFormatError(f"{path}: cannot load a causal LM and its tokenizer: {e}")
            err.path = str(path)
            raise err from e
        return cls(model.to(device), tokenizer, **kwargs)

    # -- scoring ------------------------------------------------------------------------------

    def score(
        self,
        source: Any,
        *,
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int = 8,
        text_field: str = "text",
        id_field: str | None = "id",
        on_error: OnError = "skip",
        min_k_ratio: float = 0.2,
        progress: bool = False,
        return_report: bool = False,
    ) -> pa.Table | tuple[pa.Table, ScoreReport]:
        """The per-document statistics of ``source`` as a ``pyarrow.Table`` (:data:`COLUMNS`,
        one row per scored document, in input order); with ``return_report=True`` a
        ``(table, ScoreReport)`` pair.

        Args:
            source: texts, mappings or Arrow data in memory, or corpus files (a path, a
                directory, a glob, ``Files``): any source of :class:`~tokensieve.io.DocumentReader`.
            max_length: tokens per window; default the smaller of 1024 and the model's
                ``max_position_embeddings``.
            stride: start-to-start distance of the windows of a long document; default
                ``max_length - 1``.
            batch_size: forward passes hold at most ``batch_size * max_length`` tokens.
            text_field, id_field: the record fields of the text and of the id.
            on_error: ``"skip"`` or ``"raise"`` for bad records (:mod:`tokensieve.io`).
            min_k_ratio: the fraction of tokens Min-K% and Min-K%++ average.
            progress: a progress bar on stderr.
        """
        opts = self._options(
            max_length=max_length,
            stride=stride,
            batch_size=batch_size,
            text_field=text_field,
            id_field=id_field,
            on_error=on_error,
            min_k_ratio=min_k_ratio,
        )
        pa = _pyarrow()
        report_box: list[ScoreReport] = []
        batches = [scored.batch for scored in self._score_batches(source, opts, progress, report_box)]
        table = pa.Table.from_batches(batches, schema=_schema())
        return (table, report_box[0]) if return_report else table

    def score_to_parquet(
        self,
        source: Any,
        out: str | os.PathLike[str],
        *,
        progress: bool = False,
        resume: bool = True,
        **options: Any,
    ) -> ScoreReport:
        """Scores ``source`` into the Parquet file ``out``, then writes the manifest
        :func:`manifest_path` (``out`` with ``.manifest.json``), which accounts for every
        record. ``options`` are those of :meth:`score`. Returns the report.

        Memory stays bounded: rows go to checkpointed parts in ``<out>.parts/`` as they are
        reduced, and into ``out`` (written under a temporary name, renamed when complete) at
        the end. With ``resume=True`` a run interrupted on the same input files, model and
        options goes on from its last checkpoint (module docstring); ``resume=False`` starts
        over.

        Raises:
            InvalidArgumentError: ``<out>.parts/`` holds an interrupted run with other settings
                (resume with the same ones, or pass ``resume=False``), or is not a checkpoint.
        """
        _pyarrow()  # a clear error when it is missing
        import pyarrow.parquet as pq

        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        opts = self._options(**options)
        checkpoint = _Checkpoint(out_path, self._settings(source, opts), resume)
        report_box: list[ScoreReport] = []
        pending: list[pa.RecordBatch] = []
        rows, since = 0, time.monotonic()
        for scored in self._score_batches(source, opts, progress, report_box, checkpoint.start()):
            pending.append(scored.batch)
            rows += scored.batch.num_rows
            if rows >= CHECKPOINT_ROWS or time.monotonic() - since >= CHECKPOINT_SECONDS:
                checkpoint.commit(pending, rows, scored)
                pending, rows, since = [], 0, time.monotonic()
        with atomic_file(out_path) as f, pq.ParquetWriter(f, _schema()) as writer:
            row_groups = _RowGroups(writer, PARQUET_ROW_GROUP_ROWS)
            for batch in itertools.chain(checkpoint.batches(), pending):
                row_groups.add(batch)
            row_groups.flush()
        report = report_box[0]
        manifest = self._manifest(report, opts, out_path)
        write_json(manifest_path(out_path), manifest)
        checkpoint.remove()
        return report

    def _settings(self, source: Any, opts: _Options) -> dict[str, Any] | None:
        """What a checkpoint must have been made with to be resumed (JSON values): the input
        files (path, size, modification time), the options, the layout and the model; ``None``
        for input in memory, which cannot be told apart from other input."""
        if not is_file_source(source):
            return None
        files = []
        for path in corpus_files(source):
            try:
                stat = os.stat(path)
                files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
            except OSError:
                files.append([os.path.abspath(path), None, None])  # the reader raises the error
        config = getattr(self.model, "config", None)
        head = self.head_weight.detach()
        settings = {
            "files": files,
            "options": dataclasses.asdict(opts),
            "packing": self.packing,
            "add_special_tokens": self.add_special_tokens,
            "backend": self.backend,
            "model": {
                "class": type(self.model).__name__,
                "name_or_path": getattr(config, "_name_or_path", None),
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "dtype": str(head.dtype),
                "device": self.device.type,
                "head_shape": list(head.shape),
                "weights": _weights_fingerprint(itertools.chain(self.model.parameters(), [head])),
            },
        }
        return cast(dict[str, Any], json.loads(json.dumps(settings)))

    def forward_inputs(self, source: Any, **options: Any) -> Iterator[dict[str, torch.Tensor | None]]:
        """The inputs of each forward pass :meth:`score` runs over ``source`` with ``options``
        (host tensors ``input_ids``, ``attention_mask`` (``None`` when packed) and
        ``position_ids``), without running the model: to inspect the layout, or to time the
        bare model on the same batches."""
        opts = self._options(**options)
        reader = _reader(source, opts)
        for chunk in self._chunks(reader, opts, _Tally()):
            for batch in chunk.batches:
                yield {
                    "input_ids": batch.input_ids,
                    "attention_mask": batch.attention_mask,
                    "position_ids": batch.position_ids,
                }

    def _options(self, **options: Any) -> _Options:
        return _options(self.max_positions, **options)

    def _score_batches(
        self,
        source: Any,
        opts: _Options,
        progress: bool,
        report_box: list[ScoreReport],
        resume_from: _Resume | None = None,
    ) -> Iterator[_Scored]:
        """The scored documents chunk by chunk, as Arrow record batches; appends the report to
        ``report_box`` once the source is exhausted. ``resume_from``: the records an earlier
        run read (not scored again) and its counts."""
        start = time.perf_counter()
        reader = _reader(source, opts)
        tally = resume_from.tally if resume_from else _Tally()
        resumed = resume_from.rows if resume_from else 0
        bar = ProgressBar("score", reader.total_bytes) if progress else None
        scored = resumed
        skip = resume_from.records_read if resume_from else 0
        try:
            for chunk in _prefetch(self._chunks(reader, opts, tally, skip), depth=2):
                columns = self._score_chunk(chunk, opts)
                scored += len(chunk.records)
                yield _Scored(_record_batch(chunk, columns), chunk.records_read, chunk.tally)
                if bar is not None:
                    bar(chunk.bytes_read, scored)
            if bar is not None:  # the input after the last chunk (skipped records) is read too
                bar(_progress_bytes(reader), scored)
        finally:
            if bar is not None:
                bar.close()
        read = reader.report
        read.log_skips()
        per_source = tuple(tally.scored.get(i, 0) for i in range(len(read.sources)))
        seconds = time.perf_counter() - start
        report_box.append(
            ScoreReport(
                read,
                scored,
                tally.tokens,
                dict(tally.skipped),
                tuple(tally.listed),
                per_source,
                seconds,
                resumed,
            )
        )

    def _chunks(
        self, reader: DocumentReader, opts: _Options, tally: _Tally, skip: int = 0
    ) -> Iterator[_Chunk]:
        """Reads, encodes and lays out the documents into chunks (runs on the prefetch thread),
        after the first ``skip`` records the reader hands out (read, counted by the reader,
        neither encoded nor tallied). A chunk ends after the record that fills its token
        budget, so the chunks after a checkpoint are the same however the run started."""
        budget = CHUNK_BATCHES * opts.batch_tokens
        records: list[Record] = []
        tokens: list[np.ndarray] = []
        held = 0
        records_read = 0
        for batch in reader:
            if records_read + len(batch) <= skip:
                records_read += len(batch)
                continue
            if records_read < skip:
                batch = batch[skip - records_read :]
                records_read = skip
            encoded = self._encode([r.text for r in batch])
            for record, ids in zip(batch, encoded, strict=True):
                records_read += 1
                if not record.text:
                    tally.skip(reader, record, "empty_text", "the text is empty")
                elif len(ids) < 2:
                    tally.skip(reader, record, "too_short", f"{len(ids)} token, nothing to predict")
                else:
                    records.append(record)
                    tokens.append(np.asarray(ids, dtype=np.int64))
                    held += len(ids)
                    tally.scored[record.source] = tally.scored.get(record.source, 0) + 1
                    tally.tokens += len(ids) - 1
                if held >= budget:
                    yield self._chunk(records, tokens, opts, _progress_bytes(reader), records_read, tally)
                    records, tokens, held = [], [], 0
        if records:
            yield self._chunk(records, tokens, opts, _progress_bytes(reader), records_read, tally)

    def _chunk(
        self,
        records: list[Record],
        tokens: list[np.ndarray],
        opts: _Options,
        bytes_read: int,
        records_read: int,
        tally: _Tally,
    ) -> _Chunk:
        counts = np.array([len(t) - 1 for t in tokens], dtype=np.int64)
        cu = np.concatenate([[0], np.cumsum(counts)])
        segments = [
            (doc, *window)
            for doc, ids in enumerate(tokens)
            for window in windows(len(ids), opts.max_length, opts.stride)
        ]
        rows = _pack_rows(segments, opts) if self.packing == "pack" else _pad_rows(segments, opts)
        pin = self.device.type == "cuda"
        batches = [
            _layout(batch, tokens, cu, self.pad_id, opts.max_length, self.packing, pin) for batch in rows
        ]
        return _Chunk(
            records,
            np.array([len(r.text.encode("utf-8")) for r in records], dtype=np.int64),
            np.array([len(r.text) for r in records], dtype=np.int64),
            cu,
            batches,
            bytes_read,
            records_read,
            tally.snapshot(),
        )

    @torch.inference_mode()
    def _score_chunk(self, chunk: _Chunk, opts: _Options) -> dict[str, np.ndarray]:
        """Runs the chunk's forward passes and reduces per document."""
        n = int(chunk.cu_seqlens[-1])
        # float64 on the CPU (the torch reductions run in float64 there), fp32 for the kernels
        dtype = torch.float64 if self.device.type == "cpu" and self.backend != "triton" else torch.float32
        stats = torch.empty((4, n), dtype=dtype, device=self.device)
        for batch in chunk.batches:
            hidden = self._hidden(
                batch.input_ids.to(self.device, non_blocking=True),
                None
                if batch.attention_mask is None
                else batch.attention_mask.to(self.device, non_blocking=True),
                batch.position_ids.to(self.device, non_blocking=True),
            )
            flat = hidden.reshape(-1, hidden.shape[-1]).index_select(
                0, batch.positions.to(self.device, non_blocking=True)
            )
            token = kernels.linear_token_stats(
                flat,
                self.head_weight,
                batch.targets.to(self.device, non_blocking=True),
                bias=self.head_bias,
                softcap=self.softcap,
                backend=self.backend,
            )
            values = torch.stack([token.logprob, token.entropy, token.sum_p2, token.var_logp]).to(dtype)
            stats.index_copy_(1, batch.slots.to(self.device, non_blocking=True), values)
        cu = torch.from_numpy(chunk.cu_seqlens).to(self.device)
        return _document_columns(stats, cu, opts.min_k_ratio, self.backend)

    # -- the model ---------------------------------------------------------------------------

    def _hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """Final hidden states ``[B, T, D]``."""
        if self._hugging_face:
            # use_cache=False: with a cache, Hugging Face ignores packed position ids
            out = cast(Any, self.model).base_model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            )
        else:
            out = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        return out if isinstance(out, torch.Tensor) else out.last_hidden_state

    def _probe_ids(self, length: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        vocab = self.head_weight.shape[0]
        if self._hugging_face:
            vocab = min(vocab, cast(Any, self.model).get_input_embeddings().num_embeddings)
        return torch.randint(0, vocab, (1, length), generator=generator).to(self.device)

    def _check_head(self) -> None:
        """The model's own logits must be its output embeddings applied to its last hidden
        state (and the softcap): models that scale their logits otherwise are refused."""
        ids = self._probe_ids(8, seed=1)
        theirs = self.model(input_ids=ids, use_cache=False).logits.float()
        hidden = self._hidden(ids, None, torch.arange(8, device=self.device)[None])
        ours = functional.linear(hidden, self.head_weight, self.head_bias).float()
        if self.softcap is not None:
            ours = self.softcap * torch.tanh(ours / self.softcap)
        if _relative_gap(ours, theirs) > _tolerance(self.head_weight.dtype):
            raise InvalidArgumentError(
                f"the logits of {type(self.model).__name__} are not its output embeddings applied to its "
                "last hidden state (a logit scale?): pass the trunk as model= and its head as lm_head="
            )

    def _keeps_packed_windows_apart(self) -> bool:
        """Whether two sequences packed in one row with restarting position ids give the hidden
        states each gives alone."""
        a, b = self._probe_ids(5, seed=2), self._probe_ids(7, seed=3)
        position_ids = torch.cat([torch.arange(5), torch.arange(7)])[None].to(self.device)
        packed = self._hidden(torch.cat([a, b], dim=1), None, position_ids)
        alone = torch.cat(
            [self._hidden(x, None, torch.arange(x.shape[1], device=self.device)[None]) for x in (a, b)], dim=1
        )
        return _relative_gap(packed.float(), alone.float()) <= _tolerance(self.head_weight.dtype)

    def _manifest(self, report: ScoreReport, opts: _Options, out: Path) -> dict[str, Any]:
        read = report.read
        sources = [
            {
                "name": s.name,
                "bytes": s.bytes,
                "sha256": file_sha256(s.name) if os.path.isfile(s.name) else None,
                "records": s.records,
                "documents": s.documents,
                "scored": scored,
                "skipped": s.records - scored,
            }
            for s, scored in zip(read.sources, report.scored_per_source, strict=True)
        ]
        config = getattr(self.model, "config", None)
        source_order = {s.name: i for i, s in enumerate(read.sources)}
        return {
            **manifest_header("token-scores"),
            "model": {
                "class": type(self.model).__name__,
                "name_or_path": getattr(config, "_name_or_path", None),
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "vocab": self.head_weight.shape[0],
                "dtype": str(self.head_weight.dtype).removeprefix("torch."),
                "device": str(self.device),
                "softcap": self.softcap,
            },
            "tokenizer": type(self.tokenizer).__name__,
            "config": {
                "max_length": opts.max_length,
                "stride": opts.stride,
                "batch_size": opts.batch_size,
                "packing": self.packing,
                "add_special_tokens": self.add_special_tokens,
                "min_k_ratio": opts.min_k_ratio,
                "text_field": opts.text_field,
                "id_field": opts.id_field,
                "on_error": opts.on_error,
            },
            "output": {"path": out.name, "rows": report.scored, "columns": list(COLUMNS)},
            "counts": {
                "records": read.records,
                "scored": report.scored,
                "tokens": report.tokens,
                "skipped": {**read.skipped, **report.skipped},
                "resumed": report.resumed,
            },
            "skipped_records": [
                {"source": r.source, "line": r.line, "reason": r.reason, "detail": r.detail}
                for r in sorted(
                    (*read.skipped_records, *report.skipped_documents),
                    key=lambda r: (source_order[r.source], r.line),
                )
            ],
            "sources": sources,
            "seconds": report.seconds,
        }


def _options(
    max_positions: int | None,
    *,
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    text_field: str = "text",
    id_field: str | None = "id",
    on_error: OnError = "skip",
    min_k_ratio: float = 0.2,
) -> _Options:
    """The options of :meth:`TokenScorer.score`, checked, for a model of ``max_positions``
    positions (``None``: unknown, not checked)."""
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH, max_positions or DEFAULT_MAX_LENGTH)
    if max_length < 2:
        raise InvalidArgumentError(f"max_length must be >= 2 (one input, one target), got {max_length}")
    if max_positions is not None and max_length > max_positions:
        raise InvalidArgumentError(
            f"max_length {max_length} exceeds the model's max_position_embeddings ({max_positions})"
        )
    stride = max_length - 1 if stride is None else stride
    if not 1 <= stride <= max_length - 1:
        raise InvalidArgumentError(f"stride must be in [1, max_length - 1 = {max_length - 1}], got {stride}")
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 < min_k_ratio <= 1:
        raise InvalidArgumentError(f"min_k_ratio must be in (0, 1], got {min_k_ratio}")
    return _Options(max_length, stride, batch_size, text_field, id_field, on_error, min_k_ratio)


def manifest_path(out: str | os.PathLike[str]) -> Path:
    """Where :meth:`TokenScorer.score_to_parquet` writes the manifest of ``out``:
    ``scores.parquet`` → ``scores.manifest.json``."""
    return Path(out).with_suffix(".manifest.json")


# ---------------------------------------------------------------------------------------------
# layout of the forward passes


def _pad_rows(segments: list[Segment], opts: _Options) -> list[list[list[Segment]]]:
    """One window per row, longest first, as many rows per pass as fit ``batch_tokens`` slots."""
    lengths = np.array([end - start for _, start, end, _ in segments])
    order = np.argsort(-lengths, kind="stable")
    passes = []
    i = 0
    while i < len(order):
        width = _row_width(int(lengths[order[i]]), opts.max_length)
        take = order[i : i + max(1, opts.batch_tokens // width)]
        passes.append([[segments[j]] for j in take])
        i += len(take)
    return passes


def _pack_rows(segments: list[Segment], opts: _Options) -> list[list[list[Segment]]]:
    """Windows in stream order into ``batch_size`` rows of ``max_length`` per pass, each into the
    first row of the pass with room."""
    passes: list[list[list[Segment]]] = []
    rows: list[list[Segment]] = []
    fill: list[int] = []
    for segment in segments:
        length = segment[2] - segment[1]
        row = next((r for r, used in enumerate(fill) if used + length <= opts.max_length), None)
        if row is None:
            if len(rows) == opts.batch_size:
                passes.append(rows)
                rows, fill = [], []
            rows.append([])
            fill.append(0)
            row = len(rows) - 1
        rows[row].append(segment)
        fill[row] += length
    if rows:
        passes.append(rows)
    return passes


def _row_width(length: int, max_length: int) -> int:
    return min(-(-length // ROW_MULTIPLE) * ROW_MULTIPLE, max_length)


def _layout(
    rows: list[list[Segment]],
    tokens: list[np.ndarray],
    cu: np.ndarray,
    pad_id: int,
    max_length: int,
    packing: str,
    pin: bool,
) -> _Batch:
    """The tensors of one forward pass (on the host; pinned for a fast copy to a GPU)."""
    width = _row_width(max(sum(end - start for _, start, end, _ in row) for row in rows), max_length)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    position_ids = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1))
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    positions, targets, slots = [], [], []
    for r, row in enumerate(rows):
        offset = 0
        for doc, start, end, first in row:
            length = end - start
            input_ids[r, offset : offset + length] = tokens[doc][start:end]
            position_ids[r, offset : offset + length] = np.arange(length)
            # position p of the window predicts token p + 1: targets first..end-1 come from first-1..end-2
            positions.append(r * width + offset + np.arange(first - 1 - start, end - 1 - start))
            targets.append(tokens[doc][first:end])
            slots.append(cu[doc] + np.arange(first - 1, end - 1))
            offset += length
        attention_mask[r, :offset] = 1
        # the rest of a packed row restarts its positions: a sequence of its own, seen by no window
        position_ids[r, offset:] = np.arange(width - offset)

    def tensor(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.pin_memory() if pin else t

    return _Batch(
        tensor(input_ids),
        tensor(position_ids),
        tensor(attention_mask) if packing == "pad" else None,
        tensor(np.concatenate(positions)),
        tensor(np.concatenate(targets)),
        tensor(np.concatenate(slots)),
    )


# ---------------------------------------------------------------------------------------------
# reductions


def _document_columns(
    stats: torch.Tensor, cu: torch.Tensor, min_k_ratio: float, backend: kernels.Backend
) -> dict[str, np.ndarray]:
    """The float columns per document from the per-token ``[logprob, entropy, sum_p2,
    var_logp]`` rows, reduced in their dtype (float64 on the CPU, fp32 on a GPU)."""
    logprob, entropy, sum_p2, var_logp = stats
    nll = -logprob
    el2n = (sum_p2 - 2 * logprob.exp() + 1).clamp(min=0).sqrt()
    z = torch.where(var_logp > 0, (logprob + entropy) / var_logp.sqrt(), 0.0)  # mu = -entropy

    def mean(values: torch.Tensor) -> torch.Tensor:
        return kernels.segment_reduce(values, cu_seqlens=cu, backend=backend).mean

    nll_stats = kernels.segment_reduce(nll, cu_seqlens=cu, backend=backend)
    q = kernels.quantiles(nll, NLL_QUANTILES, cu_seqlens=cu, compute_dtype=stats.dtype)
    columns = {
        "sum_nll": nll_stats.sum,
        "mean_nll": nll_stats.mean,
        "mean_entropy": mean(entropy),
        "min_k": kernels.bottom_k_mean(logprob, min_k_ratio, cu_seqlens=cu, compute_dtype=stats.dtype),
        "min_k_plus_plus": kernels.bottom_k_mean(z, min_k_ratio, cu_seqlens=cu, compute_dtype=stats.dtype),
        "el2n": mean(el2n),
        **{f"nll_q{round(p * 100)}": q[:, i] for i, p in enumerate(NLL_QUANTILES)},
    }
    return {name: column.double().cpu().numpy() for name, column in columns.items()}


def _record_batch(chunk: _Chunk, columns: dict[str, np.ndarray]) -> pa.RecordBatch:
    pa = _pyarrow()
    tokens = np.diff(chunk.cu_seqlens)
    sum_nll, mean_nll = columns["sum_nll"], columns["mean_nll"]
    values = {
        "id": pa.array([r.id for r in chunk.records], pa.string()),
        "tokens": tokens,
        "bytes": chunk.nbytes,
        "chars": chunk.chars,
        "sum_nll": sum_nll,
        "mean_nll": mean_nll,
        "bits_per_byte": sum_nll / (chunk.nbytes * LN2),
        "bits_per_char": sum_nll / (chunk.chars * LN2),
        "perplexity": np.exp(mean_nll),
        **{
            name: columns[name] for name in COLUMNS if name in columns and name not in ("sum_nll", "mean_nll")
        },
    }
    return pa.RecordBatch.from_arrays([values[name] for name in COLUMNS], schema=_schema())


class _Resume(NamedTuple):
    """Where an interrupted run stopped: the rows its parts hold, the records it read through
    them and its counts then."""

    rows: int
    records_read: int
    tally: _Tally


class _Checkpoint:
    """The checkpoint directory ``<out>.parts/`` of :meth:`TokenScorer.score_to_parquet`: part
    files of the rows scored so far, and ``state.json`` (the run's settings, its parts, the
    records read through the last part and the counts then), each written atomically, the state
    after its part. ``settings=None`` (input in memory) never resumes."""

    STATE = "state.json"
    PART = re.compile(r"part-\d+\.parquet")
    FILES = re.compile(r"(part-\d+\.parquet|state\.json)(\.tmp)?")

    def __init__(self, out: Path, settings: dict[str, Any] | None, resume: bool) -> None:
        self.dir = out.with_name(out.name + ".parts")
        state = self._saved() if resume and settings is not None else None
        if state is not None and state["settings"] != settings:
            ours, theirs = settings or {}, state["settings"]
            differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            raise InvalidArgumentError(
                f"{self.dir} holds an interrupted run with other {', '.join(differ)}: run again with "
                "the same ones to resume it, or pass resume=False (--no-resume) to start over"
            )
        self.resumed = state is not None
        if state is not None:
            logger.warning(
                "resuming the interrupted run in %s: %s documents scored, %s records read",
                self.dir,
                f"{state['rows']:,}",
                f"{state['records_read']:,}",
            )
        else:
            self._clear()
            state = {
                "settings": settings,
                "parts": [],
                "rows": 0,
                "records_read": 0,
                "tally": _Tally().to_json(),
            }
        self.state = state
        for path in self.dir.iterdir():  # parts written after the last state (a run killed in between)
            if path.name != self.STATE and path.name not in state["parts"]:
                path.unlink()

    def _saved(self) -> dict[str, Any] | None:
        """The state of the checkpoint, checked: its parts are part files of this directory."""
        path = self.dir / self.STATE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            _Tally.from_json(state["tally"])
            if not (
                isinstance(state["settings"], dict)
                and isinstance(state["rows"], int)
                and isinstance(state["records_read"], int)
                and all(
                    isinstance(p, str) and self.PART.fullmatch(p) and (self.dir / p).is_file()
                    for p in state["parts"]
                )
            ):
                raise ValueError("unexpected contents")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise InvalidArgumentError(
                f"{path} cannot be read ({e}): pass resume=False (--no-resume) to start over"
            ) from e
        return cast(dict[str, Any], state)

    def _clear(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise InvalidArgumentError(f"{self.dir} is not a tokensieve checkpoint (it is a file)")
        if self.dir.is_dir():
            foreign = [p.name for p in self.dir.iterdir() if not self.FILES.fullmatch(p.name)]
            if foreign:
                raise InvalidArgumentError(
                    f"{self.dir} is not a tokensieve checkpoint (it holds {', '.join(sorted(foreign)[:3])})"
                )
            shutil.rmtree(self.dir)
        self.dir.mkdir()

    def start(self) -> _Resume | None:
        """Where the interrupted run stopped, when resuming one."""
        if not self.resumed:
            return None
        state = self.state
        return _Resume(state["rows"], state["records_read"], _Tally.from_json(state["tally"]))

    def commit(self, batches: list[pa.RecordBatch], rows: int, scored: _Scored) -> None:
        """Writes ``batches`` (``rows`` rows) as the next part, then the state: the records read
        through them and the counts then (``scored``, the last of them)."""
        import pyarrow.parquet as pq

        name = f"part-{len(self.state['parts']):05d}.parquet"
        with atomic_file(self.dir / name) as f, pq.ParquetWriter(f, _schema()) as writer:
            for batch in batches:
                writer.write_batch(batch)
        self.state["parts"].append(name)
        self.state["rows"] += rows
        self.state["records_read"] = scored.records_read
        self.state["tally"] = scored.tally.to_json()
        write_json(self.dir / self.STATE, self.state)

    def batches(self) -> Iterable[pa.RecordBatch]:
        """The rows of the parts, in order."""
        import pyarrow.parquet as pq

        for name in self.state["parts"]:
            yield from pq.ParquetFile(self.dir / name).iter_batches()

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _RowGroups:
    """Gathers rows into Parquet row groups of ``rows`` rows in columns allocated once, so that
    the footprint stays fixed however many small batches arrive, and writes each when full."""

    def __init__(self, writer: Any, rows: int) -> None:
        self.writer, self.rows = writer, rows
        self.columns = {
            name: np.empty(rows, dtype=np.int64 if kind == "int64" else np.float64)
            for name, kind in COLUMNS.items()
            if name != "id"
        }
        self.ids: list[str] = []

    def add(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            at = len(self.ids)
            part = batch.slice(start, min(self.rows - at, batch.num_rows - start))
            for name, column in self.columns.items():
                column[at : at + part.num_rows] = part.column(name).to_numpy()
            self.ids.extend(part.column("id").to_pylist())
            start += part.num_rows
            if len(self.ids) == self.rows:
                self.flush()

    def flush(self) -> None:
        """Writes the rows gathered so far as one row group (the writer copies them)."""
        if self.ids:
            pa = _pyarrow()
            n = len(self.ids)
            arrays = [
                pa.array(self.ids, pa.string()) if name == "id" else self.columns[name][:n]
                for name in COLUMNS
            ]
            self.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=_schema()))
            self.ids = []


# ---------------------------------------------------------------------------------------------
# helpers


def _schema() -> pa.Schema:
    pa = _pyarrow()
    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()])


def _encoder(tokenizer: Any, add_special_tokens: bool) -> Callable[[list[str]], list[list[int]]]:
    """``texts -> token ids`` for a ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer."""
    fast_tokenizer: tuple[type, ...] = ()  # none when the tokenizers package is absent
    try:
        from tokenizers import Tokenizer

        fast_tokenizer = (Tokenizer,)
    except ImportError:
        pass
    if isinstance(tokenizer, fast_tokenizer):
        encode_batch = cast(Any, tokenizer).encode_batch
        return lambda texts: [e.ids for e in encode_batch(texts, add_special_tokens=add_special_tokens)]
    if not callable(tokenizer):
        raise InvalidArgumentError(
            f"expected a transformers or tokenizers tokenizer, got {type(tokenizer).__name__}"
        )
    return lambda texts: tokenizer(
        texts, add_special_tokens=add_special_tokens, return_attention_mask=False, verbose=False
    )["input_ids"]


def _weights_fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 over each tensor's shape and float64 sum: one read of the weights, where a hash of
    their bytes would copy gigabytes to the host. Sums are summed a slice of 2^24 values at a
    time (bounding the float64 copy) and kept to 10 significant digits, so that another
    reduction order on the same kind of device gives the same fingerprint."""
    digest = hashlib.sha256()
    for tensor in tensors:
        values = tensor.detach().reshape(-1)
        total = sum(float(piece.sum(dtype=torch.float64)) for piece in values.split(1 << 24))
        digest.update(f"{list(tensor.shape)}:{total:.10g};".encode())
    return digest.hexdigest()


def _reader(source: Any, opts: _Options) -> DocumentReader:
    return DocumentReader(source, text_field=opts.text_field, id_field=opts.id_field, on_error=opts.on_error)


def _progress_bytes(reader: DocumentReader) -> int:
    """Bytes of input done: of the files as stored, or of the texts in memory."""
    return reader.bytes_read if reader.paths is not None else reader.report.text_bytes


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _tolerance(dtype: torch.dtype) -> float:
    """The relative gap two computations of the same values may show in ``dtype``; a model
    that mixes packed windows, or scales its logits, is off by far more."""
    return 1e-3 if dtype in (torch.float32, torch.float64) else 5e-2


def _prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, produced on a background thread up to ``depth`` ahead: reading and tokenising
    (which releases the GIL) overlap the model's forward passes. An exception in the producer
    is raised here; stopping early stops the producer."""
    channel: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(done: bool, value: Any) -> bool:
        while not stop.is_set():
            try:
                channel.put((done, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(False, item):
                    return
            put(True, None)
        except BaseException as e:  # handed to the consumer, raised there
            put(True, e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="tokensieve-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            done, value = channel.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as e:
        raise MissingDependencyError("scoring needs pyarrow: pip install tokensieve[scoring]") from e
    return pyarrow


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise MissingDependencyError(
            "loading a model needs transformers: pip install tokensieve[scoring]"
        ) from e
    return transformers
