"""Contamination scores: Min-K% Prob (Shi et al., "Detecting Pretraining Data from Large Language
Models", ICLR 2024; reference swj0419/detect-pretrain-code @a5048f9, ``src/run.py``) and Min-K%++
(Zhang et al., ICLR 2025; reference zjysteven/mink-plus-plus @5596c65, ``run.py``).

For the predicted tokens ``t`` of a text (targets ``ids[1:]``) with ``lp_t = log p(x_t | x_<t)``:

* Min-K%: the mean of the ``k = floor(len * ratio)`` smallest ``lp_t`` (``int(len * ratio)`` in
  the reference; ``k = 0`` gives NaN, as the mean of nothing does there).
* Min-K%++: the same mean over ``z_t = (lp_t - mu_t) / sigma_t``, with ``mu_t = E_p[log p] =
  -H_t`` and ``sigma_t^2 = Var_p[log p]`` of the model's distribution at ``t`` (the kernels'
  ``entropy`` and ``var_logp``; the reference calls the variance "sigma" but divides by its
  square root, as here).

Higher means "more likely seen in training" (a member) for both. Sign conventions: this is the
paper's and Min-K%++'s sign; swj0419's code reports ``-`` this value (and ranks by its negation).
Where ``sigma_t^2 <= min_var`` the reference divides by zero; such tokens are left out of the
Min-K%++ reduction here (``k`` counts the remaining tokens).
"""

from __future__ import annotations

from typing import Any

import torch

from tokensieve.methods._torch import as_tensor, compute_dtype, optional_tensor

__all__ = ["min_k_percent", "min_k_plus_plus", "min_k_plus_plus_z"]


def min_k_percent(
    logprob: Any,
    ratio: float = 0.2,
    *,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    mask: Any = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """Min-K% Prob per document: the mean of its ``floor(count * ratio)`` smallest ``logprob``.

    Args:
        logprob: per-token ``log p(target)`` (tensor or array; the kernels' ``logprob``).
        ratio: the k% of the paper, in [0, 1] (the paper's default, 20%).
        cu_seqlens, doc_ids, num_docs: the documents, as in :func:`tokensieve.kernels.segment_reduce`;
            without them all tokens are one document and a 0-d tensor comes back.
        mask: bool, ``False`` for tokens to leave out (ignored targets).

    Returns:
        ``[D]`` (fp32, float64 for float64 input); NaN where ``k = 0``.
    """
    from tokensieve import kernels

    lp = as_tensor(logprob, "logprob")
    return kernels.bottom_k_mean(
        lp,
        ratio,
        cu_seqlens=optional_tensor(cu_seqlens, "cu_seqlens"),
        doc_ids=optional_tensor(doc_ids, "doc_ids"),
        mask=optional_tensor(mask, "mask"),
        num_docs=num_docs,
        compute_dtype=compute_dtype(lp),
    )


def min_k_plus_plus_z(logprob: Any, entropy: Any, var_logp: Any) -> torch.Tensor:
    """Min-K%++'s per-token ``z_t = (lp_t + H_t) / sqrt(Var_p[log p])`` (``mu_t = -H_t``);
    ``inf``/NaN where the variance is 0."""
    lp = as_tensor(logprob, "logprob")
    dtype = compute_dtype(lp)
    mu = -as_tensor(entropy, "entropy").to(dtype)
    return (lp.to(dtype) - mu) / as_tensor(var_logp, "var_logp").to(dtype).sqrt()


def min_k_plus_plus(
    logprob: Any,
    entropy: Any,
    var_logp: Any,
    ratio: float = 0.2,
    *,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    mask: Any = None,
    num_docs: int | None = None,
    min_var: float = 1e-12,
) -> torch.Tensor:
    """Min-K%++ per document: the mean of its ``floor(count * ratio)`` smallest ``z_t``
    (:func:`min_k_plus_plus_z`), over the tokens with ``var_logp > min_var``.

    ``entropy`` and ``var_logp`` are the kernels' per-token statistics of the same positions as
    ``logprob``; the other arguments are those of :func:`min_k_percent`.
    """
    from tokensieve import kernels

    z = min_k_plus_plus_z(logprob, entropy, var_logp)
    live = as_tensor(var_logp, "var_logp") > min_var
    if mask is not None:
        live &= as_tensor(mask, "mask")
    return kernels.bottom_k_mean(
        torch.where(live, z, 0.0),
        ratio,
        cu_seqlens=optional_tensor(cu_seqlens, "cu_seqlens"),
        doc_ids=optional_tensor(doc_ids, "doc_ids"),
        mask=live,
        num_docs=num_docs,
        compute_dtype=z.dtype,
    )
