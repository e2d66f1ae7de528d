"""Typed errors of tokensieve.

Every error raised by the package is a :class:`TokensieveError`. Where a builtin fits, the class
also derives from it, so ``except ValueError`` or ``except FileNotFoundError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "BadRecordError",
    "CorpusFormatError",
    "CorpusNotFoundError",
    "CorpusReadError",
    "FeatureSpaceMismatchError",
    "InvalidArgumentError",
    "MissingColumnError",
    "MissingDependencyError",
    "ModelFormatError",
    "NaNScoreError",
    "TargetOutOfRangeError",
    "TokensieveError",
]


class TokensieveError(Exception):
    """Base class of every tokensieve error."""


class InvalidArgumentError(TokensieveError, ValueError):
    """An argument is outside its accepted range or vocabulary."""


class MissingDependencyError(TokensieveError, ImportError):
    """An optional dependency the call needs is not installed; the message names the package
    and the extra that brings it (e.g. ``pip install tokensieve[scoring]``)."""


class TargetOutOfRangeError(InvalidArgumentError):
    """A target token id is outside ``[0, V)`` and is not the ``ignore_index``."""


class FeatureSpaceMismatchError(InvalidArgumentError):
    """A saved estimator was loaded with feature-space arguments (n-gram order, buckets,
    tokenizer, hash, lowercasing) other than those it was fitted with; the message names each."""


class MissingColumnError(InvalidArgumentError):
    """A table of scores lacks a column a method reads. ``column`` names it; the message also
    names the file (if any) and the columns that are there."""

    def __init__(self, message: str, column: str = "") -> None:
        super().__init__(message)
        self.column = column


class NaNScoreError(InvalidArgumentError):
    """Scores hold NaN (or null) and ``nan_policy="raise"`` was asked for. ``count`` is the number
    of such rows; the message names the first few."""

    def __init__(self, message: str, count: int = 0) -> None:
        super().__init__(message)
        self.count = count


class BadRecordError(TokensieveError, ValueError):
    """A record could not be read as a document and ``on_error="raise"`` was asked for.

    Attributes: ``path`` (file, or ``<list>`` / ``<arrow>`` for in-memory input), ``line``
    (1-based record number), ``reason`` (one of :data:`tokensieve.io.SKIP_REASONS`), ``detail``.
    """

    path: str
    line: int
    reason: str
    detail: str


class CorpusFormatError(TokensieveError, ValueError):
    """A file is not in a readable format (bad Parquet file, no such column). ``path`` names it."""

    path: str


class CorpusReadError(TokensieveError, OSError):
    """Reading or decompressing a file failed (permissions, truncated stream). ``path`` names it."""

    path: str


class CorpusNotFoundError(CorpusReadError, FileNotFoundError):
    """An input file does not exist. ``path`` names it."""


class ModelFormatError(TokensieveError, ValueError):
    """A model file is truncated, oversized or inconsistent (the message names the section and
    the offset), or the model cannot predict (its weights produce NaN), or it changed on disk
    after it was read. ``path`` names it."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path
