"""Corpus inputs and the accounting of every record read.

A *source* is one of:

* in memory: a list (or any iterable) of ``str``, or an Arrow string array / chunked array
  (anything with ``__arrow_c_array__`` or ``__arrow_c_stream__``, read without copying);
* on disk: a path, a directory (its corpus files, sorted by name), a glob pattern, or a list of
  these. Files are JSON Lines (plain, gzip or zstd) or Parquet, recognised by their first bytes.

Every record (a line, a row, a list item) becomes a document or is skipped with a reason, and
the :class:`ReadReport` accounts for all of them. Blank lines are always skipped and counted;
other bad records are skipped and counted (``on_error="skip"``) or raise
:class:`~tokensieve.exceptions.BadRecordError` naming ``file:line`` (``on_error="raise"``).

The Rust engine reads sources for the passes that stay in Rust (:func:`scan`, DSIR, fastText)
and hands the documents of files to Python as Arrow batches (:class:`ArrowBatches`).
:class:`DocumentReader` streams the documents of the same sources to Python code (the LM
scorer), with their ids, under the same policy: the same formats, skip reasons, record numbers
and report.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, TypeGuard, Union, cast

import numpy as np

from tokensieve import _core
from tokensieve.exceptions import (
    BadRecordError,
    CorpusFormatError,
    CorpusNotFoundError,
    CorpusReadError,
    InvalidArgumentError,
    MissingDependencyError,
)

__all__ = [
    "SKIP_REASONS",
    "ArrowBatches",
    "DocumentReader",
    "Files",
    "OnError",
    "ReadReport",
    "Record",
    "SkippedRecord",
    "SourceReport",
    "corpus_files",
    "is_file_source",
    "scan",
]

logger = logging.getLogger("tokensieve")

OnError = Literal["skip", "raise"]
PathLike = Union[str, "os.PathLike[str]"]

#: Why a record can be skipped.
SKIP_REASONS = (
    "blank_line",
    "invalid_utf8",
    "malformed_json",
    "lone_surrogate",
    "missing_field",
    "not_a_string",
)

CORPUS_SUFFIXES = (".jsonl", ".json", ".ndjson", ".gz", ".zst", ".zstd", ".parquet", ".pq")


@dataclass(frozen=True)
class SourceReport:
    """Counts for one input: a file, or ``<list>`` / ``<arrow>`` for in-memory input."""

    name: str
    records: int
    documents: int
    text_bytes: int
    bytes: int
    #: Pieces the documents were cut into (``chunk_words``); 0 when they were not.
    chunks: int = 0


@dataclass(frozen=True)
class SkippedRecord:
    """A skipped record: its source name, 1-based record number, reason and detail."""

    source: str
    line: int
    reason: str
    detail: str


@dataclass(frozen=True)
class ReadReport:
    """What a read saw. ``records == documents + skipped_total`` always holds.

    ``skipped_records`` lists the first 10,000 skipped records other than blank lines; the
    counts in ``skipped`` are always exact.
    """

    sources: tuple[SourceReport, ...]
    skipped: Mapping[str, int]
    skipped_records: tuple[SkippedRecord, ...] = field(default=())

    @property
    def records(self) -> int:
        """Records seen: lines, rows or items."""
        return sum(s.records for s in self.sources)

    @property
    def documents(self) -> int:
        """Records that became documents."""
        return sum(s.documents for s in self.sources)

    @property
    def text_bytes(self) -> int:
        """UTF-8 bytes of the documents' texts."""
        return sum(s.text_bytes for s in self.sources)

    @property
    def skipped_total(self) -> int:
        """Records skipped, blank lines included."""
        return sum(self.skipped.values())

    @classmethod
    def _from_core(cls, raw: Mapping[str, Any]) -> ReadReport:
        sources = tuple(SourceReport(**s) for s in raw["sources"])
        records = tuple(
            SkippedRecord(sources[i].name, line, reason, detail)
            for i, line, reason, detail in raw["skipped_records"]
        )
        return cls(sources, dict(raw["skipped"]), records)

    @classmethod
    def merge(cls, reports: Iterable[ReadReport]) -> ReadReport:
        """One report covering several reads."""
        reports = list(reports)
        skipped: dict[str, int] = {}
        for r in reports:
            for reason, n in r.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + n
        return cls(
            tuple(s for r in reports for s in r.sources),
            skipped,
            tuple(x for r in reports for x in r.skipped_records),
        )

    def summary(self) -> str:
        """One line: records, documents, and skips per reason."""
        text = f"{self.records:,} records, {self.documents:,} documents"
        if self.skipped:
            reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f", skipped: {reasons}"
        return text

    def log_skips(self) -> None:
        """Logs a warning on the ``tokensieve`` logger if any record other than a blank line
        was skipped."""
        bad = {k: v for k, v in self.skipped.items() if k != "blank_line"}
        if bad:
            first = self.skipped_records[0] if self.skipped_records else None
            where = f"; first at {first.source}:{first.line} ({first.detail})" if first else ""
            logger.warning("skipped %s bad records: %s%s", sum(bad.values()), bad, where)


