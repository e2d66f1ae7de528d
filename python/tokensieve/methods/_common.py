"""Shared input handling of the per-document methods: score columns of tables or arrays, the NaN
policy, and tables aligned on their document ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError, MissingColumnError, NaNScoreError

#: What a selection does with a NaN (or null) score: ``"raise"`` a :class:`NaNScoreError`, or
#: ``"reject"`` the row (it is never selected and is counted apart).
NanPolicy = Literal["raise", "reject"]

#: Per-document scores: a ``pyarrow.Table`` (read at a named column) or anything numpy reads as a
#: 1-D float array.
Scores = Any

FloatArray = npt.NDArray[np.float64]


def is_table(data: object) -> bool:
    """Whether ``data`` is a ``pyarrow.Table`` (or quacks like one), without importing pyarrow."""
    return hasattr(data, "column_names") and hasattr(data, "column")


def table_column(table: Any, column: str, *, source: str = "the table") -> FloatArray:
    """A column of a ``pyarrow.Table`` as float64, nulls as NaN."""
    if column not in table.column_names:
        raise MissingColumnError(
            f"{source} has no column {column!r}; its columns are {list(table.column_names)}", column
        )
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table.column(column)
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InvalidArgumentError(f"column {column!r} of {source} holds {values.type}, not numbers")
    filled = pc.fill_null(values.cast(pa.float64()), float("nan"))
    return np.asarray(filled.to_numpy(), dtype=np.float64)


def score_vector(data: Scores, column: str, name: str) -> FloatArray:
    """``data[column]`` of a table, or ``data`` itself as a 1-D float64 array named ``name``."""
    if is_table(data):
        return table_column(data, column)
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 1:
        raise InvalidArgumentError(f"{name} must be 1-D, got shape {values.shape}")
    return values


def table_ids(table: Any, id_column: str, *, source: str = "the table") -> list[str]:
    """The document ids of a table, which must be unique and not null."""
    if id_column not in table.column_names:
        raise MissingColumnError(
            f"{source} has no id column {id_column!r}; its columns are {list(table.column_names)}", id_column
        )
    ids = table.column(id_column).to_pylist()
    if None in ids:
        raise InvalidArgumentError(f"{source}: the {id_column!r} column holds nulls (row {ids.index(None)})")
    if len(set(ids)) != len(ids):
        dup = next(doc for doc, n in Counter(ids).items() if n > 1)
        raise InvalidArgumentError(f"{source}: {id_column!r} {dup!r} occurs more than once")
    return [str(i) for i in ids]


def aligned_matrix(
    tables: Sequence[Any], column: str, id_column: str = "id", sources: Sequence[str] | None = None
) -> tuple[list[str], FloatArray]:
    """``(ids, M)``: ``M[i, d]`` is ``column`` of table ``i`` at the ``d``-th id of the first table.

    Every table must hold the same set of ids (in any order); the first one fixes the order.
    """
    if len(tables) == 0:
        raise InvalidArgumentError("no tables given")
    names = list(sources) if sources is not None else [f"table {i}" for i in range(len(tables))]
    ids = table_ids(tables[0], id_column, source=names[0])
    position = {doc: d for d, doc in enumerate(ids)}
    matrix = np.empty((len(tables), len(ids)), dtype=np.float64)
    for i, (table, source) in enumerate(zip(tables, names, strict=True)):
        theirs = table_ids(table, id_column, source=source)
        values = table_column(table, column, source=source)
        if set(theirs) != position.keys():
            extra = sorted(set(theirs) - position.keys())[:3]
            lacking = sorted(position.keys() - set(theirs))[:3]
            raise InvalidArgumentError(
                f"{source} and {names[0]} score different documents: every table must hold the same "
                f"ids (only in {source}: {extra}; missing from it: {lacking})"
            )
        matrix[i, [position[doc] for doc in theirs]] = values
    return ids, matrix


def nan_rows(scores: FloatArray, nan_policy: NanPolicy, name: str = "scores") -> npt.NDArray[np.bool_]:
    """The NaN rows of ``scores``; raises :class:`NaNScoreError` if there are any and the policy
    is ``"raise"``."""
    if nan_policy not in ("raise", "reject"):
        raise InvalidArgumentError(f'nan_policy must be "raise" or "reject", got {nan_policy!r}')
    nan = np.isnan(scores)
    count = int(nan.sum())
    if count and nan_policy == "raise":
        first = np.flatnonzero(nan)[:5].tolist()
        raise NaNScoreError(
            f"{name} hold {count} NaN value(s) (rows {first}{', ...' if count > 5 else ''}); "
            f'pass nan_policy="reject" to leave those rows out of the selection',
            count,
        )
    return nan


def check_count(k: int, available: int, what: str = "documents") -> int:
    """``k`` as an int, checked to be in ``[0, available]``."""
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise InvalidArgumentError(f"k must be a non-negative integer, got {k!r}")
    if k > available:
        raise InvalidArgumentError(f"k = {k} is larger than the {available} {what} that can be selected")
    return int(k)


def check_fraction(fraction: float, name: str = "fraction") -> float:
    """``fraction`` checked to be in ``(0, 1]``."""
    if not 0.0 < fraction <= 1.0:
        raise InvalidArgumentError(f"{name} must be in (0, 1], got {fraction}")
    return float(fraction)
