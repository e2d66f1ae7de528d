"""Min-K% and Min-K%++: the test vectors of methods.md §4 and §0.3, and per-document scores from
random logits against a float64 re-run of the reference loop (log_softmax, sort, mean)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from tokensieve import kernels  # noqa: E402
from tokensieve.methods import min_k  # noqa: E402

LP = [-0.1, -2.0, -0.5, -4.0, -1.0, -0.2, -3.0, -0.05, -0.7, -1.5]
MU = [-0.5, -1.0, -0.8, -2.0, -1.2, -0.4, -1.5, -0.3, -0.9, -1.1]
SIGMA = [0.5, 1.0, 0.4, 1.0, 0.5, 0.2, 1.5, 0.1, 0.3, 1.0]


@pytest.mark.parametrize(("ratio", "expected"), [(0.2, -3.5), (0.3, -3.0), (0.5, -2.3)])
def test_min_k_vector(ratio: float, expected: float) -> None:
    assert float(min_k.min_k_percent(np.array(LP), ratio)) == pytest.approx(expected, abs=1e-12)


def test_min_k_of_no_token_is_nan() -> None:
    assert math.isnan(float(min_k.min_k_percent(np.array(LP), 0.05)))  # int(10 * 0.05) = 0


def test_min_k_plus_plus_vector() -> None:
    lp, entropy, var = np.array(LP), -np.array(MU), np.array(SIGMA) ** 2
    z = min_k.min_k_plus_plus_z(lp, entropy, var)
    np.testing.assert_allclose(z, [0.8, -1, 0.75, -2, 0.4, 1, -1, 2.5, 0.666667, -0.4], atol=5e-7)
    assert float(min_k.min_k_plus_plus(lp, entropy, var, 0.2)) == pytest.approx(-1.5, abs=1e-12)


def test_min_k_plus_plus_from_the_logit_row() -> None:
    stats = kernels.token_stats(torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64), torch.tensor([1]))
    z = min_k.min_k_plus_plus_z(stats.logprob, stats.entropy, stats.var_logp)
    assert float(z[0]) == pytest.approx(-0.6273992153439274, abs=1e-14)


def reference_scores(logits: torch.Tensor, targets: torch.Tensor, ratio: float) -> tuple[float, float]:
    """zjysteven/mink-plus-plus ``run.py`` for one text, in float64."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    probs = log_probs.exp()
    token_log_probs = log_probs.gather(-1, targets[:, None])[:, 0]
    mu = (probs * log_probs).sum(-1)
    sigma = (probs * log_probs**2).sum(-1) - mu**2
    z = (token_log_probs - mu) / sigma.sqrt()
    k = int(len(token_log_probs) * ratio)
    return (
        float(np.sort(token_log_probs.numpy())[:k].mean()),
        float(np.sort(z.numpy())[:k].mean()),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_per_document_scores_match_the_reference_loop(dtype: torch.dtype) -> None:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    gen = torch.Generator().manual_seed(seed)
    lengths = [7, 30, 12, 51]
    logits = torch.randn(sum(lengths), 300, generator=gen, dtype=torch.float64) * 3
    targets = torch.randint(0, 300, (sum(lengths),), generator=gen)
    cu = torch.tensor([0, *np.cumsum(lengths)])
    stats = kernels.token_stats(logits.to(dtype), targets)
    ours_k = min_k.min_k_percent(stats.logprob, 0.3, cu_seqlens=cu)
    ours_pp = min_k.min_k_plus_plus(stats.logprob, stats.entropy, stats.var_logp, 0.3, cu_seqlens=cu)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for d in range(len(lengths)):
        doc = slice(int(cu[d]), int(cu[d + 1]))
        ref_k, ref_pp = reference_scores(logits[doc].to(dtype), targets[doc], 0.3)
        assert float(ours_k[d]) == pytest.approx(ref_k, rel=tol, abs=tol), f"seed {seed}"
        assert float(ours_pp[d]) == pytest.approx(ref_pp, rel=tol, abs=tol), f"seed {seed}"


def test_zero_variance_tokens_are_left_out() -> None:
    lp = torch.tensor([-1.0, -2.0, -3.0, 0.0], dtype=torch.float64)
    entropy = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    var = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)  # the last is a point mass
    assert math.isnan(float(min_k.min_k_plus_plus_z(lp, entropy, var)[3]))
    # z = [0, -1, -2] over the three live tokens: ratio 1 averages them, 2/3 the two smallest
    assert float(min_k.min_k_plus_plus(lp, entropy, var, 1.0)) == pytest.approx(-1.0)
    assert float(min_k.min_k_plus_plus(lp, entropy, var, 2 / 3)) == pytest.approx(-1.5)
    mask = torch.tensor([True, False, True, True])
    assert float(min_k.min_k_plus_plus(lp, entropy, var, 0.5, mask=mask)) == pytest.approx(-2.0)
