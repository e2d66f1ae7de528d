"""Perplexity correlations: the test vector of methods.md §2, and every estimator and both
projections run side by side with the ``perplexity-correlations`` package on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods import perplexity_correlations as pc

reference_estimation = pytest.importorskip("perplexity_correlations.estimation")
reference_projection = pytest.importorskip("perplexity_correlations.projection")

X_SPEC = np.array([[1.0, 2.0, 0.5], [0.9, 2.2, 0.6], [0.8, 2.1, 0.7], [0.7, 2.3, 0.4]])
Y_SPEC = np.array([0.40, 0.35, 0.30, 0.20])
SPEC = {  # methods.md §2, "verified against package 0.1.2"
    "spearmanr": [1.0, -0.8, 0.2],
    "sign_sign": [1.0, -0.666667, 0.0],
    "sign_cdf": [0.416667, -0.333333, 0.083333],
    "sign": [0.166667, -0.133333, 0.033333],
    "product": [0.27375, 0.665, 0.175],
}


@pytest.mark.parametrize("estimator", pc.ESTIMATORS)
def test_spec_vector(estimator: str) -> None:
    np.testing.assert_allclose(pc.estimate(X_SPEC, Y_SPEC, estimator), SPEC[estimator], atol=5e-7)


def test_spec_projections() -> None:
    est, tau = np.array([0.9, -0.2, 0.5, 0.1]), np.array([0.3, 0.5, 0.4, 0.6])
    np.testing.assert_allclose(pc.linear_projection(est, tau), [0.3, 0, 0.4, 0.3], atol=1e-15)
    np.testing.assert_allclose(pc.l2_projection(est, tau), [0.3, 0, 0.4, 0.3], atol=1e-12)


def random_problem(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous draws, so no ties: the reference's unstable rank order cannot matter."""
    return rng.uniform(0.3, 2.0, size=(n, d)), rng.uniform(0.05, 0.95, size=n)


@pytest.mark.parametrize(("n", "d"), [(2, 5), (7, 40), (33, 300), (90, 1000)])
def test_estimators_match_the_package(n: int, d: int) -> None:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    X, y = random_problem(np.random.default_rng(seed), n, d)  # noqa: N806
    for name in pc.ESTIMATORS:
        ours = pc.estimate(X, y, name)
        theirs = getattr(reference_estimation, name)(X, y)
        # product/sign sum in another order; the rank-based ones are exact rationals
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14, err_msg=f"{name}, seed {seed}")


@pytest.mark.parametrize("d", [1, 3, 50, 2000])
def test_projections_match_the_package(d: int) -> None:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        est = rng.normal(size=d)
        tau = rng.uniform(0.1 / d, 3.0 / d, size=d) if d > 1 else np.array([1.5])
        if tau.sum() < 1:
            tau *= 1.0 / tau.sum() + 0.1
        linear, theirs = pc.linear_projection(est, tau), reference_projection.linear(est, tau)
        assert theirs.dtype == np.float32
        np.testing.assert_allclose(linear, theirs, atol=2e-7, err_msg=f"seed {seed}")  # float32 there
        assert math.isclose(linear.sum(), 1.0, abs_tol=1e-12)
        assert (linear <= tau).all() and (linear >= 0).all()
        l2 = pc.l2_projection(est, tau)
        np.testing.assert_allclose(l2, reference_projection.l2(est, tau), atol=1e-10, err_msg=f"seed {seed}")
        assert math.isclose(l2.sum(), 1.0, abs_tol=1e-12)
        assert (l2 <= tau).all() and (l2 >= 0).all()


def test_linear_projection_optimal_against_brute_force_lp() -> None:
    """The linear projection maximises <est, w> over the capped simplex: scipy's LP agrees."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    rng = np.random.default_rng(7)
    for _ in range(10):
        est, tau = rng.normal(size=12), rng.uniform(0.05, 0.4, size=12)
        bounds = list(zip(np.zeros(12), tau, strict=True))
        lp = linprog(-est, A_eq=np.ones((1, 12)), b_eq=[1.0], bounds=bounds)
        assert math.isclose(est @ pc.linear_projection(est, tau), -lp.fun, rel_tol=1e-9, abs_tol=1e-12)


def test_l2_projection_is_the_closest_feasible_point() -> None:
    """Against scipy's quadratic solver (SLSQP) on a small problem."""
    minimize = pytest.importorskip("scipy.optimize").minimize
    rng = np.random.default_rng(3)
    est, tau = rng.normal(0.1, 0.3, size=6), rng.uniform(0.2, 0.5, size=6)
    best = minimize(
        lambda w: ((w - est) ** 2).sum(),
        np.full(6, 1 / 6),
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        bounds=list(zip(np.zeros(6), tau, strict=True)),
        method="SLSQP",
        options={"ftol": 1e-14},
    )
    np.testing.assert_allclose(pc.l2_projection(est, tau), best.x, atol=1e-6)


def test_ties_are_ranked_in_model_order() -> None:
    X = np.array([[1.0], [1.0], [2.0]])  # noqa: N806 (models 0 and 1 tie)
    y = np.array([0.1, 0.2, 0.3])
    # stable ranks of X: [1, 2, 3] equal those of y, so Spearman's rho is 1
    assert pc.spearmanr(X, y)[0] == 1.0
    # sign_sign ignores the tied pair: (0 + 1 + 1) / 3
    assert pc.sign_sign(X, y)[0] == pytest.approx(2 / 3)


def test_thrush_bpb_vector() -> None:
    # methods.md §9.3: n_tok = 20, bytes = 60, mean loss 2.0 over the 19 predicted tokens
    assert pc.thrush_bpb(38.0, 20, 60) == pytest.approx(0.9617966939259756, rel=1e-15)
    np.testing.assert_allclose(pc.token_budget_tau([1, 3], 0.5), [0.5, 1.5])


def test_bad_inputs_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="N >= 2"):
        pc.spearmanr(np.ones((1, 3)), np.ones(1))
    with pytest.raises(InvalidArgumentError, match="finite"):
        pc.sign(np.array([[1.0], [np.nan]]), np.array([0.1, 0.2]))
    with pytest.raises(InvalidArgumentError, match="estimator"):
        pc.estimate(X_SPEC, Y_SPEC, "kendall")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="infeasible"):
        pc.linear_projection([1.0, 2.0], [0.3, 0.3])
    with pytest.raises(InvalidArgumentError, match="positive"):
        pc.l2_projection([1.0, 2.0], [1.0, 0.0])
    with pytest.warns(UserWarning, match="benchmark errors"):
        pc.product(X_SPEC, Y_SPEC * 10)


def test_bpb_matrix_aligns_tables_on_ids() -> None:
    pa = pytest.importorskip("pyarrow")
    a = pa.table({"id": ["x", "y", "z"], "bits_per_byte": [1.0, 2.0, 3.0]})
    b = pa.table({"id": ["z", "x", "y"], "bits_per_byte": [30.0, 10.0, 20.0]})
    ids, X = pc.bpb_matrix([a, b])  # noqa: N806
    assert ids == ["x", "y", "z"]
    np.testing.assert_array_equal(X, [[1, 2, 3], [10, 20, 30]])
    c = pa.table({"id": ["x", "y", "w"], "bits_per_byte": [1.0, 2.0, 3.0]})
    with pytest.raises(InvalidArgumentError, match=r"only in table 1: \['w'\]"):
        pc.bpb_matrix([a, c])