@dataclass(frozen=True)
class Files:
    """Names corpus files explicitly: ``Files(["a.jsonl", "dir/", "shards/*.parquet"])``.

    A list of ``str`` passed as a source is read as texts; wrap paths in ``Files`` (or pass
    ``pathlib.Path`` objects, or a single path) to read files.
    """

    paths: tuple[str, ...]

    def __init__(self, paths: PathLike | Iterable[PathLike]) -> None:
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        object.__setattr__(self, "paths", tuple(os.fspath(p) for p in items))


def is_file_source(source: object) -> TypeGuard[PathLike | Sequence[PathLike] | Files]:
    """Whether ``source`` names files: a ``str`` or ``os.PathLike`` path, a :class:`Files`, or
    a non-empty list of ``os.PathLike``. A list of ``str`` is texts."""
    if isinstance(source, (str, os.PathLike, Files)):
        return True
    return (
        isinstance(source, (list, tuple))
        and len(source) > 0
        and all(isinstance(x, os.PathLike) for x in source)
    )


def corpus_files(source: PathLike | Sequence[PathLike] | Files) -> list[str]:
    """Expands a path, directory, glob pattern or list of them into a list of files.

    A directory contributes its files with a corpus suffix (``.jsonl``, ``.json``, ``.ndjson``,
    ``.gz``, ``.zst``, ``.zstd``, ``.parquet``, ``.pq``) sorted by name; a pattern its matches
    sorted by name. A path that does not exist is kept, so that reading it raises
    :class:`~tokensieve.exceptions.CorpusNotFoundError`.
    """
    if isinstance(source, Files):
        items: list[PathLike] = list(source.paths)
    elif isinstance(source, (str, os.PathLike)):
        items = [source]
    else:
        items = list(source)
    files: list[str] = []
    for item in items:
        path = os.fspath(item)
        if os.path.isdir(path):
            entries = sorted(Path(path).iterdir())
            files.extend(str(p) for p in entries if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))
        elif glob.has_magic(path) and not os.path.exists(path):
            files.extend(sorted(glob.glob(path)))
        else:
            files.append(path)
    return files


def scan(
    source: PathLike | Sequence[PathLike] | Files,
    *,
    text_field: str = "text",
    on_error: OnError = "skip",
    num_threads: int | None = None,
) -> ReadReport:
    """Reads corpus files and reports what they hold, keeping no text."""
    raw = _core.scan_files(
        corpus_files(source), text_field=text_field, on_error=on_error, num_threads=num_threads
    )
    return ReadReport._from_core(raw)


