"""Ray Data: batch functions on actor pools, corpus files read into blocks, and DSIR fitted
and selected on a cluster with the same selection as the single-machine API.

Needs ``ray[data]`` (``pip install 'tokensieve[ray]'``) and a cluster (``ray.init()``)::

    import ray
    from tokensieve.integrations import ray as tsray
    from tokensieve.integrations.batch import FastTextScores, TokenScores

    ray.init()
    ds = tsray.read_corpus("pool/")                        # text, source, position (+ skipped, line)
    scored = tsray.apply(ds, FastTextScores("hq.bin", "hq"), actors=4)
    lm = tsray.apply(ds, TokenScores("lm-dir/"), actors=8, num_gpus=1, batch_size=1024)  # GPU actors
    dsir = tsray.fit_dsir(ds, tsray.read_corpus("target/"), buckets=10000)
    selection = tsray.select_dsir(ds, dsir, fraction=0.1, seed=0)
    selection.write("selected/")                            # Parquet shards + manifest.json

**Document identity.** DSIR's Gumbel noise is keyed by a document's identity, so a selection
does not depend on how the corpus is split into blocks. A row's identity is its ``source``
(str) and ``position`` (int) columns; :func:`read_corpus` fills them as the single-machine API
numbers documents (the file's path relative to the directory holding all the files, and the
document's index among the file's documents), so on the same files the distributed selection
is the single-machine one, document for document. Rows from any other reader need these two
columns, unique per row. A tie between equal keys (``method="topk"`` with duplicate documents)
goes to the smaller ``(source, position)``; the single-machine API gives it to the earlier
document in the order the files were listed, which is the same when they are listed sorted
(as directories and globs are).

**Accounting.** :func:`read_corpus` gives every record of the files a row: a record that is
not a document (a blank line, malformed JSON, a missing text) has a null text, a null position
and its reason in ``skipped`` (its ``line`` when known). :func:`select_dsir`'s manifest
counts every row of its input as selected, not selected, too short, or skipped with a reason.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:
    import ray
    import ray.data
    from ray.data.aggregate import AggregateFnV2, ApproximateQuantile
    from ray.data.block import BlockAccessor
except ImportError as error:  # pragma: no cover - exercised only without Ray
    raise ImportError("tokensieve.integrations.ray needs Ray Data: pip install 'tokensieve[ray]'") from error

from tokensieve import _core
from tokensieve.dsir import DSIR, gumbel_noise, source_identities
from tokensieve.exceptions import CorpusNotFoundError, InvalidArgumentError
from tokensieve.features import HashedNgrams
from tokensieve.integrations.batch import BatchFunction, DSIRWeights
from tokensieve.io import ArrowBatches, OnError, ReadReport, corpus_files
from tokensieve.output import write_json

__all__ = ["DistributedSelection", "apply", "fit_dsir", "read_corpus", "select_dsir"]

SOURCE = "source"
POSITION = "position"
SKIPPED = "skipped"
LINE = "line"
#: The column of the keys table that says what a row is: eligible, too short, or a skip reason.
STATUS = "status"
#: Rows per batch given to a batch function (and per block of read_corpus). Ray's cost per
#: batch (task scheduling, object store puts) is fixed, so larger batches spend less per
#: document (bench_scale: see the README's Ray numbers).
BATCH_ROWS = 16384

# The statuses of a row in select_dsir's key table (besides the skip reasons).
_ELIGIBLE, _TOO_SHORT = "eligible", "too_short"


# -- reading --------------------------------------------------------------------------------


def read_corpus(
    source: Any,
    *,
    text_field: str = "text",
    on_error: OnError = "skip",
    rows_per_block: int = BATCH_ROWS,
) -> ray.data.Dataset:
    """Corpus files (any file source of :mod:`tokensieve.io`: JSON Lines, plain or compressed,
    and Parquet) as a Dataset, one read task per file, read by tokensieve's own reader: the
    same records become the same documents as in the single-machine API.

    Columns: ``text_field`` (the text; every column of a Parquet file is kept), ``source`` and
    ``position`` (the document's identity, see the module documentation), ``skipped`` (null,
    or why the record is not a document) and ``line`` (the record's 1-based line or row of a
    skipped record, when known). The names ``source``, ``position``, ``skipped`` and ``line``
    must not be columns of the files.

    A task reads a JSON Lines file in one pass of the compiled reader, which hands out Arrow
    batches of ``rows_per_block`` documents (:class:`tokensieve.io.ArrowBatches`). A Parquet
    file, whose other columns are kept, is scanned, its documents' rows copied into a temporary
    Parquet file by tokensieve's shard writer and read back in blocks of ``rows_per_block``
    rows.
    """
    files = corpus_files(source)
    if not files:
        raise InvalidArgumentError(f"no corpus files in {source!r}")
    for path in files:
        if not os.path.isfile(path):
            error = CorpusNotFoundError(f"{path}: no such file")
            error.path = path
            raise error
    items = [
        {"path": os.path.abspath(path), SOURCE: identity}
        for path, identity in zip(files, source_identities(files), strict=True)
    ]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _read_files,
        fn_kwargs={"text_field": text_field, "on_error": on_error, "rows": rows_per_block},
        batch_size=1,
        batch_format="pyarrow",
    )


def _read_files(files: pa.Table, *, text_field: str, on_error: OnError, rows: int) -> Iterator[pa.Table]:
    for path, source in zip(files["path"].to_pylist(), files[SOURCE].to_pylist(), strict=True):
        yield from _read_file(path, source, text_field, on_error, rows)


def _read_file(path: str, source: str, text_field: str, on_error: OnError, rows: int) -> Iterator[pa.Table]:
    reader = _read_parquet if _is_parquet(path) else _read_lines
    read = yield from reader(path, source, text_field, on_error, rows)
    yield from _skipped_rows(read, source, text_field)


def _is_parquet(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False  # the compiled reader raises the typed error


class _Read(NamedTuple):
    """What a file reader returns after its documents: the read's report and the columns the
    rows of its skipped records need (nulls)."""

    report: ReadReport
    columns: pa.Schema


def _read_lines(
    path: str, source: str, text_field: str, on_error: OnError, rows: int
) -> Generator[pa.Table, None, _Read]:
    """A JSON Lines file's documents in one pass of the compiled reader (Arrow batches)."""
    batches = ArrowBatches([path], text_field=text_field, on_error=on_error, batch_rows=rows, num_threads=1)
    first = 0
    for batch in batches:
        n = batch.num_rows
        yield _document_rows({text_field: batch.column("text").cast(pa.string())}, source, first, n)
        first += n
    return _Read(batches.report, pa.schema([]))


