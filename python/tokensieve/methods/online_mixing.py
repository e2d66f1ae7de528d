"""Online Data Mixing (ODM): Albalak, Pan, Raffel, Wang 2023, "Efficient Online Data Mixing for
Language Model Pre-Training" (arXiv 2312.02406); reference alon-albalak/online-data-mixing
@edbfdad (``megatron/data/data_sampling_utils.py``, ``megatron/training.py``).

Which variant this is. :class:`OnlineDataMixing` implements the paper's algorithm as methods.md
§8 states it (EXP3 with a smoothed, importance-weighted loss reward; that statement is recalled
from the paper, not checked against its Algorithm 1). With K domains, ``R_i = 0`` and ``eps_0 =
1/K``, at each step ``t = 1, 2, ...``:

1. ``eps_t = min(1/K, sqrt(ln K / (K t)))``;
2. ``pi_t(i) = (1 - K eps_t) softmax(eps_{t-1} R)_i + eps_t``;
3. a domain ``i ~ pi_t`` gives the batch; its training loss ``L`` (mean token NLL) is the reward,
   so domains whose loss is high are drawn more, at no extra forward pass;
4. ``R_i <- alpha R_i + (1 - alpha) L / pi_t(i)`` for the drawn domain only (``alpha = 0.9``).

The reference repository has three other variants, which disagree with this and with each other:

* ``Exp3WeightUpdater.update``: the reward is ``L / 10``, and ``R`` is a *cumulative* sum of
  ``reward / pi`` (no smoothing); ``eps`` is updated after the reward, then the same softmax
  mixture, renormalised.
* ``SmoothedMeanWeightUpdater.update``: ``R_i <- alpha R_i + (1 - alpha) exp(L)``, with no
  ``1/pi`` importance weight, then the softmax mixture.
* ``SmoothedMeanWeightUpdater.group_update`` (used by ``train_mixed_minibatch``, one domain per
  micro-batch): ``eps`` first, then for each domain in the global batch ``R_i <- alpha R_i + (1 -
  alpha) exp(mean loss of its micro-batches)``, and a *linear* normalisation ``w_i = (1 - K eps)
  R_i / sum_j R_j + eps`` (``eps_{t-1}`` cancels). The README calls this one "the data mixing
  implementation described in the paper".

The reference also updates only every ``update_frequency`` steps after ``warmup_steps``; here
every :meth:`~OnlineDataMixing.update` is a step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError

__all__ = ["OnlineDataMixing"]


class OnlineDataMixing:
    """The paper's ODM bandit (module docstring) over K domains.

    Args:
        domains: the number of domains, or their names (domains are indices into ``names``;
            :meth:`update` also takes a name).
        alpha: the smoothing factor of the reward (0.9 in the paper and the reference).
        seed: seeds :meth:`sample`'s generator (numpy PCG64): same seed, same draws.

    Use::

        mixer = OnlineDataMixing(["books", "code", "web"])
        for step in range(steps):
            domain = mixer.sample()
            loss = train_step(next(batches[domain]))
            mixer.update(domain, loss)
    """

    def __init__(self, domains: int | Sequence[str], *, alpha: float = 0.9, seed: int = 0) -> None:
        self.names: tuple[str, ...] = (
            tuple(f"domain {i}" for i in range(domains)) if isinstance(domains, int) else tuple(domains)
        )
        if len(self.names) < 1:
            raise InvalidArgumentError("at least one domain is needed")
        if not 0.0 <= alpha < 1.0:
            raise InvalidArgumentError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self.step = 1
        """The step ``t`` whose policy :meth:`policy` gives (1-based)."""
        self.rewards = np.zeros(len(self.names))
        """The smoothed, importance-weighted rewards ``R``."""
        self._rng = np.random.default_rng(seed)

    @property
    def num_domains(self) -> int:
        """K."""
        return len(self.names)

    def exploration(self, t: int) -> float:
        """``eps_t = min(1/K, sqrt(ln K / (K t)))``, with ``eps_0 = 1/K``."""
        k = self.num_domains
        return 1.0 / k if t == 0 else min(1.0 / k, math.sqrt(math.log(k) / (k * t)))

    def policy(self) -> npt.NDArray[np.float64]:
        """``pi_t``: the sampling distribution of the current step."""
        k, t = self.num_domains, self.step
        logits = self.exploration(t - 1) * self.rewards
        gibbs = np.exp(logits - logits.max())
        eps = self.exploration(t)
        return (1.0 - k * eps) * gibbs / gibbs.sum() + eps

    def sample(self) -> int:
        """Draws the current step's domain (an index) from :meth:`policy`."""
        return int(self._rng.choice(self.num_domains, p=self.policy()))

    def update(self, domain: int | str, loss: float) -> None:
        """Feeds back the training loss of the current step's batch, drawn from ``domain`` (an
        index or a name), and moves to the next step."""
        if isinstance(domain, str):
            if domain not in self.names:
                raise InvalidArgumentError(f"unknown domain {domain!r}; the domains are {self.names}")
            domain = self.names.index(domain)
        if not 0 <= domain < self.num_domains:
            raise InvalidArgumentError(f"domain must be in [0, {self.num_domains}), got {domain}")
        if not math.isfinite(loss):
            raise InvalidArgumentError(f"the loss must be finite, got {loss}")
        chance = self.policy()[domain]
        self.rewards[domain] = self.alpha * self.rewards[domain] + (1.0 - self.alpha) * loss / chance
        self.step += 1
