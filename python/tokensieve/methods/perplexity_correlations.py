"""Perplexity correlations: Thrush, Potts, Hashimoto 2024, "Improving Pretraining Data Using
Perplexity Correlations" (arXiv 2409.05816); reference: the ``perplexity-correlations`` package
0.1.2 (TristanThrush/perplexity-correlations @165d8c6), whose results these functions reproduce.

Inputs: ``X``, an ``[N, D]`` matrix of bits per byte of N LLMs on D texts (or domains), and ``y``,
the N models' benchmark *error* (1 - accuracy, lower is better). Each estimator returns a
``[D]`` vector, larger meaning "lower loss on this text goes with lower error" (upweight it);
sums run over model pairs ``k < g``:

============  ========================================================================
estimator     definition
============  ========================================================================
product       ``(1/N) sum_k y_k X_kj``
sign          ``2/(N(N-1)) sum_{k<g} sign(y_g - y_k) (X_gj - X_kj)``
sign_cdf      ``sign`` with ``X`` replaced by its column-wise empirical CDF ``R(X)/N``
sign_sign     ``2/(N(N-1)) sum_{k<g} sign(y_g - y_k) sign(X_gj - X_kj)`` (Kendall tau-a)
spearmanr     ``1 - 6 sum_k (R(y)_k - R(X_.j)_k)^2 / (N(N^2 - 1))``
============  ========================================================================

``R`` is the ordinal rank (1..N) along the models. Ties: the reference ranks with numpy's default,
unstable sort; we use a stable one, so tied values are ranked in model order (identical results
without ties). ``sign`` and ``sign_cdf`` use the identity ``sum_{k<g} s_gk (x_g - x_k) = sum_g x_g
sum_k s_gk`` (``s`` antisymmetric), which costs O(N^2 + N D) instead of O(N^2 D).

Projections turn an estimate into a sampling distribution ``w`` with ``sum w = 1`` and ``0 <= w_i <=
tau_i``: :func:`linear_projection` maximises ``<estimate, w>`` (it depends only on the ranks) and
:func:`l2_projection` minimises ``||w - estimate||`` (the reference bisects for the offset ``c`` in
``clip(estimate + c, 0, tau)``; we solve the piecewise-linear equation exactly). The reference's
fastText step labels a text "include" where the linear projection is positive, with ``tau_i =
(tokens_i / sum tokens) / desired_filter_ratio`` (:func:`token_budget_tau`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._common import FloatArray, aligned_matrix, check_fraction

__all__ = [
    "ESTIMATORS",
    "bpb_matrix",
    "estimate",
    "l2_projection",
    "linear_projection",
    "product",
    "sign",
    "sign_cdf",
    "sign_sign",
    "spearmanr",
    "thrush_bpb",
    "token_budget_tau",
]

Estimator = Literal["product", "sign", "sign_cdf", "sign_sign", "spearmanr"]
ESTIMATORS: tuple[Estimator, ...] = ("product", "sign", "sign_cdf", "sign_sign", "spearmanr")


def _check(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    X, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # noqa: N806
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or y.shape[0] < 2:
        raise InvalidArgumentError(
            f"X must be [N, D] and y [N] with N >= 2 models, got shapes {X.shape} and {y.shape}"
        )
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise InvalidArgumentError("X and y must be finite (NaN bits per byte: a text not scored?)")
    # the reference warns on the same conditions
    if (X < 0).any():
        warnings.warn("X has negative entries: is it a matrix of bits per byte?", stacklevel=3)
    if ((y < 0) | (y > 1)).any():
        warnings.warn("y has entries outside [0, 1]: is it a vector of benchmark errors?", stacklevel=3)
    return X, y


def _ranks(values: FloatArray) -> FloatArray:
    """Ordinal ranks 1..N along axis 0, ties in index order."""
    order = np.argsort(values, axis=0, kind="stable")
    ranks = np.empty(values.shape, dtype=np.float64)
    rank = np.arange(1, values.shape[0] + 1, dtype=np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    np.put_along_axis(ranks, order, np.broadcast_to(rank, values.shape), axis=0)
    return ranks


def _sign_weights(y: FloatArray) -> FloatArray:
    """``c_g = sum_k sign(y_g - y_k)``, scaled by the U-statistic's ``2 / (N (N - 1))``."""
    n = y.shape[0]
    return np.sign(y[:, None] - y[None, :]).sum(axis=1) * (2.0 / (n * (n - 1)))


