"""Output directories of the commands and methods that write selections (``DSIR.write``,
``tokensieve classify``, ``tokensieve select``): atomic file writes, checksums, and the parts of
``manifest.json`` that every writer shares.

Every file is written under ``<name>.tmp``, flushed to disk and renamed over ``<name>``, so a killed
run leaves either the old file or the new one, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from tokensieve import _core
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.io import PathLike, ReadReport

__all__ = [
    "atomic_file",
    "directory_sha256",
    "file_sha256",
    "files_sha256_in_background",
    "manifest_header",
    "prepare_output_dir",
    "remove_stale_shards",
    "shard_entries",
    "skipped_lines",
    "skipped_record_entries",
    "write_atomic",
    "write_json",
    "write_npy",
]


@contextmanager
def atomic_file(path: PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents to: it is written as ``<path>.tmp`` and
    renamed over ``path`` once the block ends without an exception (the temporary file is
    removed if it raises)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def write_json(path: PathLike, value: Any) -> None:
    """Writes ``value`` as indented JSON to ``path`` atomically."""
    write_atomic(path, json.dumps(value, indent=2).encode())


def write_npy(path: PathLike, array: npt.ArrayLike) -> None:
    """Writes ``array`` as ``.npy`` (no pickled objects) to ``path`` atomically."""
    with atomic_file(path) as f:
        np.save(f, array, allow_pickle=False)


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex; the file is read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256_in_background(paths: Sequence[PathLike], threads: int | None) -> Callable[[], list[str]]:
    """Starts hashing ``paths`` (:func:`file_sha256`) on up to ``threads`` threads (default: the
    CPU count) and returns a function that waits for the digests and returns them in order. A
    writer starts this before its compiled write pass, which releases the GIL as hashlib does, so
    that checksumming the inputs overlaps the write instead of following it."""
    workers = max(1, min(len(paths), threads or os.cpu_count() or 1))
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokensieve-sha256")
    futures = [executor.submit(file_sha256, path) for path in paths]
    executor.shutdown(wait=False)

    def digests() -> list[str]:
        return [future.result() for future in futures]

    return digests


def directory_sha256(path: PathLike) -> str:
    """The SHA-256 of a directory's top-level files (e.g. a saved Hugging Face model): of each
    file's name and SHA-256, in name order. Subdirectories are not read."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).iterdir() if p.is_file()):
        digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def prepare_output_dir(out: PathLike, ours: Callable[[str], bool]) -> Path:
    """Creates the output directory ``out`` if needed and returns it. A directory holding a file
    whose name ``ours`` does not accept raises :class:`~tokensieve.exceptions.InvalidArgumentError`
    naming up to five of them: a writer never mixes its output with files it did not write."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    strangers = [p.name for p in out_dir.iterdir() if not ours(p.name)]
    if strangers:
        raise InvalidArgumentError(f"{out_dir} holds files tokensieve did not write: {strangers[:5]}")
    return out_dir


def remove_stale_shards(out_dir: Path, written: Iterable[PathLike]) -> None:
    """Deletes the ``part-*`` files of ``out_dir`` that this run did not write (an earlier run
    may have had more input files)."""
    keep = {Path(p).name for p in written}
    for stale in out_dir.glob("part-*"):
        if stale.name not in keep:
            stale.unlink()


def skipped_lines(report: ReadReport) -> list[list[int]] | None:
    """Per source, the ascending lines of its skipped records other than blank lines (what the
    shard writer must skip to keep its rows in step with the scores); ``None`` when the report
    lists only the first of them, and the writer must find them again itself."""
    unlisted = report.skipped_total - report.skipped.get("blank_line", 0) - len(report.skipped_records)
    if unlisted:
        return None
    by_name: dict[str, set[int]] = {}
    for record in report.skipped_records:
        by_name.setdefault(record.source, set()).add(record.line)
    return [sorted(by_name.get(source.name, ())) for source in report.sources]


def manifest_header(method: str) -> dict[str, Any]:
    """The first entries of a manifest: the tokensieve version, ``method`` and the UTC time."""
    return {
        "tokensieve": _core.__version__,
        "method": method,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def skipped_record_entries(report: ReadReport) -> list[dict[str, Any]]:
    """The manifest's ``skipped_records``: source, line, reason and detail of each listed one."""
    return [
        {"source": r.source, "line": r.line, "reason": r.reason, "detail": r.detail}
        for r in report.skipped_records
    ]


def shard_entries(shards: Iterable[tuple[int, PathLike, int]]) -> list[dict[str, Any]]:
    """The manifest's ``shards``: per written shard ``(source index, path, documents)``, its
    source index, file name and document count."""
    return [{"source": i, "path": Path(p).name, "documents": n} for i, p, n in shards]