def _read_parquet(
    path: str, source: str, text_field: str, on_error: OnError, rows: int
) -> Generator[pa.Table, None, _Read]:
    """A Parquet file's documents with every column of their rows: a scan, then tokensieve's
    shard writer copies exactly the rows the reader takes as documents into a temporary
    Parquet file, read back in blocks of ``rows`` rows."""
    report = ReadReport._from_core(
        _core.scan_files([path], text_field=text_field, on_error=on_error, num_threads=1)
    )
    others = pa.schema([])
    with tempfile.TemporaryDirectory(prefix="tokensieve-ray-") as tmp:
        if report.documents:
            [(_, shard, _)] = _core.write_selected_files(
                [path],
                [report.documents],
                None,
                np.ones(report.documents, dtype=np.uint32),
                tmp,
                format="parquet",
                text_field=text_field,
                on_error=on_error,
                num_threads=1,
            )
            documents = pq.ParquetFile(shard)
            others = pa.schema([f for f in documents.schema_arrow if f.name != text_field])
            clash = {SOURCE, POSITION, SKIPPED, LINE} & set(others.names)
            if clash:
                raise InvalidArgumentError(
                    f"{path} has columns named {sorted(clash)}, which read_corpus adds"
                )
            first = 0
            for batch in documents.iter_batches(batch_size=rows):
                n = batch.num_rows
                texts = batch.column(text_field).cast(pa.string())
                columns = {text_field: texts, **{name: batch.column(name) for name in others.names}}
                yield _document_rows(columns, source, first, n)
                first += n
    return _Read(report, others)


def _document_rows(columns: dict[str, pa.Array], source: str, first: int, n: int) -> pa.Table:
    """Rows of the documents ``first .. first + n`` of a source."""
    return _rows(
        columns,
        source,
        position=pa.array(np.arange(first, first + n, dtype=np.int64)),
        skipped=pa.nulls(n, pa.string()),
        line=pa.nulls(n, pa.int64()),
    )


def _skipped_rows(read: _Read, source: str, text_field: str) -> Iterator[pa.Table]:
    """One row per skipped record of a read (nulls but for the skip reason and line)."""
    skips = _skipped_records(read.report)
    if skips:
        n = len(skips)
        others = {f.name: pa.nulls(n, f.type) for f in read.columns}
        yield _rows(
            {text_field: pa.nulls(n, pa.string()), **others},
            source,
            position=pa.nulls(n, pa.int64()),
            skipped=pa.array([reason for reason, _ in skips], pa.string()),
            line=pa.array([line for _, line in skips], pa.int64()),
        )


