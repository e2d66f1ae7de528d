"""Generic selection rules over one per-document score: the k best (or worst), and thresholds.

NaN policy (every selection in :mod:`tokensieve.methods`): a NaN or null score raises
:class:`~tokensieve.exceptions.NaNScoreError` by default (``nan_policy="raise"``); with
``nan_policy="reject"`` such a document is never selected, is not counted in the pool a fraction
or ``k`` refers to, and is reported apart. ``inf`` and ``-inf`` are ordinary scores.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._common import NanPolicy, Scores, check_count, nan_rows, score_vector

__all__ = ["threshold_mask", "top_k"]


def top_k(
    scores: Scores,
    k: int,
    *,
    largest: bool = True,
    column: str = "mean_nll",
    nan_policy: NanPolicy = "raise",
) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` highest (``largest=True``) or lowest scores, best first.

    Ties go to the earlier document (a stable sort). ``scores`` is a 1-D array or a
    ``pyarrow.Table`` read at ``column``.

    Raises:
        InvalidArgumentError: ``k`` negative or larger than the number of non-NaN scores.
        NaNScoreError: NaN scores under ``nan_policy="raise"``.
    """
    values = score_vector(scores, column, "scores")
    eligible = np.flatnonzero(~nan_rows(values, nan_policy))
    k = check_count(k, eligible.size)
    key = -values[eligible] if largest else values[eligible]
    return eligible[np.argsort(key, kind="stable")[:k]]


def threshold_mask(
    scores: Scores,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    column: str = "mean_nll",
    nan_policy: NanPolicy = "raise",
) -> npt.NDArray[np.bool_]:
    """``at_least <= score <= at_most`` per document (either bound may be omitted, not both).

    A NaN score is never inside (under ``nan_policy="reject"``).
    """
    if at_least is None and at_most is None:
        raise InvalidArgumentError("give at_least, at_most or both")
    values = score_vector(scores, column, "scores")
    keep = ~nan_rows(values, nan_policy)
    if at_least is not None:
        keep &= values >= at_least
    if at_most is not None:
        keep &= values <= at_most
    return keep
