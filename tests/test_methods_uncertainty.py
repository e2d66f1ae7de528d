"""Token-uncertainty aggregation (methods.md §10): the test vector, and per-document scores
against numpy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from tokensieve.methods import uncertainty  # noqa: E402

LP = [-0.01, -0.2, -2.3, -0.05, -0.7]


def test_spec_vector() -> None:
    lp = np.array(LP)
    assert float(uncertainty.chow_sum(lp)) == pytest.approx(-3.26, abs=1e-12)
    assert float(uncertainty.chow_average(lp)) == pytest.approx(-0.652, abs=1e-12)
    quantiles = uncertainty.chow_quantile(lp, [0.0, 0.25, 0.5])
    np.testing.assert_allclose(quantiles, [-2.3, -0.7, -0.2], atol=1e-12)
    features = uncertainty.chow_features(lp, [0.0, 0.5])
    np.testing.assert_allclose(features, [-3.26, -0.652, -2.3, -0.2], atol=1e-12)


def test_per_document_against_numpy() -> None:
    rng = np.random.default_rng(5)
    lengths = [1, 9, 4, 20]
    lp = -rng.exponential(1.0, size=sum(lengths))
    mask = rng.random(lp.size) > 0.2
    mask[0] = True
    cu = np.concatenate([[0], np.cumsum(lengths)])
    alphas = [0.0, 0.3, 0.5, 1.0]
    features = uncertainty.chow_features(lp, alphas, cu_seqlens=cu, mask=mask).numpy()
    for d in range(len(lengths)):
        values = lp[cu[d] : cu[d + 1]][mask[cu[d] : cu[d + 1]]]
        expected = [values.sum(), values.mean(), *np.quantile(values, alphas)]
        np.testing.assert_allclose(features[d], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_take_the_triton_reduction() -> None:
    """On CUDA the sums and means come from the Triton kernel (fp32); they agree with float64."""
    gen = torch.Generator().manual_seed(0)
    lp = -torch.rand(10_000, generator=gen, dtype=torch.float64) * 5
    cu = torch.tensor([0, 1, 4_000, 4_001, 10_000])
    expected = uncertainty.chow_features(lp, [0.0, 0.5], cu_seqlens=cu)
    got = uncertainty.chow_features(lp.float().cuda(), [0.0, 0.5], cu_seqlens=cu.cuda())
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-4)