def _rows(columns: dict[str, pa.Array], source: str, **identity: pa.Array) -> pa.Table:
    n = len(identity[POSITION])
    return pa.table({**columns, SOURCE: pa.array([source] * n, pa.string()), **identity})


def _skipped_records(report: ReadReport) -> list[tuple[str, int | None]]:
    """Every skipped record of a read as (reason, line): located ones with their line, blank
    lines and records past the located ones without."""
    located: list[tuple[str, int | None]] = [(r.reason, r.line) for r in report.skipped_records]
    listed = Counter(reason for reason, _ in located)
    for reason, count in sorted(report.skipped.items()):
        located += [(reason, None)] * (count - listed[reason])
    return located


# -- batch functions on actors --------------------------------------------------------------


def apply(
    ds: ray.data.Dataset,
    fn: BatchFunction,
    *,
    batch_size: int = BATCH_ROWS,
    actors: int | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    keep_columns: Sequence[str] | None = None,
    share_arrays: bool = True,
) -> ray.data.Dataset:
    """``ds`` with the columns of the batch function ``fn`` added, computed on a pool of
    actors: each actor unpickles ``fn`` and builds its compiled objects (reads its model) once,
    then takes Arrow batches of ``batch_size`` rows, handed to the compiled code without a copy.

    ``share_arrays``: put the large arrays of ``fn``'s compiled state
    (:meth:`~tokensieve.integrations.batch.BatchFunction.shareable_arrays`: a fastText model's
    input matrix) in Ray's object store once, so that the actors of a machine compute from one
    copy in shared memory instead of one each. The object store must have room for them.

    ``keep_columns``: the input columns to keep beside the new ones (all by default). Keeping
    only the identity (``["source", "position"]``) spares the object store a second copy of
    every text when only the scores are wanted.

    ``actors``: a fixed pool size, or ``None`` for a pool that grows from 1 with the cluster.
    ``num_cpus`` per actor is also the thread count of its compiled calls, whose threads share
    the actor's model; ``num_gpus`` per actor reserves GPUs for it (for
    :class:`~tokensieve.integrations.batch.TokenScores`, whose ``device=None`` then means the
    actor's GPU, and the CPU when ``num_gpus`` is 0).
    """
    keep = None if keep_columns is None else list(keep_columns)
    # References inside a dict are not resolved by Ray: each actor gets them itself.
    shared = {name: ray.put(a) for name, a in fn.shareable_arrays().items()} if share_arrays else {}
    kwargs = {"fn": fn, "gpu": num_gpus > 0, "keep_columns": keep, "shared": shared}
    return _map_on_actors(
        ds, _Apply, kwargs, batch_size=batch_size, actors=actors, num_cpus=num_cpus, num_gpus=num_gpus
    )


class _Apply:
    def __init__(
        self,
        fn: BatchFunction,
        gpu: bool,
        keep_columns: list[str] | None,
        shared: dict[str, ray.ObjectRef],
        num_threads: int,
    ) -> None:
        if shared:
            # Zero-copy: read-only numpy arrays over the object store's shared memory.
            fn.use_shared_arrays({name: ray.get(ref) for name, ref in shared.items()})
        fn.place(num_threads=num_threads, gpu=gpu)
        fn.load()
        self.fn = fn
        self.keep_columns = keep_columns

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.fn.with_columns(batch, self.keep_columns)


def _map_on_actors(
    ds: ray.data.Dataset,
    udf: type,
    kwargs: dict[str, Any],
    *,
    batch_size: int,
    actors: int | None,
    num_cpus: float,
    num_gpus: float = 0,
    same_rows: bool = True,
) -> ray.data.Dataset:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
    if actors is not None and actors < 1:
        raise InvalidArgumentError(f"actors must be None or at least 1, got {actors}")
    pool = ray.data.ActorPoolStrategy(size=actors) if actors else ray.data.ActorPoolStrategy(min_size=1)
    return ds.map_batches(
        udf,
        fn_constructor_kwargs={**kwargs, "num_threads": max(1, int(num_cpus))},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=pool,
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
        udf_modifying_row_count=not same_rows,
    )


# -- DSIR -----------------------------------------------------------------------------------


