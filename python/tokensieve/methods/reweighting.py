"""Loss-based sample reweighting: Sow et al., "Dynamic Loss-Based Sample Reweighting for Improved
Large Language Model Pretraining" (ICLR 2025); reference sowmaster/Sample-Level-Loss-Reweighting-
ICLR-2025 @edd6f15 (``src/trainer.py``: ``g_func``, ``h_func``, ``f_func_*``, ``training_step``).

Over the **global** batch (all data-parallel ranks: gather the per-sample losses first):

1. per-sample loss ``l_i``: the mean token loss over the sample's active tokens;
2. ``h_i = 2 delta l_i / (l_max - l_min) - delta (l_max + l_min) / (l_max - l_min)``, in
   ``[-delta, delta]`` (both denominators ``max(l_max - l_min, 1e-6)``; ``delta = 1``);
3. a strategy ``f(h)``:

   ============  ==============  ========================  ==================================
   strategy      reference key   f(h)                      favours
   ============  ==============  ========================  ==================================
   quadratic     ``mid``         ``1 - h^2 / delta^2``     medium losses
   upper         ``upper``       ``0.5 h + 0.5 delta``     high losses (linear)
   linupper      ``linupper``    ``min(h + delta, delta)`` all but the low losses
   extremes      ``extremes``    ``|h|``                   both tails
   ============  ==============  ========================  ==================================

4. weights ``w_i = softmax(f / r)_i`` with temperature ``r`` (the reference's ``kl_reg``: 0.4 in
   its GPT-2 configs, 1.0 by default), the maximiser of ``sum w_i f_i - r KL(w || uniform)``,
   computed without gradients;
5. loss ``sum_i w_i l_i`` (uniform weights give the plain mean).

The reference trains with the plain token-weighted mean for its first ``burnout_steps`` (1000),
then reweights; the "uniform" strategy of its README is not uniform (use the plain mean).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._torch import as_tensor, optional_tensor

__all__ = ["STRATEGIES", "normalize_losses", "per_sample_loss", "reweighted_loss", "sample_weights"]

Strategy = Literal["quadratic", "upper", "linupper", "extremes", "mid"]

_F: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "quadratic": lambda h, delta: 1.0 - h**2 / delta**2,
    "upper": lambda h, delta: 0.5 * h + 0.5 * delta,
    "linupper": lambda h, delta: torch.clamp(h + delta, max=delta),
    "extremes": lambda h, delta: h.abs(),
}
_F["mid"] = _F["quadratic"]  # the reference's name
#: The strategies (``"mid"`` is accepted as the reference's name of ``"quadratic"``).
STRATEGIES: tuple[str, ...] = ("quadratic", "upper", "linupper", "extremes")


def per_sample_loss(token_loss: Any, mask: Any = None) -> torch.Tensor:
    """``[B]`` mean of ``token_loss`` (``[B, T]``) over each sample's active tokens (``mask``
    True; all tokens without a mask). A sample without active tokens gets NaN."""
    loss = as_tensor(token_loss, "token_loss")
    if loss.ndim != 2:
        raise InvalidArgumentError(f"token_loss must be [B, T], got {tuple(loss.shape)}")
    active = optional_tensor(mask, "mask")
    if active is None:
        return loss.mean(dim=1)
    return torch.where(active, loss, torch.zeros_like(loss)).sum(dim=1) / active.sum(dim=1)


def normalize_losses(losses: Any, delta: float = 1.0) -> torch.Tensor:
    """``h``: the per-sample losses mapped linearly onto ``[-delta, delta]`` (module docstring)."""
    l = as_tensor(losses, "losses")  # noqa: E741 (the paper's name)
    if l.ndim != 1 or l.numel() == 0:
        raise InvalidArgumentError(f"losses must be a non-empty 1-D tensor, got shape {tuple(l.shape)}")
    if bool(l.isnan().any()):
        raise InvalidArgumentError("losses hold NaN (a sample without active tokens?)")
    if not delta > 0:
        raise InvalidArgumentError(f"delta must be > 0, got {delta}")
    low, high = l.min(), l.max()
    span = torch.clamp(high - low, min=1e-6)
    return 2 * delta * l / span - delta * (high + low) / span


def sample_weights(
    losses: Any, strategy: Strategy = "quadratic", temperature: float = 1.0, *, delta: float = 1.0
) -> torch.Tensor:
    """``w = softmax(f(h(losses)) / temperature)`` over the global batch, without gradients."""
    if strategy not in _F:
        raise InvalidArgumentError(f"strategy must be one of {STRATEGIES} (or 'mid'), got {strategy!r}")
    if not temperature > 0:
        raise InvalidArgumentError(f"temperature must be > 0, got {temperature}")
    with torch.no_grad():
        f = _F[strategy](normalize_losses(as_tensor(losses, "losses").detach(), delta), delta)
        return torch.softmax(f / temperature, dim=0)


def reweighted_loss(
    losses: torch.Tensor, strategy: Strategy = "quadratic", temperature: float = 1.0, *, delta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_i w_i l_i, w)`` for per-sample losses ``l`` (differentiable through ``l`` only).

    On one rank with the whole batch this is the reference's objective. With data parallelism,
    compute ``w`` with :func:`sample_weights` on the gathered losses of all ranks and
    ``world_size * sum_{local i} w_i l_i`` on each rank, so that averaging gradients gives
    ``sum_{all i} w_i l_i``.
    """
    weights = sample_weights(losses, strategy, temperature, delta=delta)
    return (weights * losses).sum(), weights
