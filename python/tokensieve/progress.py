"""One-line progress bars on stderr for passes over corpus files.

The Rust readers call a bar with ``(bytes_read, documents)`` after each batch of documents;
``bytes_read`` counts the files' bytes as stored (compressed or not), so the fraction done is
exact for any format.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar:
    """Redraws ``label  done / total MB  pct  documents  MB/s`` at most every ``interval``
    seconds, and once more on :meth:`close`."""

    def __init__(self, label: str, total_bytes: int, *, stream: TextIO | None = None, interval: float = 0.2):
        self.label = label
        self.total_bytes = total_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.bytes_read = 0
        self.documents = 0
        self._start = time.perf_counter()
        self._last_draw = float("-inf")

    def __call__(self, bytes_read: int, documents: int) -> None:
        self.bytes_read, self.documents = bytes_read, documents
        now = time.perf_counter()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(end="")

    def close(self) -> None:
        """Draws the final state and ends the line."""
        self._draw(end="\n")

    def _draw(self, end: str) -> None:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        done_mb, total_mb = self.bytes_read / 1e6, self.total_bytes / 1e6
        percent = f"{100 * self.bytes_read / self.total_bytes:5.1f}%" if self.total_bytes else ""
        line = (
            f"{self.label:<14} {done_mb:9.1f} / {total_mb:.1f} MB {percent}  "
            f"{self.documents:>12,} docs  {done_mb / elapsed:8.1f} MB/s"
        )
        self.stream.write("\r" + line + end)
        self.stream.flush()


@contextmanager
def progress_bar(label: str, paths: Sequence[str], enabled: bool) -> Iterator[ProgressBar | None]:
    """A :class:`ProgressBar` over the files ``paths`` (closed on exit), or ``None`` when not
    ``enabled``."""
    if not enabled:
        yield None
        return
    bar = ProgressBar(label, sum(os.path.getsize(p) for p in paths if os.path.isfile(p)))
    try:
        yield bar
    finally:
        bar.close()