def fit_dsir(
    raw: ray.data.Dataset,
    target: Any,
    *,
    text_column: str = "text",
    batch_size: int = BATCH_ROWS,
    actors: int | None = None,
    num_cpus: float = 1,
    **settings: Any,
) -> DSIR:
    """DSIR's estimator fitted on a cluster: each batch's documents are featurised and their
    bucket counts summed (one row per batch), and an aggregation sums these vectors. Returns
    the :class:`~tokensieve.dsir.DSIR` that ``DSIR(...).fit()`` gives on the same documents
    (its counts are integers: the sums are exact), ready for :func:`select_dsir`, ``save`` or
    :class:`~tokensieve.integrations.batch.DSIRWeights`.

    ``target``: a Dataset, any source of :mod:`tokensieve.io` (counted in this process), or
    ``{name: either}`` for several targets. ``settings``: the keyword arguments of
    :class:`~tokensieve.dsir.DSIR` (feature space, ``min_example_length``,
    ``target_laplace_smoothing``, ``target_proportions``); ``chunk_words`` and
    ``num_tokens_to_fit`` are single-machine only.
    """
    for name in ("chunk_words", "num_tokens_to_fit"):
        if settings.get(name, "all" if name == "num_tokens_to_fit" else None) not in (None, "all"):
            raise InvalidArgumentError(f"{name} is not supported on Ray: use tokensieve.DSIR")
    targets = dict(target) if isinstance(target, Mapping) else {"target": target}
    featurizer = DSIR(None, dict.fromkeys(targets), **settings).featurizer
    options: dict[str, Any] = {
        "text_column": text_column,
        "batch_size": batch_size,
        "actors": actors,
        "num_cpus": num_cpus,
    }
    raw_counts = _sum_counts(raw, featurizer, **options)
    target_counts = [
        _sum_counts(source, featurizer, **options)
        if isinstance(source, ray.data.Dataset)
        else featurizer.sum_counts(source, text_field=text_column)
        for source in targets.values()
    ]
    return DSIR.from_counts(raw_counts, np.stack(target_counts), targets=list(targets), **settings)


def _sum_counts(
    ds: ray.data.Dataset, featurizer: HashedNgrams, *, text_column: str, **options: Any
) -> np.ndarray:
    kwargs = {"featurizer": featurizer, "text_column": text_column}
    sums = _map_on_actors(ds, _BatchCounts, kwargs, same_rows=False, **options).materialize()
    return _reduce(sums, _VectorSum("counts", featurizer.buckets))


class _BatchCounts:
    """The summed bucket counts of a batch's documents, as one row."""

    def __init__(self, featurizer: HashedNgrams, text_column: str, num_threads: int) -> None:
        self.featurizer = featurizer
        self.text_column = text_column
        self.num_threads = num_threads

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = _column(batch, self.text_column)
        counts, _ = self.featurizer._core.sum_counts_texts(texts, num_threads=self.num_threads)
        return pa.table({"counts": pa.FixedSizeListArray.from_arrays(pa.array(counts), len(counts))})


class _VectorSum(AggregateFnV2):
    """The element-wise sum of a fixed-size list column of int64 (accumulated as bytes)."""

    def __init__(self, on: str, size: int) -> None:
        self.size = size
        super().__init__(
            f"vsum({on})", zero_factory=lambda: np.zeros(size, np.int64).tobytes(), on=on, ignore_nulls=True
        )

    def aggregate_block(self, block: Any) -> bytes:
        column = BlockAccessor.for_block(block).to_arrow().column(self._target_col_name)
        values = np.asarray(column.combine_chunks().flatten(), dtype=np.int64)
        return values.reshape(-1, self.size).sum(axis=0, dtype=np.int64).tobytes()

    def combine(self, current_accumulator: bytes, new: bytes) -> bytes:
        return (np.frombuffer(current_accumulator, np.int64) + np.frombuffer(new, np.int64)).tobytes()

    def finalize(self, accumulator: bytes) -> np.ndarray:
        return np.frombuffer(accumulator, np.int64).copy()


@dataclass(frozen=True)
class Cutoff:
    """The last document a target selects in the order of selection keys (key descending, then
    ``(source, position)`` ascending): a document is selected if it comes no later. Without a
    source it is a threshold on the key (``exact=False``)."""

    key: float
    source: str | None = None
    position: int | None = None