class ArrowBatches:
    """The documents of corpus files as Arrow record batches, parsed by the compiled readers
    (the documents, skips and report of :func:`scan` and the DSIR and fastText passes) on a
    thread that reads ahead while the caller works, in file order then record order.

    Each :class:`pyarrow.RecordBatch` holds at most ``batch_rows`` documents of one file, with
    the columns ``text`` (``large_string``), ``source`` (``int32``: the file's index in
    :attr:`paths`) and ``line`` (``uint64``: the record's 1-based line, or row of a Parquet
    file). The batches can be iterated once; :attr:`report` then accounts for every record. A
    read error (a missing, unreadable or corrupt file; a bad record under ``on_error="raise"``)
    is raised by the iteration, after the batches before it.
    """

    def __init__(
        self,
        source: PathLike | Sequence[PathLike] | Files,
        *,
        text_field: str = "text",
        on_error: OnError = "skip",
        batch_rows: int = 4096,
        num_threads: int | None = None,
    ) -> None:
        self.paths = corpus_files(source)
        self._reader = _core.read_batches(
            self.paths,
            text_field=text_field,
            on_error=on_error,
            num_threads=num_threads,
            batch_rows=batch_rows,
        )
        self._iterated = False
        self._report: ReadReport | None = None

    @property
    def report(self) -> ReadReport:
        """What the read found, once the batches have run out."""
        if self._report is None:
            raise InvalidArgumentError("the report is known once every batch has been read")
        return self._report

    def __iter__(self) -> Iterator[Any]:
        if self._iterated:
            raise InvalidArgumentError("ArrowBatches reads its files once: make a new one to read them again")
        self._iterated = True
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        pa, _ = _pyarrow()
        for source, lines, capsules in self._reader:
            texts = pa.array(_ArrowCapsules(capsules))
            sources = pa.array(np.full(len(texts), source, dtype=np.int32))
            columns = [texts, sources, pa.array(lines)]
            yield pa.RecordBatch.from_arrays(columns, names=["text", "source", "line"])
        self._report = ReadReport._from_core(self._reader.report())


class _ArrowCapsules:
    """An array exported by the compiled core: the Arrow PyCapsule interface's pair."""

    def __init__(self, capsules: tuple[object, object]) -> None:
        self._capsules = capsules

    def __arrow_c_array__(self, requested_schema: object = None) -> tuple[object, object]:
        return self._capsules


# ---------------------------------------------------------------------------------------------
# Streaming documents to Python


#: Skipped records a report lists with their location (the counts stay exact), as in Rust.
MAX_SKIPPED_LISTED = 10_000
#: Parquet rows decoded at a time.
PARQUET_BATCH_ROWS = 8192
#: JSON lines judged by one compiled call.
JSONL_BLOCK_LINES = 1024


@dataclass(frozen=True)
class Record:
    """A document read by :class:`DocumentReader`.

    ``source`` indexes ``reader.report.sources``; ``line`` is the 1-based record number in it
    (as in reports and :class:`~tokensieve.exceptions.BadRecordError`); ``id`` is the record's
    id field as ``str``, or where it has none ``"<file>:<line>"`` for files (the path relative
    to the directory that holds all the input files) and the 0-based position for items in
    memory.
    """

    source: int
    line: int
    text: str
    id: str


class _Skip(NamedTuple):
    """Why a record is not a document: a reason of :data:`SKIP_REASONS` and a detail."""

    reason: str
    detail: str


@dataclass
class _SourceCounts:
    name: str
    bytes: int
    records: int = 0
    documents: int = 0
    text_bytes: int = 0


