"""CoLoR-Filter: Brandfonbrener et al., "CoLoR-Filter: Conditional Loss Reduction Filtering for
Targeted Language Model Pre-training" (NeurIPS 2024, arXiv 2406.10670); reference code
davidbrandfonbrener/color-filter-olmo @7d26c7c (``olmo/score.py``, ``scripts/select_index_np.py``).

Two models score every sequence: a prior ``theta_prior`` (trained on the pool's distribution) and
a conditional ``theta_cond`` (the prior fine-tuned on the downstream data). The score is the
per-token conditional loss reduction

    s(x) = L(x; theta_prior) - L(x; theta_cond),

with ``L`` the mean token NLL of the sequence (higher is better). Selection is global and offline:
``k = int(N / tau)`` of the ``N`` scored sequences, those with the highest scores
(``tau in {7, 16, 32, 64}`` in the reference's configs).

Conventions: the reference scores fixed 512-token sequences and divides each loss sum by 511,
padding included (it has none); a scorer's ``mean_nll`` (mean over scored tokens) is the same
thing without padding. It sorts with ``np.argsort(scores)`` (ascending) and keeps the last ``k``;
we sort stably, so among equal scores at the boundary the later sequences are kept, and return the
indices in that ascending order, as the reference writes them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._common import (
    FloatArray,
    NanPolicy,
    Scores,
    aligned_matrix,
    check_count,
    is_table,
    nan_rows,
    score_vector,
)

__all__ = ["color_scores", "color_select"]


def color_scores(
    prior: Scores, conditional: Scores, *, column: str = "mean_nll", id_column: str = "id"
) -> FloatArray:
    """``L_prior - L_cond`` per sequence.

    ``prior`` and ``conditional`` are both arrays of mean token NLLs (in the same order), or both
    score tables, read at ``column`` and matched on ``id_column`` (the prior's order is kept).
    """
    if is_table(prior) != is_table(conditional):
        raise InvalidArgumentError("give two tables or two arrays")
    if is_table(prior):
        losses = aligned_matrix([prior, conditional], column, id_column, ("the prior", "the conditional"))[1]
        return losses[0] - losses[1]
    p = score_vector(prior, column, "prior")
    c = score_vector(conditional, column, "conditional")
    if p.shape != c.shape:
        raise InvalidArgumentError(f"prior and conditional losses differ in length: {p.size} and {c.size}")
    return p - c


def color_select(
    scores: Scores,
    tau: float | None = None,
    *,
    k: int | None = None,
    column: str = "score",
    nan_policy: NanPolicy = "raise",
) -> npt.NDArray[np.int64]:
    """The indices of the ``k = int(N / tau)`` (or the given ``k``) highest scores, in
    increasing order of score (module docstring). Under ``nan_policy="reject"``, ``N`` counts
    only the non-NaN scores."""
    if (tau is None) == (k is None):
        raise InvalidArgumentError("give exactly one of tau and k")
    values = score_vector(scores, column, "scores")
    eligible = np.flatnonzero(~nan_rows(values, nan_policy))
    if tau is not None:
        if not tau >= 1:
            raise InvalidArgumentError(f"tau must be >= 1 (keep 1 in tau), got {tau}")
        k = int(eligible.size / tau)
    k = check_count(k, eligible.size)  # type: ignore[arg-type]  # one of tau and k is given
    ascending = eligible[np.argsort(values[eligible], kind="stable")]
    return ascending[ascending.size - k :]