@dataclass(frozen=True)
class DistributedSelection:
    """What :func:`select_dsir` chose.

    ``positions[source]``: the positions of the selected documents of each source, ascending
    (the identities of the selection; the single-machine :attr:`Selection.indices
    <tokensieve.dsir.Selection.indices>` in another form). ``dataset``: the selected rows of
    the input, computed lazily. ``manifest``: a JSON-ready account of every input row.
    """

    dataset: ray.data.Dataset
    positions: Mapping[str, np.ndarray]
    k: int
    cutoffs: tuple[Cutoff, ...]
    manifest: dict[str, Any]

    def write(self, out: str | os.PathLike[str]) -> Path:
        """Writes the selected rows as Parquet shards into the new or empty directory ``out``,
        then ``out/manifest.json`` (with the shards and their row counts). Returns the manifest's
        path."""
        out_dir = Path(out)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise InvalidArgumentError(f"{out_dir} is not empty")
        self.dataset.write_parquet(str(out_dir))
        shards = sorted(out_dir.glob("*.parquet"))
        manifest = {
            **self.manifest,
            "shards": [{"path": p.name, "documents": pq.ParquetFile(p).metadata.num_rows} for p in shards],
        }
        path = out_dir / "manifest.json"
        write_json(path, manifest)
        return path


def select_dsir(
    raw: ray.data.Dataset,
    dsir: DSIR,
    k: int | None = None,
    *,
    fraction: float | None = None,
    seed: int = 0,
    method: Literal["gumbel", "topk"] = "gumbel",
    normalize: bool = False,
    clamp: bool = False,
    exact: bool = True,
    text_column: str = "text",
    batch_size: int = BATCH_ROWS,
    actors: int | None = None,
    num_cpus: float = 1,
) -> DistributedSelection:
    """Selects ``k`` documents of ``raw`` (or ``fraction`` of the eligible ones) with a fitted
    estimator, as :meth:`DSIR.resample <tokensieve.dsir.DSIR.resample>` does: ``"gumbel"`` (Gumbel
    top-k, the noise keyed by ``(seed, target, source, position)``) or ``"topk"``, ``normalize``
    and ``clamp`` alike. On the same documents with the same identities it selects the same
    documents (see the module documentation for ties).

    ``raw`` needs the columns ``text_column``, ``source`` and ``position`` (see
    :func:`read_corpus`). Its weights are computed once, per block on actors, into a small
    materialised table of keys (about 60 bytes per row). Per target, an aggregation keeps the
    best k keys of each block and merges them pairwise into the target's cutoff (Ray tasks over
    the key blocks); a last pass collects the selected identities, and ``dataset`` keeps the
    rows of ``raw`` that have them. For a k too large for one aggregation to hold,
    ``exact=False`` takes the cutoff from an approximate quantile of the keys instead
    (``ray.data.aggregate.ApproximateQuantile``, which needs ``datasketches``): about k
    documents, not the single-machine selection.
    """
    if method not in ("gumbel", "topk"):
        raise InvalidArgumentError(f'method must be "gumbel" or "topk" on Ray, got {method!r}')
    _require_columns(raw, [text_column, SOURCE, POSITION])
    weights = DSIRWeights(dsir, text_column=text_column)
    kwargs = {"weights": weights, "min_example_length": dsir.min_example_length}
    keys = _map_on_actors(raw, _Keys, kwargs, batch_size=batch_size, actors=actors, num_cpus=num_cpus)
    keys = keys.materialize()
    tally = _reduce(keys, _Tally(STATUS))
    quotas = dsir.target_quotas(_eligible(tally), k, fraction=fraction, clamp=clamp)
    scoring = {"seed": seed, "gumbel": method == "gumbel", "normalize": normalize}
    cutoffs: list[Cutoff] = []
    for t, quota in enumerate(quotas):
        if quota == 0:
            cutoffs.append(Cutoff(np.inf))  # selects nothing
            continue
        candidates = functools.partial(_candidates, target=t, cutoffs=list(cutoffs), **scoring)
        if exact:
            cutoffs.append(_reduce(keys, _TopK("key", quota), candidates))
        else:
            left = _eligible(tally) - sum(quotas[:t])
            quantile = ApproximateQuantile("score", [min(1.0, 1 - quota / left)])
            cutoffs.append(Cutoff(float(_reduce(keys, quantile, candidates)[0])))
    chosen = ray.get([_chosen.remote(block, cutoffs=cutoffs, **scoring) for block in keys.to_arrow_refs()])
    positions = _positions_by_source(chosen)
    dataset = _map_on_actors(
        raw,
        _KeepSelected,
        {"positions": positions},
        batch_size=batch_size,
        actors=actors,
        num_cpus=num_cpus,
        same_rows=False,
    )
    assert tally is not None
    manifest = _manifest(dsir, tally, positions, quotas, cutoffs, method, seed, exact, normalize)
    return DistributedSelection(dataset, positions, sum(quotas), tuple(cutoffs), manifest)


