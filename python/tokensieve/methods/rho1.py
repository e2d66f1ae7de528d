"""Rho-1 / Selective Language Modeling: Lin et al., "Not All Tokens Are What You Need" (NeurIPS
2024, arXiv 2404.07965). microsoft/rho releases no training code; this follows the paper.

A reference model, trained on curated data, gives every token a loss ``L_RM(x_i)`` (computable
offline). At each training step the current model's token losses ``L_theta(x_i)`` give the excess
loss ``L_delta = L_theta - L_RM``; only the top ``k%`` of the batch's tokens by excess loss are
trained on:

    L_SLM(theta) = -(1 / (N k%)) sum_i I_k%(x_i) log P(x_i | x_<i; theta)

i.e. the mean loss over the selected tokens. The paper does not fix the rounding of ``k`` or the
ties: we take ``k = round(ratio * N_valid)`` (round half to even) over the non-ignored tokens of
the batch (or of each document, given ``cu_seqlens``/``doc_ids``) and a stable descending sort, so
the lower flat position wins a tie (:func:`tokensieve.kernels.top_k_token_mask`). The selection
is computed without gradients; the loss back-propagates through the selected tokens only.
"""

from __future__ import annotations

from typing import Any

import torch

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._torch import as_tensor, optional_tensor

__all__ = ["rho1_loss", "rho1_token_mask"]


def rho1_token_mask(
    loss: Any,
    reference_loss: Any,
    ratio: float = 0.6,
    *,
    mask: Any = None,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """``I_k%``: True for the ``round(ratio * N_valid)`` tokens of largest excess loss
    ``loss - reference_loss`` (module docstring).

    Args:
        loss: the training model's per-token loss (nats), any shape.
        reference_loss: the reference model's per-token loss, same shape.
        ratio: the fraction of tokens kept (the paper: 60% for 1B, 70% for 7B models).
        mask: bool, ``False`` for ignored tokens (never selected, not counted).
        cu_seqlens, doc_ids, num_docs: select per document instead of over the whole batch.

    Returns:
        A bool tensor shaped like ``loss``.
    """
    from tokensieve import kernels

    current = as_tensor(loss, "loss")
    reference = as_tensor(reference_loss, "reference_loss")
    if current.shape != reference.shape:
        raise InvalidArgumentError(f"loss {tuple(current.shape)} and reference_loss {tuple(reference.shape)}")
    with torch.no_grad():
        excess = current.detach().double() - reference.detach().double()
    return kernels.top_k_token_mask(
        excess,
        ratio,
        mask=optional_tensor(mask, "mask"),
        cu_seqlens=optional_tensor(cu_seqlens, "cu_seqlens"),
        doc_ids=optional_tensor(doc_ids, "doc_ids"),
        num_docs=num_docs,
    )


def rho1_loss(
    loss: torch.Tensor, reference_loss: Any, ratio: float = 0.6, *, mask: Any = None
) -> torch.Tensor:
    """``L_SLM``: the mean of ``loss`` over the tokens :func:`rho1_token_mask` selects in the
    batch; differentiable through ``loss``. With no token selected it is 0 (with zero
    gradients)."""
    selected = rho1_token_mask(loss, reference_loss, ratio, mask=mask)
    count = selected.sum()
    total = torch.where(selected, loss, torch.zeros_like(loss)).sum()
    return total / count.clamp(min=1)
