"""Online data mixing: the paper-form test vector of methods.md §8, reproducibility, and the
bandit's behaviour (the policy keeps exploring and favours the domain of higher loss)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods import OnlineDataMixing


def test_paper_vector() -> None:
    mixer = OnlineDataMixing(2, alpha=0.9)
    assert mixer.exploration(1) == 0.5
    np.testing.assert_allclose(mixer.policy(), [0.5, 0.5])
    mixer.update(0, 3.0)
    np.testing.assert_allclose(mixer.rewards, [0.6, 0.0], atol=1e-15)
    assert mixer.exploration(2) == pytest.approx(0.416277, abs=5e-7)
    np.testing.assert_allclose(mixer.policy(), [0.512465, 0.487535], atol=5e-7)
    mixer.update("domain 1", 2.0)
    np.testing.assert_allclose(mixer.rewards, [0.6, 0.410227], atol=5e-7)
    assert mixer.step == 3


def test_same_seed_same_draws() -> None:
    def run(seed: int) -> list[int]:
        mixer = OnlineDataMixing(["a", "b", "c"], seed=seed)
        draws = []
        for _ in range(50):
            domain = mixer.sample()
            mixer.update(domain, 1.0 + domain)
            draws.append(domain)
        return draws

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_policy_explores_and_follows_the_loss() -> None:
    mixer = OnlineDataMixing(4, seed=0)
    counts = np.zeros(4)
    for _ in range(3000):
        policy = mixer.policy()
        eps = mixer.exploration(mixer.step)
        assert math.isclose(policy.sum(), 1.0, rel_tol=1e-12) and (policy >= eps - 1e-15).all()
        domain = mixer.sample()
        counts[domain] += 1
        mixer.update(domain, [2.0, 2.0, 2.0, 3.0][domain])  # domain 3 stays hardest
    assert counts[3] > counts[:3].max()


def test_bad_updates() -> None:
    mixer = OnlineDataMixing(["x", "y"])
    with pytest.raises(InvalidArgumentError, match="unknown domain"):
        mixer.update("z", 1.0)
    with pytest.raises(InvalidArgumentError, match="finite"):
        mixer.update(0, float("nan"))
    with pytest.raises(InvalidArgumentError, match="alpha"):
        OnlineDataMixing(2, alpha=1.0)