class DocumentReader:
    """Streams the documents of a source as lists of :class:`Record`, in source order, and
    accounts for every record in :attr:`report` as the Rust readers do: the same formats
    (JSON Lines plain, gzip or zstd, and Parquet, told apart by their first bytes; texts,
    mappings and Arrow arrays or tables in memory), skip reasons, record numbers and errors.
    JSON lines are judged by the compiled parser itself (``_core.parse_json_lines``, a block of
    lines per call), so their verdicts and details are the readers' to the letter. Memory stays
    bounded: a block of lines, or a batch of Parquet rows, at a time.

    Args:
        source: any source of this module; in memory also mappings (``{"text": ..., "id": ...}``),
            a one-shot iterator, or an Arrow table.
        text_field: the JSON key, mapping key or column of the text.
        id_field: the key or column of the record id: a string, or an integer (its decimal
            digits); a record without one, or with another kind of value, is named by its
            location (:class:`Record`). ``None``: ids from locations only.
        on_error: ``"skip"`` (count bad records) or ``"raise"``
            (:class:`~tokensieve.exceptions.BadRecordError` at the first one, blank lines aside).
        batch_records: documents per list handed on.

    Raises (while iterating): ``BadRecordError``, ``CorpusNotFoundError``, ``CorpusReadError``
    (unreadable, truncated or corrupt compressed file), ``CorpusFormatError`` (bad Parquet file,
    no text column, a text column that holds neither strings nor bytes).
    """

    def __init__(
        self,
        source: Any,
        *,
        text_field: str = "text",
        id_field: str | None = "id",
        on_error: OnError = "skip",
        batch_records: int = 1024,
    ) -> None:
        if on_error not in ("skip", "raise"):
            raise InvalidArgumentError(f'on_error must be "skip" or "raise", got {on_error!r}')
        if batch_records < 1:
            raise InvalidArgumentError(f"batch_records must be >= 1, got {batch_records}")
        self.text_field, self.id_field, self.on_error = text_field, id_field, on_error
        self.batch_records = batch_records
        self._source = source
        self.paths: list[str] | None = corpus_files(source) if is_file_source(source) else None
        self._counts: list[_SourceCounts] = []
        self._skipped: dict[str, int] = {}
        self._listed: list[SkippedRecord] = []
        self._finished_bytes = 0
        self._position = lambda: 0  # bytes of the current file read so far
        self._started = False

    @property
    def total_bytes(self) -> int:
        """The size of the input files as stored (0 in memory)."""
        return sum(os.path.getsize(p) for p in self.paths or () if os.path.isfile(p))

    @property
    def bytes_read(self) -> int:
        """Bytes of the input files read so far, as stored (compressed or not); for Parquet in
        proportion to the rows decoded."""
        return self._finished_bytes + self._position()

    @property
    def report(self) -> ReadReport:
        """What has been read so far (all of the source once iteration ends)."""
        sources = tuple(
            SourceReport(c.name, c.records, c.documents, c.text_bytes, c.bytes) for c in self._counts
        )
        return ReadReport(sources, dict(self._skipped), tuple(self._listed))

    def __iter__(self) -> Iterator[list[Record]]:
        if self._started:
            raise InvalidArgumentError("a DocumentReader reads its source once; make a new one")
        self._started = True
        batch: list[Record] = []
        for record in self._file_records() if self.paths is not None else self._memory_records():
            batch.append(record)
            if len(batch) == self.batch_records:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- accounting --------------------------------------------------------------------------

    def _account(self, source: int, line: int, parsed: str | _Skip, record_id: str) -> Record | None:
        counts = self._counts[source]
        if isinstance(parsed, str):
            try:
                size = len(parsed.encode("utf-8"))
            except UnicodeEncodeError:
                parsed = _Skip("lone_surrogate", "the text holds a lone surrogate")
        if isinstance(parsed, _Skip):
            if self.on_error == "raise" and parsed.reason != "blank_line":
                err = BadRecordError(f"{counts.name}:{line}: {parsed.reason}: {parsed.detail}")
                err.path, err.line, err.reason, err.detail = counts.name, line, parsed.reason, parsed.detail
                raise err
            counts.records += 1
            self._skipped[parsed.reason] = self._skipped.get(parsed.reason, 0) + 1
            if parsed.reason != "blank_line" and len(self._listed) < MAX_SKIPPED_LISTED:
                self._listed.append(SkippedRecord(counts.name, line, parsed.reason, parsed.detail))
            return None
        counts.records += 1
        counts.documents += 1
        counts.text_bytes += size
        return Record(source, line, parsed, record_id)

    # -- files -------------------------------------------------------------------------------

    def _file_records(self) -> Iterator[Record]:
        assert self.paths is not None
        for path, name in zip(self.paths, _relative_names(self.paths), strict=True):
            try:
                raw = open(path, "rb")  # noqa: SIM115 (closed below, after the generator is done)
            except OSError as e:
                cls = CorpusNotFoundError if isinstance(e, FileNotFoundError) else CorpusReadError
                raise _located(cls, path, e) from e
            with raw:
                size = os.fstat(raw.fileno()).st_size
                source = len(self._counts)
                self._counts.append(_SourceCounts(path, size))
                magic = raw.read(4)
                raw.seek(0)
                if magic == b"PAR1":
                    yield from self._parquet_records(path, size, source, name)
                else:
                    self._position = raw.tell
                    yield from self._jsonl_records(raw, magic, path, source, name)
            self._finished_bytes += size
            self._position = lambda: 0

    def _jsonl_records(
        self, raw: IO[bytes], magic: bytes, path: str, source: int, name: str
    ) -> Iterator[Record]:
        stream: IO[bytes] = raw
        if magic[:2] == b"\x1f\x8b":
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        elif magic == b"\x28\xb5\x2f\xfd":
            stream = io.BufferedReader(_ZstdReader(raw), buffer_size=1 << 16)
        number = 0
        try:
            for first, lines in _line_blocks(stream):
                parsed = _core.parse_json_lines(lines, text_field=self.text_field, id_field=self.id_field)
                for number, (text, record_id, skip) in enumerate(parsed, first):
                    verdict = text if text is not None else _Skip(*cast(tuple[str, str], skip))
                    record = self._account(source, number, verdict, record_id or f"{name}:{number}")
                    if record is not None:
                        yield record
        except (OSError, EOFError, _zstd_error()) as e:
            raise _located(CorpusReadError, path, f"{e} (after line {number})") from e

    def _parquet_records(self, path: str, size: int, source: int, name: str) -> Iterator[Record]:
        pa, pq = _pyarrow()
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise _located(CorpusFormatError, path, e) from e
        names = parquet.schema_arrow.names
        if self.text_field not in names:
            raise _located(CorpusFormatError, path, f"no column named {json.dumps(self.text_field)}")
        _check_text_type(parquet.schema_arrow.field(self.text_field).type, path)
        with_id = self.id_field is not None and self.id_field in names and self.id_field != self.text_field
        columns = [self.text_field, self.id_field] if with_id else [self.text_field]
        rows = max(parquet.metadata.num_rows, 1)
        line = 1
        self._position = lambda: size * (line - 1) // rows
        try:
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)
            for batch in batches:
                texts = batch.column(0).to_pylist()
                ids = batch.column(1).to_pylist() if with_id else [None] * len(texts)
                for text, record_id in zip(texts, ids, strict=True):
                    parsed = _value_text(text, "null")
                    record = self._account(source, line, parsed, _id_text(record_id) or f"{name}:{line}")
                    line += 1
                    if record is not None:
                        yield record
        except (pa.ArrowException, OSError) as e:
            raise _located(CorpusFormatError, path, e) from e

    # -- memory ------------------------------------------------------------------------------

    def _memory_records(self) -> Iterator[Record]:
        items = _arrow_items(self._source, self.text_field, self.id_field)
        self._counts.append(_SourceCounts("<list>" if items is None else "<arrow>", 0))
        if items is None:
            try:
                items = iter(self._source)
            except TypeError:
                raise InvalidArgumentError(
                    f"expected texts, mappings, Arrow data or paths, got {type(self._source).__name__}"
                ) from None
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                parsed, record_id = _field_text(item, self.text_field), _mapping_id(item, self.id_field)
            elif isinstance(item, tuple):  # (text, id) pairs from Arrow tables
                parsed, record_id = _value_text(item[0], "null"), _id_text(item[1])
            else:
                parsed, record_id = _value_text(item, "None"), None
            record = self._account(0, index + 1, parsed, record_id or str(index))
            if record is not None:
                yield record