def product(X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:  # noqa: N803 (the paper's names)
    """``theta_j = (1/N) sum_k y_k X_kj`` (Plan et al. 2016); not robust to outliers."""
    X, y = _check(X, y)  # noqa: N806
    return y @ X / y.shape[0]


def sign(X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:  # noqa: N803
    """``theta_j = 2/(N(N-1)) sum_{k<g} sign(y_g - y_k)(X_gj - X_kj)`` (Chen & Banerjee 2017);
    robust to outliers in ``y``."""
    X, y = _check(X, y)  # noqa: N806
    return _sign_weights(y) @ X


def sign_cdf(X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:  # noqa: N803
    """:func:`sign` on the column-wise empirical CDF ``R(X)/N`` (Thrush et al. 2024's estimator);
    robust to outliers in ``X`` and ``y``."""
    X, y = _check(X, y)  # noqa: N806
    return _sign_weights(y) @ (_ranks(X) / X.shape[0])


def sign_sign(X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:  # noqa: N803
    """``theta_j = 2/(N(N-1)) sum_{k<g} sign(y_g - y_k) sign(X_gj - X_kj)``, Kendall's tau-a."""
    X, y = _check(X, y)  # noqa: N806
    n = y.shape[0]
    total = np.zeros(X.shape[1])
    for k in range(n - 1):
        total += np.sign(y[k + 1 :] - y[k]) @ np.sign(X[k + 1 :] - X[k])
    return total * (2.0 / (n * (n - 1)))


def spearmanr(X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:  # noqa: N803
    """Spearman's rank correlation of ``y`` with each column of ``X``:
    ``1 - 6 sum_k (R(y)_k - R(X_.j)_k)^2 / (N(N^2 - 1))`` (ordinal ranks, module docstring)."""
    X, y = _check(X, y)  # noqa: N806
    n = y.shape[0]
    diff = _ranks(y)[:, None] - _ranks(X)
    return 1.0 - 6.0 * (diff**2).sum(axis=0) / (n * (n * n - 1))


_ESTIMATOR_FUNCTIONS = {
    "product": product,
    "sign": sign,
    "sign_cdf": sign_cdf,
    "sign_sign": sign_sign,
    "spearmanr": spearmanr,
}


def estimate(X: npt.ArrayLike, y: npt.ArrayLike, estimator: Estimator = "spearmanr") -> FloatArray:  # noqa: N803
    """The named estimator (module docstring) of ``X`` (``[N, D]`` bits per byte) and ``y``
    (``[N]`` benchmark errors). The reference recommends ``spearmanr`` or ``sign_cdf``."""
    if estimator not in _ESTIMATOR_FUNCTIONS:
        raise InvalidArgumentError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return _ESTIMATOR_FUNCTIONS[estimator](X, y)


def _check_projection(estimate: npt.ArrayLike, tau: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    e, t = np.asarray(estimate, dtype=np.float64), np.asarray(tau, dtype=np.float64)
    if e.ndim != 1 or t.shape != e.shape or e.size == 0:
        raise InvalidArgumentError(f"estimate and tau must be 1-D of one length, got {e.shape} and {t.shape}")
    if not (np.isfinite(e).all() and np.isfinite(t).all()):
        raise InvalidArgumentError("estimate and tau must be finite")
    if (t <= 0).any():
        raise InvalidArgumentError("tau must be positive (estimate without the domains of tau 0)")
    if t.sum() < 1:
        raise InvalidArgumentError(f"the projection is infeasible: sum(tau) = {t.sum()} < 1")
    return e, t


def linear_projection(estimate: npt.ArrayLike, tau: npt.ArrayLike) -> FloatArray:
    """``argmax <estimate, w>`` subject to ``sum w = 1``, ``0 <= w <= tau``: fill the highest
    estimates up to their ``tau`` until the mass reaches 1 (the last one filled takes the
    remainder). Ties in ``estimate``: the earlier text first. float64 (the reference returns
    float32)."""
    e, t = _check_projection(estimate, tau)
    order = np.argsort(-e, kind="stable")
    cumulative = np.cumsum(t[order])
    last = int(np.flatnonzero(cumulative >= 1)[0])
    w = np.zeros_like(e)
    w[order[:last]] = t[order[:last]]
    w[order[last]] = 1.0 if last == 0 else 1.0 - cumulative[last - 1]
    return w


def l2_projection(estimate: npt.ArrayLike, tau: npt.ArrayLike) -> FloatArray:
    """The Euclidean projection of ``estimate`` onto ``{w : sum w = 1, 0 <= w <= tau}``:
    ``clip(estimate + c, 0, tau)`` with the offset ``c`` that makes it sum to 1.

    ``g(c) = sum clip(e_i + c, 0, tau_i)`` is nondecreasing and piecewise linear, with slope +1
    from ``-e_i`` to ``tau_i - e_i`` for each ``i``; it is solved exactly between its sorted
    breakpoints (the reference bisects to ``atol=1e-12``).
    """
    e, t = _check_projection(estimate, tau)
    points = np.concatenate([-e, t - e])
    steps = np.concatenate([np.ones_like(e), -np.ones_like(e)])
    order = np.argsort(points, kind="stable")
    points, slope = points[order], np.cumsum(steps[order])  # slope of g just right of each point
    # g at each breakpoint: g is 0 left of the first one and grows by slope * width in between
    g = np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(points))])
    j = int(np.flatnonzero(g < 1.0)[-1])
    # g(points[-1]) = sum(tau) >= 1, up to rounding when sum(tau) is 1: then every w_i = tau_i
    c = points[-1] if j == points.size - 1 else points[j] + (1.0 - g[j]) / slope[j]
    return np.clip(e + c, 0.0, t)


def thrush_bpb(sum_nll: npt.ArrayLike, n_tokens: npt.ArrayLike, n_bytes: npt.ArrayLike) -> FloatArray:
    """Bits per byte as the reference's ``get_loss_hf`` computes it:
    ``(n / bytes) * mean_nll / ln 2`` with ``mean_nll = sum_nll / (n - 1)``.

    ``n`` counts the chunk's tokens *including* the first, unpredicted one, and ``sum_nll`` (nats)
    is over the ``n - 1`` predicted ones; hence the ``n / (n - 1)`` factor against
    ``sum_nll / (bytes ln 2)``, which varies across tokenizers and is kept for parity. A domain is
    aggregated by summing ``sum_nll * n / (n - 1)`` and ``bytes`` over its chunks.
    """
    loss = np.asarray(sum_nll, dtype=np.float64)
    n = np.asarray(n_tokens, dtype=np.float64)
    size = np.asarray(n_bytes, dtype=np.float64)
    if (n < 2).any() or (size <= 0).any():
        raise InvalidArgumentError("every chunk needs n_tokens >= 2 and n_bytes > 0")
    return n / size * (loss / (n - 1)) / math.log(2)


def token_budget_tau(tokens: npt.ArrayLike, desired_filter_ratio: float = 0.1) -> FloatArray:
    """The reference's caps for keeping ``desired_filter_ratio`` of the tokens:
    ``tau_i = (tokens_i / sum tokens) / desired_filter_ratio``."""
    t = np.asarray(tokens, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or (t <= 0).any():
        raise InvalidArgumentError("tokens must be a non-empty 1-D array of positive counts")
    return t / t.sum() / check_fraction(desired_filter_ratio, "desired_filter_ratio")


def bpb_matrix(
    tables: Sequence[Any], column: str = "bits_per_byte", id_column: str = "id"
) -> tuple[list[str], FloatArray]:
    """``(ids, X)`` from one score table per model: ``X[i, d]`` is model ``i``'s ``column`` on
    the ``d``-th id of the first table (all tables must score the same ids)."""
    return aligned_matrix(tables, column, id_column)
