"""Per-token statistics of a language model's distribution, and per-document reductions.

:func:`token_stats` reads ``[..., V]`` logits once and returns fp32 ``logprob`` (log p(target)),
``lse``, ``entropy``, ``sum_p2``, ``var_logp``, ``max_logprob`` and ``argmax`` per token: what
perplexity, bits-per-byte, PreSelect, perplexity correlations, CoLoR-Filter, Min-K%, Min-K%++,
EL2N, Rho-1 and cascades need. :func:`linear_token_stats` gives the same statistics straight from
the hidden states and the LM head, never materialising the ``N x V`` logits, and
:func:`linear_weighted_nll` is the matching training loss with per-token weights (Rho-1 masks,
loss reweighting) and z-loss, differentiable. :func:`segment_reduce` gives per-document count, sum, mean, min
and max; :func:`bottom_k_mean` (Min-K%), :func:`quantiles` (cascades) and
:func:`top_k_token_mask` (Rho-1) are the order statistics.

Backends: ``"triton"`` (the kernels in ``tokensieve.triton_kernels``; CUDA tensors, or CPU
tensors when those modules were imported under ``TRITON_INTERPRET=1``), ``"torch"`` (plain
torch on any device, fp32, or float64 for float64 inputs: :func:`token_stats` and
:func:`linear_token_stats` run the kernel's one-sweep algorithm on cache-sized chunks of rows, the
other functions their references) and ``"auto"`` (the default: Triton for CUDA tensors, torch
otherwise). The Triton path never synchronises with the
host, so it can be captured in a CUDA graph; the torch path checks values and raises.

Needs torch and triton (``pip install tokensieve[gpu]``).
"""

from __future__ import annotations

from typing import Literal

import torch

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.triton_kernels import linear_stats as _linear
from tokensieve.triton_kernels import segment_reduce as _segment
from tokensieve.triton_kernels import token_stats as _token
from tokensieve.triton_kernels.results import SegmentStats, TokenStats
from tokensieve.triton_kernels.segment_reduce import bottom_k_mean, quantiles, top_k_token_mask

__all__ = [
    "Backend",
    "SegmentStats",
    "TokenStats",
    "bottom_k_mean",
    "linear_token_stats",
    "linear_weighted_nll",
    "quantiles",
    "segment_reduce",
    "token_stats",
    "top_k_token_mask",
]

Backend = Literal["auto", "triton", "torch"]


def _use_triton(backend: Backend, tensor: torch.Tensor) -> bool:
    if backend == "auto":
        return tensor.device.type == "cuda"
    if backend in ("triton", "torch"):
        return backend == "triton"
    raise InvalidArgumentError(f'backend must be "auto", "triton" or "torch", got {backend!r}')


def token_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    backend: Backend = "auto",
) -> TokenStats:
    """Statistics of ``p = softmax(softcap * tanh(logits / softcap) / temperature)`` per token.

    Args:
        logits: ``[..., V]`` float16, bfloat16 or float32 (float64 on the torch backend). V is
            the full width the model emits, padded vocabulary rows included.
        targets: integer tensor of shape ``logits.shape[:-1]``: the next token of each position.
        ignore_index: targets equal to it get ``logprob = 0``; their other statistics are
            computed as for any token.
        temperature: divides the (softcapped) logits; > 0.
        softcap: ``None``, or the cap of Gemma-style ``softcap * tanh(x / softcap)``, applied
            before the temperature.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (module docstring).

    Returns:
        :class:`TokenStats` of tensors shaped like ``targets``: ``logprob``, ``lse``,
        ``entropy``, ``sum_p2``, ``var_logp`` (Var_p[log p]), ``max_logprob`` (fp32, float64 for
        float64 logits on the torch backend) and ``argmax`` (int64, the first maximum).

    Raises:
        InvalidArgumentError: bad shapes, dtypes, devices, temperature or softcap.
        TargetOutOfRangeError: (torch backend) a target outside ``[0, V)`` that is not
            ``ignore_index``. The Triton backend does not synchronise to check: such a token
            gets ``logprob = NaN``.
    """
    if _use_triton(backend, logits):
        return _token.token_stats_triton(
            logits, targets, ignore_index=ignore_index, temperature=temperature, softcap=softcap
        )
    return _token.token_stats_torch(
        logits, targets, ignore_index=ignore_index, temperature=temperature, softcap=softcap
    )