def _line_blocks(stream: IO[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of ``stream`` without their line breaks (``\\n``, ``\\r\\n``), in blocks of
    :data:`JSONL_BLOCK_LINES`, each with the 1-based number of its first line. A read error is
    raised after the lines read before it."""
    block: list[bytes] = []
    first = 1
    try:
        for line in stream:
            block.append(line.removesuffix(b"\n").removesuffix(b"\r"))
            if len(block) == JSONL_BLOCK_LINES:
                yield first, block
                first += len(block)
                block = []
    except Exception:
        if block:
            yield first, block
        raise
    if block:
        yield first, block


def _field_text(record: Mapping[str, Any], field: str) -> str | _Skip:
    quoted = json.dumps(field)
    if field not in record:
        return _Skip("missing_field", f"no {quoted} field")
    value = record[field]
    if value is None:
        return _Skip("missing_field", f"{quoted} is null")
    if not isinstance(value, str):
        return _Skip("not_a_string", f"{quoted} is {_kind(value)}")
    return value


def _value_text(value: Any, null_detail: str) -> str | _Skip:
    """An item of a list, or a cell of a text column (bytes are decoded)."""
    if value is None:
        return _Skip("missing_field", null_detail)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            return _Skip("invalid_utf8", f"invalid UTF-8 at byte {e.start}")
    if not isinstance(value, str):
        return _Skip("not_a_string", f"got {type(value).__name__}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "an array" if isinstance(value, list) else "an object"


def _mapping_id(record: Mapping[str, Any], field: str | None) -> str | None:
    return None if field is None else _id_text(record.get(field))


def _id_text(value: Any) -> str | None:
    """An id field as every reader takes it: a string as it is, an integer as its decimal
    digits; any other value (a float, a boolean, a list) is no id."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _relative_names(paths: Sequence[str]) -> list[str]:
    """Each path relative to the directory that holds all of them (so ids survive moving the
    corpus), or as given when some are not files."""
    if not paths or not all(os.path.isfile(p) for p in paths):
        return list(paths)
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    return [os.path.relpath(os.path.abspath(p), root) for p in paths]


def _located(cls: type[CorpusReadError] | type[CorpusFormatError], path: str, detail: object) -> Exception:
    err = cls(f"{path}: {detail}")
    err.path = path
    return err


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise MissingDependencyError("reading Parquet needs pyarrow: pip install tokensieve[arrow]") from e
    return pa, pq


def _check_text_type(arrow_type: Any, path: str) -> None:
    """Strings or bytes, or a dictionary of them (a categorical column), as the Rust readers take."""
    import pyarrow.types as t

    value_type = arrow_type.value_type if t.is_dictionary(arrow_type) else arrow_type
    if not (
        t.is_string(value_type) or t.is_large_string(value_type) or t.is_string_view(value_type)
    ) and not (t.is_binary(value_type) or t.is_large_binary(value_type) or t.is_binary_view(value_type)):
        detail = f"the text column has type {arrow_type}; expected a string or binary column"
        if path:
            raise _located(CorpusFormatError, path, detail)
        raise InvalidArgumentError(detail)


def _arrow_items(source: Any, text_field: str, id_field: str | None) -> Iterator[Any] | None:
    """The rows of Arrow data in memory: texts of an array, ``(text, id)`` of a table; ``None``
    when ``source`` is not Arrow data."""
    arrow_like = hasattr(source, "__arrow_c_array__") or hasattr(source, "__arrow_c_stream__")
    if not arrow_like:
        return None
    pa, _ = _pyarrow()
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        if text_field not in source.column_names:
            raise InvalidArgumentError(f"the Arrow table has no column {json.dumps(text_field)}")
        _check_text_type(source.schema.field(text_field).type, "")
        ids = source.column(id_field) if id_field is not None and id_field in source.column_names else None
        texts = source.column(text_field)
        return ((texts[i].as_py(), None if ids is None else ids[i].as_py()) for i in range(len(texts)))
    array = pa.chunked_array(source) if hasattr(source, "__arrow_c_stream__") else pa.array(source)
    _check_text_type(array.type, "")
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    return (value for chunk in chunks for value in chunk.to_pylist())


def _zstd_error() -> type[Exception]:
    try:
        import zstandard
    except ImportError:
        return OSError
    return zstandard.ZstdError


class _ZstdReader(io.RawIOBase):
    """Decompresses a stream of concatenated zstd frames, as the Rust reader does; a stream that
    ends inside a frame raises ``EOFError`` (zstandard's own stream reader stops silently)."""

    def __init__(self, raw: IO[bytes]) -> None:
        try:
            import zstandard
        except ImportError as e:
            raise MissingDependencyError("reading .zst files needs zstandard: pip install zstandard") from e
        self._raw = raw
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._in_frame = False
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            compressed = self._raw.read(1 << 20)
            if not compressed:
                if self._in_frame:
                    raise EOFError("the zstd stream ends inside a frame")
                return 0
            self._out = memoryview(self._decompress(compressed))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, compressed: bytes) -> bytes:
        parts = []
        while compressed:
            self._in_frame = True
            parts.append(self._frame.decompress(compressed))
            if not self._frame.eof:
                break
            self._in_frame = False
            compressed = self._frame.unused_data
            self._frame = self._context.decompressobj()
        return b"".join(parts)