class _Keys:
    """Per row: its identity, DSIR weights, token count and status (a small table)."""

    def __init__(self, weights: DSIRWeights, min_example_length: int, num_threads: int) -> None:
        weights.num_threads = num_threads
        weights.load()
        self.weights = weights
        self.min_example_length = min_example_length

    def __call__(self, batch: pa.Table) -> pa.Table:
        source, position = _column(batch, SOURCE), _column(batch, POSITION)
        computed = self.weights.compute(_column(batch, self.weights.text_column))
        tokens = computed.columns[self.weights.tokens_column]
        long_enough = pc.greater_equal(tokens, self.min_example_length)
        status = pc.if_else(long_enough, _ELIGIBLE, _TOO_SHORT)
        # A row skipped by the reader keeps its reason; a null or bad text gets the compiled one.
        status = pc.coalesce(computed.skipped, status)
        if SKIPPED in batch.column_names:
            status = pc.coalesce(batch.column(SKIPPED).combine_chunks(), status)
        return pa.table(
            {
                SOURCE: source,
                POSITION: pc.cast(position, pa.int64()),
                "log_weight": computed.columns[self.weights.column],
                "tokens": tokens,
                STATUS: status,
            }
        )


def _candidates(keys: pa.Table, *, target: int, cutoffs: list[Cutoff], **scoring: Any) -> pa.Table:
    """Per row, its selection key for target ``target`` if that target can still select it (else
    null), with the row's identity and status."""
    eligible = np.asarray(pc.equal(keys[STATUS], _ELIGIBLE).combine_chunks().to_numpy(zero_copy_only=False))
    available = eligible & ~_selected_before(keys, eligible, target, cutoffs, scoring)
    score = np.full(keys.num_rows, np.nan)
    score[available] = _selection_keys(keys.filter(pa.array(available)), target, **scoring)
    missing = ~available
    key = pa.StructArray.from_arrays(
        [pa.array(score), keys[SOURCE].combine_chunks(), keys[POSITION].combine_chunks()],
        names=["score", SOURCE, POSITION],
        mask=pa.array(missing),
    )
    return pa.table(
        {"key": key, "score": pa.array(score, mask=missing), SOURCE: keys[SOURCE], STATUS: keys[STATUS]}
    )


@ray.remote
def _chosen(keys: pa.Table, *, cutoffs: list[Cutoff], **scoring: Any) -> pa.Table:
    """The identities of the rows some target selects."""
    eligible = np.asarray(pc.equal(keys[STATUS], _ELIGIBLE).combine_chunks().to_numpy(zero_copy_only=False))
    chosen = _selected_before(keys, eligible, len(cutoffs), cutoffs, scoring)
    return keys.select([SOURCE, POSITION]).filter(pa.array(chosen))


def _selected_before(
    keys: pa.Table, eligible: np.ndarray, target: int, cutoffs: list[Cutoff], scoring: dict[str, Any]
) -> np.ndarray:
    """Whether each row is selected by one of the targets before ``target``: each target takes
    the eligible rows no earlier targets took whose key comes no later than its cutoff."""
    taken = np.zeros(keys.num_rows, dtype=bool)
    for t in range(target):
        free = eligible & ~taken
        rows = keys.filter(pa.array(free))
        taken[np.flatnonzero(free)] = _comes_before(rows, _selection_keys(rows, t, **scoring), cutoffs[t])
    return taken


def _selection_keys(rows: pa.Table, target: int, *, seed: int, gumbel: bool, normalize: bool) -> np.ndarray:
    """The keys of eligible rows for ``target``, computed as DSIR.resample computes them."""
    column = rows["log_weight"].combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        weights = np.asarray(column.flatten()).reshape(len(column), -1)[:, target]
    else:
        weights = np.asarray(column)
    if normalize:
        weights = weights / np.maximum(np.asarray(rows["tokens"].combine_chunks()), 1)
    if gumbel:
        sources = rows[SOURCE].combine_chunks().to_numpy(zero_copy_only=False)
        weights = weights + gumbel_noise(sources, np.asarray(rows[POSITION]), seed=seed, target=target)
    return np.asarray(weights, dtype=np.float64)


