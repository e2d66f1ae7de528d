"""Token-level uncertainty aggregation: Gupta et al., "Language Model Cascades: Token-level
Uncertainty and Beyond" (ICLR 2024, arXiv 2404.10136). No reference code is released.

Per-token ``log p_t``: the log probability of the generated token under greedy decoding
(``max_logprob`` of the kernels) or, scoring given text, of the text's token (``logprob``, the
Min-K% input). Per-sequence scores, lower meaning more uncertain (defer to the larger model when a
score is below a threshold):

* Chow-Sum: ``sum_t log p_t`` (the sequence log probability; favours short sequences);
* Chow-Average: ``(1/T) sum_t log p_t``;
* Chow-Quantile-alpha: the ``alpha`` quantile of ``{log p_t}`` (0: the min, 0.5: the median).

The paper does not fix the quantile rule; this is numpy's default, ``linear``. The paper's
Post-Hoc-Quantile learns a small MLP on these scores at a grid of ``alpha``;
:func:`chow_features` builds that input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tokensieve.methods._torch import as_tensor, compute_dtype, optional_tensor

__all__ = ["chow_average", "chow_features", "chow_quantile", "chow_sum"]


def _document_args(cu_seqlens: Any, doc_ids: Any, mask: Any, num_docs: int | None) -> dict[str, Any]:
    return {
        "cu_seqlens": optional_tensor(cu_seqlens, "cu_seqlens"),
        "doc_ids": optional_tensor(doc_ids, "doc_ids"),
        "mask": optional_tensor(mask, "mask"),
        "num_docs": num_docs,
    }


def _reduce(logprob: Any, cu_seqlens: Any, doc_ids: Any, mask: Any, num_docs: int | None) -> Any:
    """The kernels' per-document count/sum/mean/...; without documents all tokens form one, and
    the results are 0-d."""
    from tokensieve import kernels

    lp = as_tensor(logprob, "logprob")
    args = _document_args(cu_seqlens, doc_ids, mask, num_docs)
    whole = args["cu_seqlens"] is None and args["doc_ids"] is None
    if whole:
        args["cu_seqlens"] = torch.tensor([0, lp.numel()], device=lp.device)
    # the Triton kernel (CUDA tensors) reads fp16/bf16/fp32; float64 stays on the torch path
    stats = kernels.segment_reduce(lp, backend="torch" if lp.dtype == torch.float64 else "auto", **args)
    return type(stats)(*(field[0] for field in stats)) if whole else stats


def chow_sum(
    logprob: Any,
    *,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    mask: Any = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """Chow-Sum per document: ``[D]``, or 0-d without documents (all tokens are one). ``mask``
    False drops a token; the document arguments are those of
    :func:`tokensieve.kernels.segment_reduce`."""
    return _reduce(logprob, cu_seqlens, doc_ids, mask, num_docs).sum


def chow_average(
    logprob: Any,
    *,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    mask: Any = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """Chow-Average per document (NaN for a document without tokens)."""
    return _reduce(logprob, cu_seqlens, doc_ids, mask, num_docs).mean


def chow_quantile(
    logprob: Any,
    alpha: float | Sequence[float],
    *,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    mask: Any = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """Chow-Quantile-alpha per document: ``[D]`` for one ``alpha``, ``[D, len(alpha)]`` for
    several (numpy's ``linear`` rule; NaN for a document without tokens)."""
    from tokensieve import kernels

    lp = as_tensor(logprob, "logprob")
    args = _document_args(cu_seqlens, doc_ids, mask, num_docs)
    return kernels.quantiles(lp, alpha, compute_dtype=compute_dtype(lp), **args)


def chow_features(
    logprob: Any,
    alphas: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    *,
    cu_seqlens: Any = None,
    doc_ids: Any = None,
    mask: Any = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """``[D, 2 + len(alphas)]`` (``[2 + len(alphas)]`` without documents): Chow-Sum,
    Chow-Average and Chow-Quantile at each ``alpha``, the input of the paper's Post-Hoc-Quantile
    deferral model (its exact ``alpha`` grid is not known here; the default is an even grid)."""
    args = {"cu_seqlens": cu_seqlens, "doc_ids": doc_ids, "mask": mask, "num_docs": num_docs}
    stats = _reduce(logprob, **args)
    quantile = chow_quantile(logprob, list(alphas), **args)
    return torch.cat([stats.sum[..., None], stats.mean[..., None], quantile.to(stats.sum.dtype)], dim=-1)
