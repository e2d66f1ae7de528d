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
    "InvalidArgumentError",
    "MissingDependencyError",
    "ModelFormatError",
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
    the offset), or the model cannot predict (its weights produce NaN). ``path`` names it."""

    path: str