def _comes_before(rows: pa.Table, score: np.ndarray, cutoff: Cutoff) -> np.ndarray:
    """Whether each row's (key, source, position) comes no later than the cutoff."""
    if cutoff.source is None:
        return score >= cutoff.key
    key, source, position = pa.array(score), rows[SOURCE], rows[POSITION]
    tie = pc.or_(
        pc.less(source, cutoff.source),
        pc.and_(pc.equal(source, cutoff.source), pc.less_equal(position, cutoff.position)),
    )
    before = pc.or_(pc.greater(key, cutoff.key), pc.and_(pc.equal(key, cutoff.key), tie))
    return np.asarray(before.combine_chunks().to_numpy(zero_copy_only=False), dtype=bool)


_KEY_ORDER = [("score", "descending"), (SOURCE, "ascending"), (POSITION, "ascending")]


class _TopK(AggregateFnV2):
    """The ``k`` best selection keys (a struct column of score, source, position) in the order of
    :class:`Cutoff`; each block keeps its best k, merged k at a time; the result is the cutoff."""

    def __init__(self, on: str, k: int) -> None:
        self.k = k
        empty = pa.table(
            {"score": pa.array([], pa.float64()), SOURCE: [], POSITION: pa.array([], pa.int64())}
        )
        super().__init__(f"top_k({on}, {k})", zero_factory=lambda: _to_bytes(empty), on=on, ignore_nulls=True)

    def _best(self, table: pa.Table) -> bytes:
        if self.k == 0:
            table = table.slice(0, 0)
        elif table.num_rows > self.k:
            table = table.take(pc.select_k_unstable(table, self.k, _KEY_ORDER))
        return _to_bytes(table)

    def aggregate_block(self, block: Any) -> bytes:
        keys = BlockAccessor.for_block(block).to_arrow().column(self._target_col_name).combine_chunks()
        return self._best(pa.Table.from_struct_array(keys.filter(keys.is_valid())))

    def combine(self, current_accumulator: bytes, new: bytes) -> bytes:
        return self._best(pa.concat_tables([_from_bytes(current_accumulator), _from_bytes(new)]))

    def finalize(self, accumulator: bytes) -> Cutoff:
        best = _from_bytes(accumulator)
        if best.num_rows == 0:
            return Cutoff(np.inf)  # selects nothing
        last = best.take(pc.sort_indices(best, _KEY_ORDER)).slice(best.num_rows - 1).to_pylist()[0]
        return Cutoff(last["score"], last[SOURCE], last[POSITION])


class _Tally(AggregateFnV2):
    """Rows counted per (source, status): ``{source: {status: count}}``."""

    def __init__(self, on: str) -> None:
        super().__init__(f"tally({on})", zero_factory=lambda: b"{}", on=None, ignore_nulls=False)
        self.on = on

    def aggregate_block(self, block: Any) -> bytes:
        table = BlockAccessor.for_block(block).to_arrow().select([SOURCE, self.on])
        counts = table.group_by([SOURCE, self.on]).aggregate([([], "count_all")])
        tally: dict[str, dict[str, int]] = {}
        for source, status, n in zip(
            *(counts[c].to_pylist() for c in (SOURCE, self.on, "count_all")), strict=True
        ):
            tally.setdefault(source, {})[status] = n
        return json.dumps(tally).encode()

    def combine(self, current_accumulator: bytes, new: bytes) -> bytes:
        tally = json.loads(current_accumulator)
        for source, statuses in json.loads(new).items():
            mine = tally.setdefault(source, {})
            for status, n in statuses.items():
                mine[status] = mine.get(status, 0) + n
        return json.dumps(tally).encode()

    def finalize(self, accumulator: bytes) -> dict[str, dict[str, int]]:
        return json.loads(accumulator)


def _eligible(tally: dict[str, dict[str, int]]) -> int:
    return sum(statuses.get(_ELIGIBLE, 0) for statuses in tally.values())


