"""Selections over score tables, by method name: what ``tokensieve select`` runs.

:func:`select_from_tables` takes one or more score tables (``pyarrow.Table``, one row per
document, columns as :class:`tokensieve.scoring.TokenScorer` writes them) and returns a
:class:`TableSelection` that accounts for every row: selected, rejected, or rejected for a NaN
score (under ``nan_policy="reject"``; the default raises :class:`~tokensieve.exceptions.NaNScoreError`).

=========================  ==========  ==============================================================
method                     tables      rule
=========================  ==========  ==============================================================
``top-k``, ``bottom-k``    1           the ``k`` (or ``round(fraction * N)``) highest / lowest
                                       ``column``; ties to the earlier row
``threshold``              1           ``at_least <= column <= at_most``
``ccnet``                  1           CCNet buckets of ``perplexity`` (cutoffs: given, or the pool's
                                       30th/60th percentiles); keep ``keep_buckets``
``color``                  2           CoLoR-Filter: prior and conditional ``mean_nll``; the top
                                       ``int(N / tau)`` (or ``k``) by ``prior - conditional``
``min-k``                  1           Min-K% (``min_k``; or ``min_k_plus_plus``): a row is a likely
                                       training member if its score is above ``threshold``; keep the
                                       non-members (or the members)
``perplexity-correlations``  N >= 2    one table per model: ``bits_per_byte`` and the models'
                                       benchmark errors give an estimate per document, projected
                                       (``linear``/``l2``) under ``tau = (tokens / sum tokens) /
                                       fraction``; keep the documents of positive weight
=========================  ==========  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods import color_filter, perplexity_correlations, perplexity_filter, selection
from tokensieve.methods._common import (
    NanPolicy,
    aligned_matrix,
    check_fraction,
    nan_rows,
    table_column,
    table_ids,
)

__all__ = ["DEFAULT_COLUMNS", "METHODS", "READS", "TableSelection", "select_from_tables"]

#: The score column each method reads by default.
DEFAULT_COLUMNS = {
    "top-k": "mean_nll",
    "bottom-k": "mean_nll",
    "threshold": "mean_nll",
    "ccnet": "perplexity",
    "color": "mean_nll",
    "min-k": "min_k",
    "perplexity-correlations": "bits_per_byte",
}
METHODS = tuple(DEFAULT_COLUMNS)
#: The options of :func:`select_from_tables` each method reads (besides the column, the id column
#: and the NaN policy); giving one of the others (those that default to ``None``) is an error.
READS = {
    "top-k": ("k", "fraction"),
    "bottom-k": ("k", "fraction"),
    "threshold": ("at_least", "at_most"),
    "ccnet": ("cutoffs", "keep_buckets"),
    "color": ("tau", "k"),
    "min-k": ("threshold", "keep_members"),
    "perplexity-correlations": ("benchmark_errors", "fraction", "estimator", "projection", "tokens_column"),
}


@dataclass(frozen=True)
class TableSelection:
    """The outcome of a selection, one entry per row of the first table (in its order).

    ``score`` is the value each row was judged by (NaN where it had none), ``extra`` holds other
    per-row outputs (``bucket`` for ccnet, ``weight`` for perplexity-correlations) and
    ``details`` what the manifest records (``k``, thresholds, cutoffs, counts per bucket, ...).
    """

    ids: list[str]
    selected: npt.NDArray[np.bool_]
    rejected_nan: npt.NDArray[np.bool_]
    score: npt.NDArray[np.float64]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """``rows`` = ``selected`` + ``rejected`` + ``rejected_nan``."""
        selected, nan = int(self.selected.sum()), int(self.rejected_nan.sum())
        return {
            "rows": len(self.ids),
            "selected": selected,
            "rejected": len(self.ids) - selected - nan,
            "rejected_nan": nan,
        }


def _size(k: int | None, fraction: float | None, eligible: int) -> tuple[int, dict[str, Any]]:
    if (k is None) == (fraction is None):
        raise InvalidArgumentError("give exactly one of k and fraction")
    if fraction is not None:
        k = round(check_fraction(fraction) * eligible)
        return k, {"fraction": fraction, "k": k}
    return k, {"k": k}  # type: ignore[return-value]  # k is given


def select_from_tables(
    method: str,
    tables: Sequence[Any],
    *,
    column: str | None = None,
    id_column: str = "id",
    nan_policy: NanPolicy = "raise",
    k: int | None = None,
    fraction: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    tau: float | None = None,
    cutoffs: Sequence[float] | None = None,
    keep_buckets: Sequence[str] = ("head",),
    threshold: float | None = None,
    keep_members: bool = False,
    benchmark_errors: Sequence[float] | None = None,
    estimator: perplexity_correlations.Estimator = "spearmanr",
    projection: str = "linear",
    tokens_column: str = "tokens",
    sources: Sequence[str] | None = None,
) -> TableSelection:
    """Runs ``method`` (module docstring) over score tables; ``sources`` names them in errors.

    Raises:
        InvalidArgumentError: a wrong number of tables, a missing or conflicting option, ``k``
            larger than the pool, ids that differ between tables or repeat.
        MissingColumnError: a table lacks the score, id or token column.
        NaNScoreError: a NaN (or null) score under ``nan_policy="raise"``.
    """
    if method not in DEFAULT_COLUMNS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    given: dict[str, Any] = {"k": k, "fraction": fraction, "at_least": at_least, "at_most": at_most}
    given |= {"tau": tau, "cutoffs": cutoffs, "threshold": threshold, "benchmark_errors": benchmark_errors}
    reads = READS[method]
    stray = sorted(name for name, value in given.items() if value is not None and name not in reads)
    if stray:
        raise InvalidArgumentError(f"method {method} does not read {stray}; it reads {sorted(reads)}")
    column = column or DEFAULT_COLUMNS[method]
    names = list(sources) if sources is not None else [f"table {i}" for i in range(len(tables))]
    fewest, most = {"color": (2, 2), "perplexity-correlations": (2, None)}.get(method, (1, 1))
    if not fewest <= len(tables) <= (most or len(tables)):
        wanted = f"{fewest} or more" if most is None else str(fewest)
        raise InvalidArgumentError(f"method {method} reads {wanted} score table(s), got {len(tables)}")

    if method == "color":
        ids, losses = aligned_matrix(tables, column, id_column, names)
        score = losses[0] - losses[1]
        nan = nan_rows(score, nan_policy, "CoLoR scores")
        chosen = color_filter.color_select(score, tau, k=k, nan_policy=nan_policy)
        picked = {"tau": tau, "k": len(chosen), "prior": names[0], "conditional": names[1]}
        return _outcome(ids, chosen, nan, score, details=picked)

    if method == "perplexity-correlations":
        return _perplexity_correlations(
            tables,
            names,
            column,
            id_column,
            nan_policy,
            benchmark_errors,
            estimator,
            projection,
            tokens_column,
            0.1 if fraction is None else fraction,
        )

    ids = table_ids(tables[0], id_column, source=names[0])
    score = table_column(tables[0], column, source=names[0])
    nan = nan_rows(score, nan_policy, f"the {column!r} scores")
    if method in ("top-k", "bottom-k"):
        k, details = _size(k, fraction, int((~nan).sum()))
        chosen = selection.top_k(score, k, largest=method == "top-k", nan_policy=nan_policy)
        return _outcome(ids, chosen, nan, score, details=details)
    if method == "threshold":
        keep = selection.threshold_mask(score, at_least=at_least, at_most=at_most, nan_policy=nan_policy)
        return _outcome(ids, keep, nan, score, details={"at_least": at_least, "at_most": at_most})
    if method == "ccnet":
        cuts = perplexity_filter.percentile_cutoffs(score) if cutoffs is None else tuple(cutoffs)
        buckets = perplexity_filter.ccnet_buckets(score, cuts, nan_policy=nan_policy)
        unknown = set(keep_buckets) - set(perplexity_filter.BUCKETS)
        if unknown or not keep_buckets:
            raise InvalidArgumentError(f"keep_buckets must name some of {perplexity_filter.BUCKETS}")
        details = {
            "cutoffs": list(cuts),
            "cutoffs_from": "given" if cutoffs is not None else "the pool's 30th and 60th percentiles",
            "keep_buckets": list(keep_buckets),
            "buckets": {b: int((buckets == b).sum()) for b in perplexity_filter.BUCKETS},
        }
        keep = np.isin(buckets, list(keep_buckets))
        return _outcome(ids, keep, nan, score, extra={"bucket": buckets}, details=details)
    # min-k
    if threshold is None:
        raise InvalidArgumentError("method min-k needs a threshold")
    member = score > threshold
    keep = (member if keep_members else ~member) & ~nan
    details = {"threshold": threshold, "kept": "members" if keep_members else "non-members"}
    return _outcome(ids, keep, nan, score, details=details)


def _outcome(
    ids: list[str],
    chosen: np.ndarray,
    nan: np.ndarray,
    score: np.ndarray,
    *,
    extra: dict[str, np.ndarray] | None = None,
    details: dict[str, Any] | None = None,
) -> TableSelection:
    """A :class:`TableSelection` from a bool mask or the indices of the chosen rows."""
    selected = chosen if chosen.dtype == bool else np.isin(np.arange(len(ids)), chosen)
    return TableSelection(ids, selected, nan, score, extra or {}, details or {})


def _perplexity_correlations(
    tables: Sequence[Any],
    names: list[str],
    column: str,
    id_column: str,
    nan_policy: NanPolicy,
    benchmark_errors: Sequence[float] | None,
    estimator: perplexity_correlations.Estimator,
    projection: str,
    tokens_column: str,
    fraction: float,
) -> TableSelection:
    if benchmark_errors is None or len(benchmark_errors) != len(tables):
        raise InvalidArgumentError(
            f"give one benchmark error per score table: {len(tables)} tables, "
            f"{0 if benchmark_errors is None else len(benchmark_errors)} errors"
        )
    if projection not in ("linear", "l2"):
        raise InvalidArgumentError(f'projection must be "linear" or "l2", got {projection!r}')
    ids, bpb = aligned_matrix(tables, column, id_column, names)
    nan = nan_rows(np.where(np.isnan(bpb).any(axis=0), np.nan, 0.0), nan_policy, f"the {column!r} values")
    live = np.flatnonzero(~nan)
    if live.size == 0:
        raise InvalidArgumentError("no document has a score under every model")
    theta = perplexity_correlations.estimate(bpb[:, live], np.asarray(benchmark_errors, float), estimator)
    tokens = table_column(tables[0], tokens_column, source=names[0])[live]
    tau = perplexity_correlations.token_budget_tau(tokens, fraction)
    project = {
        "linear": perplexity_correlations.linear_projection,
        "l2": perplexity_correlations.l2_projection,
    }[projection]
    weight = np.full(len(ids), np.nan)
    weight[live] = project(theta, tau)
    score = np.full(len(ids), np.nan)
    score[live] = theta
    details = {
        "estimator": estimator,
        "projection": projection,
        "desired_filter_ratio": fraction,
        "benchmark_errors": dict(zip(names, map(float, benchmark_errors), strict=True)),
        "tokens_from": f"{names[0]}:{tokens_column}",
    }
    return _outcome(ids, weight > 0, nan, score, extra={"weight": weight}, details=details)
