"""Loss-based sample reweighting: the test vector of methods.md §6 (every strategy at r = 1 and
r = 0.4), per-sample losses, and the weights as a stop-gradient."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tokensieve.exceptions import InvalidArgumentError  # noqa: E402
from tokensieve.methods import reweighting  # noqa: E402

LOSSES = [1.0, 2.0, 3.0, 5.0]
SPEC = [  # (r, strategy, weights, sum w l): methods.md §6
    (1.0, "quadratic", [0.146300, 0.309717, 0.397684, 0.146300], 2.690283),
    (1.0, "upper", [0.150353, 0.193057, 0.247890, 0.408701], 3.323640),
    (1.0, "linupper", [0.123681, 0.203916, 0.336201, 0.336201], 3.221123),
    (1.0, "extremes", [0.336201, 0.203916, 0.123681, 0.336201], 2.796084),
    (0.4, "quadratic", [0.048301, 0.314965, 0.588432, 0.048301], 2.685035),
    (0.4, "upper", [0.053934, 0.100763, 0.188249, 0.657054], 4.105477),
    (0.4, "linupper", [0.034656, 0.120960, 0.422192, 0.422192], 3.654113),
    (0.4, "extremes", [0.422192, 0.120960, 0.034656, 0.422192], 2.879040),
]


def test_normalisation_vector() -> None:
    h = reweighting.normalize_losses(torch.tensor(LOSSES, dtype=torch.float64))
    np.testing.assert_allclose(h.numpy(), [-1, -0.5, 0, 1], atol=1e-15)


@pytest.mark.parametrize(("r", "strategy", "weights", "objective"), SPEC)
def test_spec_vector(r: float, strategy: str, weights: list[float], objective: float) -> None:
    losses = torch.tensor(LOSSES, dtype=torch.float64, requires_grad=True)
    loss, w = reweighting.reweighted_loss(losses, strategy, r)  # type: ignore[arg-type]
    np.testing.assert_allclose(w.numpy(), weights, atol=5e-7)
    assert float(loss.detach()) == pytest.approx(objective, abs=5e-7)
    loss.backward()
    np.testing.assert_allclose(losses.grad.numpy(), w.numpy())  # the weights are constants


def test_reference_names_and_uniform_cases() -> None:
    l = torch.tensor(LOSSES)  # noqa: E741
    quadratic = reweighting.sample_weights(l, "quadratic")
    torch.testing.assert_close(reweighting.sample_weights(l, "mid"), quadratic)
    equal = reweighting.sample_weights(torch.full((5,), 2.5), "linupper", 0.4)
    torch.testing.assert_close(equal, torch.full((5,), 0.2))
    # a high temperature flattens the weights towards the plain mean
    w = reweighting.sample_weights(l, "upper", 1e6)
    torch.testing.assert_close(w, torch.full((4,), 0.25))


def test_per_sample_loss_counts_active_tokens() -> None:
    token_loss = torch.tensor([[1.0, 2.0, 9.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    torch.testing.assert_close(reweighting.per_sample_loss(token_loss, mask), torch.tensor([1.5, 5.0]))
    torch.testing.assert_close(reweighting.per_sample_loss(token_loss), torch.tensor([4.0, 5.0]))


def test_bad_inputs() -> None:
    with pytest.raises(InvalidArgumentError, match="strategy"):
        reweighting.sample_weights(torch.tensor(LOSSES), "lower")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="temperature"):
        reweighting.sample_weights(torch.tensor(LOSSES), "upper", 0.0)
    with pytest.raises(InvalidArgumentError, match="NaN"):
        reweighting.sample_weights(torch.tensor([1.0, float("nan")]))