def _positions_by_source(chosen: list[pa.Table]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for table in chosen:
        for group in table.group_by(SOURCE).aggregate([(POSITION, "list")]).to_pylist():
            parts.setdefault(group[SOURCE], []).append(np.asarray(group[f"{POSITION}_list"], dtype=np.int64))
    return {source: np.sort(np.concatenate(p)) for source, p in sorted(parts.items())}


def _reduce(ds: ray.data.Dataset, aggregation: AggregateFnV2, prepare: Callable | None = None) -> Any:
    """What ``ds.aggregate(aggregation)`` computes on a materialised dataset (after ``prepare``
    maps each block), as plain Ray tasks: one per block, then pairwise merges. A Ray Data
    aggregation starts its own job and aggregator actors, seconds each time; these tasks run on
    the cluster's idle workers at once."""
    agg = ray.put(aggregation)
    partials = [_aggregate_block.remote(agg, prepare, block) for block in ds.to_arrow_refs()]
    while len(partials) > 1:
        merged = [_merge.remote(agg, a, b) for a, b in zip(partials[0::2], partials[1::2], strict=False)]
        partials = merged + partials[2 * len(merged) :]
    return aggregation.finalize(ray.get(partials[0]) if partials else aggregation.init(None))


@ray.remote
def _aggregate_block(aggregation: AggregateFnV2, prepare: Callable | None, block: pa.Table) -> Any:
    rows = block if prepare is None else prepare(block)
    return aggregation.accumulate_block(aggregation.init(None), rows)


@ray.remote
def _merge(aggregation: AggregateFnV2, a: Any, b: Any) -> Any:
    return aggregation.merge(a, b)


class _KeepSelected:
    """Keeps the rows whose (source, position) is selected."""

    def __init__(self, positions: Mapping[str, np.ndarray], num_threads: int) -> None:
        del num_threads
        self.positions = positions

    def __call__(self, batch: pa.Table) -> pa.Table:
        source = _column(batch, SOURCE).combine_chunks().dictionary_encode()
        position = np.asarray(pc.fill_null(_column(batch, POSITION), -1).combine_chunks(), dtype=np.int64)
        codes = np.asarray(source.indices.fill_null(-1))
        keep = np.zeros(batch.num_rows, dtype=bool)
        for code, name in enumerate(source.dictionary.to_pylist()):
            rows = codes == code
            keep[rows] = np.isin(position[rows], self.positions.get(name, ()))
        return batch.filter(pa.array(keep))


def _manifest(
    dsir: DSIR,
    tally: dict[str, dict[str, int]],
    positions: Mapping[str, np.ndarray],
    quotas: list[int],
    cutoffs: list[Cutoff],
    method: str,
    seed: int,
    exact: bool,
    normalize: bool,
) -> dict[str, Any]:
    sources: list[dict[str, Any]] = []
    for name, statuses in sorted(tally.items()):
        eligible, too_short = statuses.get(_ELIGIBLE, 0), statuses.get(_TOO_SHORT, 0)
        selected = len(positions.get(name, ()))
        skipped = {k: v for k, v in sorted(statuses.items()) if k not in (_ELIGIBLE, _TOO_SHORT)}
        sources.append(
            {
                "name": name,
                "records": sum(statuses.values()),
                "documents": eligible + too_short,
                "selected": selected,
                "not_selected": eligible - selected,
                "too_short": too_short,
                "skipped": sum(skipped.values()),
                "skipped_by_reason": skipped,
            }
        )
    skipped_total: dict[str, int] = {}
    for source in sources:
        for reason, n in source["skipped_by_reason"].items():
            skipped_total[reason] = skipped_total.get(reason, 0) + n
    return {
        "tokensieve": _core.__version__,
        "method": "dsir",
        "engine": f"ray {ray.__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "feature_space": dsir.feature_space,
        "unit": "document",
        "config": {
            "min_example_length": dsir.min_example_length,
            "target_laplace_smoothing": dsir.target_laplace_smoothing,
            "target_proportions": dsir.target_proportions.tolist(),
        },
        "selection": {
            "method": method,
            "seed": seed,
            "k": sum(quotas),
            "quotas": quotas,
            "exact": exact,
            "normalize": normalize,
            "cutoffs": [vars(c) for c in cutoffs],
            "documents_selected": sum(len(p) for p in positions.values()),
        },
        "counts": {
            key: sum(source[key] for source in sources)
            for key in ("records", "documents", "selected", "not_selected", "too_short")
        }
        | {"skipped": skipped_total},
        "sources": sources,
    }


def _require_columns(ds: ray.data.Dataset, names: list[str]) -> None:
    """Raises for a missing column now if the schema is known without running anything (else
    the workers raise, wrapped in Ray's exception)."""
    columns = ds.columns(fetch_if_missing=False)
    missing = [name for name in names if columns is not None and name not in columns]
    if missing:
        raise InvalidArgumentError(f"the dataset has no column {missing} (its columns: {columns})")


def _column(batch: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in batch.column_names:
        raise InvalidArgumentError(f"the dataset has no {name!r} column (its columns: {batch.column_names})")
    return batch.column(name)


def _to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()
