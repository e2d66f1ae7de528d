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
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from tokensieve import _core

__all__ = [
    "SKIP_REASONS",
    "Files",
    "OnError",
    "ReadReport",
    "SkippedRecord",
    "SourceReport",
    "corpus_files",
    "file_sha256",
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


def is_file_source(source: object) -> bool:
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


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