def linear_token_stats(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    shift: bool = False,
    backend: Backend = "auto",
) -> TokenStats:
    """:func:`token_stats` of the logits ``hidden @ weight.T + bias``, without materialising them.

    The Triton backend multiplies tiles of ``hidden`` and ``weight`` (fp16/bf16 operands on the
    tensor cores, fp32 accumulation) and folds each tile into the running statistics; its extra
    memory is a few fp32 values per token and vocabulary split, not ``N x V``. The torch backend
    materialises the logits a chunk of tokens at a time.

    Args:
        hidden: ``[*targets.shape, D]`` final hidden states (float16, bfloat16 or float32;
            float64 on the torch backend); with ``shift=True``, ``[B, T, D]``.
        weight: ``[V, D]`` LM head (output embedding), the dtype of ``hidden``.
        targets: integer tensor: the next token of each position, or with ``shift=True`` the
            ``[B, T]`` input ids (position t is scored on token t + 1).
        bias: optional ``[V]`` bias of the LM head.
        ignore_index, temperature, softcap: as in :func:`token_stats` (softcap then temperature
            apply to the biased logits).
        shift: score ``hidden[:, :-1]`` on ``targets[:, 1:]`` (the causal shift) without copying
            ``hidden``; the statistics are then ``[B, T - 1]``.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (module docstring).

    Returns:
        :class:`TokenStats` shaped like ``targets`` (``[B, T - 1]`` with ``shift=True``), with the
        dtypes and semantics of :func:`token_stats`.

    Raises:
        InvalidArgumentError: bad shapes, dtypes (``weight`` must match ``hidden``), devices,
            temperature or softcap.
        TargetOutOfRangeError: (torch backend) a target outside ``[0, V)`` that is not
            ``ignore_index``; the Triton backend gives ``logprob = NaN`` instead.
    """
    if _use_triton(backend, hidden):
        return _linear.linear_token_stats_triton(
            hidden,
            weight,
            targets,
            bias=bias,
            ignore_index=ignore_index,
            temperature=temperature,
            softcap=softcap,
            shift=shift,
        )
    return _linear.linear_token_stats_torch(
        hidden,
        weight,
        targets,
        bias=bias,
        ignore_index=ignore_index,
        temperature=temperature,
        softcap=softcap,
        shift=shift,
    )


def linear_weighted_nll(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """The training loss ``sum_t w_t * (nll_t + z_loss * lse_t^2)`` of the LM head, fused.

    ``nll_t = -log softmax(hidden_t @ weight.T)[targets_t]`` and ``lse_t`` its logsumexp; the
    sum runs over the tokens whose target is not ``ignore_index``. Divide by the token count (or
    the sum of the weights) for a mean. Differentiable with respect to ``hidden``, ``weight`` and
    ``weights``: on the Triton backend the gradients are formed while the loss is computed (from
    the same logits, one chunk of tokens at a time, never all ``N x V`` of them), accumulated in
    fp32 in a fixed order (bitwise reproducible), and ``backward`` scales them; under
    ``torch.no_grad()`` it is a single forward pass.

    Args:
        hidden: ``[*targets.shape, D]`` float16, bfloat16 or float32 (float64 on the torch backend).
        weight: ``[V, D]``, the dtype of ``hidden``.
        targets: integer tensor, the next token of each position.
        weights: optional float tensor shaped like ``targets``: per-token weights (a Rho-1
            selection mask, loss-based reweighting); ``None`` weighs every token 1.
        ignore_index: targets equal to it contribute nothing.
        z_loss: coefficient of the ``lse^2`` penalty (PaLM's z-loss), >= 0.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (module docstring).

    Returns:
        A 0-d fp32 tensor (float64 for float64 inputs on the torch backend).

    Raises:
        InvalidArgumentError: bad shapes, dtypes, devices, weights or z_loss.
        TargetOutOfRangeError: (torch backend) a target outside ``[0, V)`` that is not
            ``ignore_index``; on the Triton backend the loss is NaN instead.
    """
    if _use_triton(backend, hidden):
        return _linear.linear_weighted_nll_triton(hidden, weight, targets, weights, ignore_index, z_loss)
    return _linear.linear_weighted_nll_reference(
        hidden, weight, targets, weights, ignore_index, z_loss, compute_dtype=_token.compute_dtype_of(hidden)
    )


def segment_reduce(
    values: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_docs: int | None = None,
    backend: Backend = "auto",
) -> SegmentStats:
    """Per-document count, sum, mean, min and max of per-token ``values``.

    Args:
        values: float tensor of any shape (flattened in row-major order).
        cu_seqlens: ``[D + 1]`` nondecreasing offsets into the flat values: document ``d`` is
            ``values.flatten()[cu_seqlens[d]:cu_seqlens[d + 1]]``. Give this or ``doc_ids``.
        doc_ids: integer tensor shaped like ``values``: each token's document, in any order; ids
            outside ``[0, num_docs)`` (e.g. -1 for padding) belong to no document.
        mask: bool tensor shaped like ``values``; ``False`` drops a token (e.g.
            ``targets != ignore_index``).
        num_docs: the number of documents with ``doc_ids``; without it ``max(doc_ids) + 1`` is
            used, which synchronises with the host.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (module docstring).

    Returns:
        :class:`SegmentStats` of ``[D]`` tensors: ``count`` (int64), ``sum``, ``mean``, ``min``,
        ``max`` (fp32; float64 for float64 values on the torch backend). An empty document has
        ``count = 0``, ``sum = 0`` and NaN ``mean``/``min``/``max``. Deterministic on both
        backends (fixed summation order, no atomics).

    Raises:
        InvalidArgumentError: bad shapes, dtypes or devices; (torch backend) ``cu_seqlens`` that
            decrease or leave ``[0, N]``. The Triton backend clamps such offsets instead.
    """
    if _use_triton(backend, values):
        return _segment.segment_reduce_triton(
            values, cu_seqlens=cu_seqlens, doc_ids=doc_ids, mask=mask, num_docs=num_docs
        )
    return _segment.segment_reduce_reference(
        values,
        cu_seqlens=cu_seqlens,
        doc_ids=doc_ids,
        mask=mask,
        num_docs=num_docs,
        compute_dtype=_token.compute_dtype_of(values),
    )
