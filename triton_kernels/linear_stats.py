"""The LM head fused with the per-token statistics: ``hidden @ weight.T`` is never materialised.

``linear_token_stats_triton(hidden, weight, targets)`` returns exactly the :class:`TokenStats` of
``token_stats(hidden @ weight.T + bias, targets)`` (same definitions, ignore_index handling,
softcap, temperature and NaN for out-of-range targets; see ``token_stats.py``) from tiles of
``hidden x weight^T`` computed with ``tl.dot`` (bf16/fp16 operands, fp32 accumulation; fp32 inputs
are multiplied in full fp32), so its extra memory is O(N x splits) instead of N x V.
``linear_weighted_nll_triton`` is the training loss ``sum_t w_t * (nll_t + z_loss * lse_t^2)``
over the tokens that are not ignored, with gradients for ``hidden``, ``weight`` and ``weights``.
The ``*_reference`` functions are the plain-torch definitions with the same signatures, chunked
over tokens so their memory stays bounded; ``linear_token_stats_torch`` is the fast torch
implementation of the statistics, the CPU backend (one matrix product per cache-sized chunk of
tokens, reduced in place by ``token_stats.RowSums``).

Forward kernel (kernels.md section 8.3). The grid is (row tiles x V splits); a program owns
``block_n`` rows and one split of the vocabulary and walks it ``block_v`` columns at a time: a
``tl.dot`` loop over D gives the fp32 logits tile, to which the bias, softcap and temperature are
applied before the padded columns are masked to -inf; the tile then updates per-row running
statistics with the closed-form rescaling of ``token_stats`` (max ``m``, base-2 sums ``s0``,
``s1``, ``s2``, ``sx``, first argmax) and, when a row's target falls in the tile, its logit is
read out of the tile. The partial states go to an fp32 ``[6, N * splits]`` buffer that
``token_stats``' merge kernel combines in a fixed order. The programs of a wave cover a few row
tiles and several splits, so that the hidden and weight tiles they walk together stay in L2
(``_grid_shape``). No atomics, no host synchronisation: deterministic and CUDA-graph capturable.

Gradients. ``loss = sum_t c_t * (lse_t - z_{t,y_t} + z_loss * lse_t^2)`` with ``c_t = w_t`` (0
for ignored tokens) has ``dloss/dz_{t,j} = c_t * (p_{t,j} * (1 + 2 z_loss lse_t) - [j = y_t])``.
They are formed in the forward, from the very logits the loss is computed from, one chunk of
tokens at a time (section 6b's 6NDV scheme; Liger's FLCE does the same): the forward kernel
also stores the chunk's fp32 logits, a second kernel turns them into ``dz`` (in the operand dtype)
once the chunk's rows are merged, and two GEMMs give ``grad_hidden[chunk] = dz @ weight`` (one
complete reduction over V inside cuBLAS, fp32 accumulators) and ``grad_weight += dz^T @ hidden[chunk]``
(a Triton GEMM whose fp32 accumulator tile starts from the previous chunks' sum). Each element
of ``grad_weight`` is reduced by one program, over the chunk's tokens in order and then chunk
after chunk, in fp32, and rounded to the weight's dtype once; cuBLAS's GEMM is run-to-run
reproducible on a stream: the gradients are bitwise reproducible, with no atomics. Recomputing
the logits in ``backward`` instead would add 2NDV (8NDV in all: 90.7 ms at N=16384, D=4096,
V=128256 at the measured 759 TFLOP/s bf16 ceiling, above the 85 ms target), and keeping all of
them is the N x V memory this module avoids. The price is memory while a chunk is processed:
its fp32 logits and their gradient (2 GiB by default) and the fp32 ``grad_weight`` (V x D x 4
bytes). ``backward`` only scales the stored gradients by the incoming gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.utils.checkpoint import checkpoint

from tokensieve.exceptions import InvalidArgumentError

from .results import TokenStats
from .token_stats import (
    KERNEL_DTYPES,
    LOG2E,
    REFERENCE_CHUNK_ELEMENTS,
    REFERENCE_DTYPES,
    RowSums,
    _capped_logits,
    _token_stats_merge_kernel,
    check_scales,
    compute_dtype_of,
    ignored_or_raise,
    interpreted,
    merge_launch,
    reference_rows,
)

__all__ = [
    "LinearLaunch",
    "check_linear_args",
    "default_launch",
    "linear_token_stats_reference",
    "linear_token_stats_torch",
    "linear_token_stats_triton",
    "linear_weighted_nll_reference",
    "linear_weighted_nll_triton",
]

LOG2E_K = tl.constexpr(LOG2E)  # a global a kernel reads must be a constexpr instance
#: Bytes of per-chunk buffers (fp32 logits + their gradient) the training path allows itself.
DEFAULT_CHUNK_BYTES = 2 << 30


# ---------------------------------------------------------------------------------------------
# arguments


def check_linear_args(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None,
    shift: bool,
    dtypes: tuple[torch.dtype, ...],
) -> None:
    """Raises :class:`~tokensieve.exceptions.InvalidArgumentError` for shapes, dtypes or devices
    that neither implementation accepts. Never reads tensor values (no host synchronisation)."""
    names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
    if hidden.dtype not in dtypes:
        raise InvalidArgumentError(f"hidden must be one of {names}, got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise InvalidArgumentError(f"weight ({weight.dtype}) must have the dtype of hidden ({hidden.dtype})")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise InvalidArgumentError(f"targets must be an integer tensor, got {targets.dtype}")
    if weight.dim() != 2 or 0 in weight.shape:
        raise InvalidArgumentError(f"weight must be [V, D] with V, D > 0, got {tuple(weight.shape)}")
    if shift:
        if hidden.dim() != 3 or hidden.shape[:2] != targets.shape:
            raise InvalidArgumentError(
                f"shift=True needs hidden [B, T, D] and targets [B, T]; got hidden {tuple(hidden.shape)} "
                f"and targets {tuple(targets.shape)}"
            )
    elif hidden.dim() < 1 or hidden.shape[:-1] != targets.shape:
        raise InvalidArgumentError(
            f"hidden must be shaped [*targets.shape, D]; got hidden {tuple(hidden.shape)} "
            f"and targets {tuple(targets.shape)}"
        )
    if hidden.shape[-1] != weight.shape[1]:
        raise InvalidArgumentError(
            f"hidden size {hidden.shape[-1]} does not match weight [V, D] = {tuple(weight.shape)}"
        )
    if bias is not None:
        if bias.dtype not in dtypes:
            raise InvalidArgumentError(f"bias must be one of {names}, got {bias.dtype}")
        if bias.shape != weight.shape[:1]:
            raise InvalidArgumentError(
                f"bias must be shaped [V] = [{weight.shape[0]}], got {tuple(bias.shape)}"
            )
    for name, t in (("weight", weight), ("targets", targets), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            raise InvalidArgumentError(f"hidden is on {hidden.device} but {name} on {t.device}")


def _check_loss_args(targets: torch.Tensor, weights: torch.Tensor | None, z_loss: float) -> None:
    if weights is not None:
        if not weights.dtype.is_floating_point:
            raise InvalidArgumentError(f"weights must be a float tensor, got {weights.dtype}")
        if weights.shape != targets.shape:
            raise InvalidArgumentError(
                f"weights must be shaped like targets {tuple(targets.shape)}, got {tuple(weights.shape)}"
            )
        if weights.device != targets.device:
            raise InvalidArgumentError(f"targets are on {targets.device} but weights on {weights.device}")
    if not (math.isfinite(z_loss) and z_loss >= 0):
        raise InvalidArgumentError(f"z_loss must be finite and >= 0, got {z_loss}")


def _shifted(
    hidden: torch.Tensor, targets: torch.Tensor, shift: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
    """(hidden rows, their targets, the output shape): with ``shift`` position t of each sequence
    predicts token t + 1, so the last position has no target and the output is [B, T - 1]."""
    if shift:
        return hidden[:, :-1], targets[:, 1:], targets[:, 1:].shape
    return hidden, targets, targets.shape


# ---------------------------------------------------------------------------------------------
# torch reference


def linear_token_stats_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    shift: bool = False,
    compute_dtype: torch.dtype = torch.float32,
) -> TokenStats:
    """The plain-torch definition of :func:`linear_token_stats_triton`: ``token_stats`` of
    ``hidden @ weight.T + bias`` in ``compute_dtype`` (float32 or float64), the logits materialised
    for a chunk of tokens at a time (``weight`` is converted to ``compute_dtype`` once). Raises
    :class:`~tokensieve.exceptions.TargetOutOfRangeError` (a host synchronisation)."""
    check_linear_args(hidden, weight, targets, bias, shift, REFERENCE_DTYPES)
    check_scales(temperature, softcap)
    if compute_dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"compute_dtype must be float32 or float64, got {compute_dtype}")
    rows_h, rows_t, shape = _shifted(hidden, targets, shift)
    vocab, dim = weight.shape
    flat_h = rows_h.reshape(-1, dim)
    flat_t = rows_t.reshape(-1).long()
    ignored = ignored_or_raise(flat_t, ignore_index, vocab)
    w = weight.to(compute_dtype)
    b = None if bias is None else bias.to(compute_dtype)
    step = max(1, REFERENCE_CHUNK_ELEMENTS // vocab)
    parts = []
    for i in range(0, flat_h.shape[0], step):
        logits = flat_h[i : i + step].to(compute_dtype) @ w.T
        if b is not None:
            logits = logits + b
        parts.append(
            reference_rows(
                logits, flat_t[i : i + step], ignored[i : i + step], temperature, softcap, compute_dtype
            )
        )
    if not parts:
        empty = flat_h.new_empty(0, dtype=compute_dtype)
        parts = [TokenStats._make([*([empty] * 6), empty.long()])]
    return TokenStats._make(torch.cat(column).reshape(shape) for column in zip(*parts, strict=True))


@torch.no_grad()
def linear_token_stats_torch(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    shift: bool = False,
) -> TokenStats:
    """:func:`linear_token_stats_reference`'s statistics computed for speed (the CPU backend):
    for each chunk of tokens one matrix product writes the logits into the buffer of a
    :class:`~.token_stats.RowSums`, which reduces them in place while they are in the cache. In
    float64 for float64 inputs and fp32 otherwise (``weight`` and ``bias`` converted once);
    results in that dtype (``argmax`` int64). Raises
    :class:`~tokensieve.exceptions.TargetOutOfRangeError` (a host synchronisation)."""
    check_linear_args(hidden, weight, targets, bias, shift, REFERENCE_DTYPES)
    check_scales(temperature, softcap)
    rows_h, rows_t, shape = _shifted(hidden, targets, shift)
    vocab, dim = weight.shape
    flat_h = rows_h.reshape(-1, dim)
    flat_t = rows_t.reshape(-1).long()
    ignored = ignored_or_raise(flat_t, ignore_index, vocab)
    dtype = compute_dtype_of(hidden)
    w_t = weight.to(dtype).T
    # a -inf bias entry becomes the floor RowSums needs (finite, still without mass)
    b = None if bias is None else bias.to(dtype).clamp(min=RowSums.FLOOR)
    sums = RowSums(flat_h.shape[0], vocab, dtype, hidden.device, temperature, softcap)
    for start, stop, buffer in sums.chunks():
        h = flat_h[start:stop].to(dtype)
        if b is None:
            torch.matmul(h, w_t, out=buffer)
        else:
            torch.addmm(b, h, w_t, out=buffer)
        sums.reduce(start, stop, flat_t[start:stop], ignored[start:stop])
    return sums.result(ignored, shape)


def linear_weighted_nll_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    *,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The plain-torch definition of :func:`linear_weighted_nll_triton`, differentiable with
    autograd: ``sum_t w_t * (nll_t + z_loss * lse_t^2)`` over the tokens whose target is not
    ``ignore_index``, a ``compute_dtype`` scalar. Each chunk of tokens runs under activation
    checkpointing, so autograd keeps no logits between the forward and the backward and the
    backward rebuilds them one chunk at a time. Raises
    :class:`~tokensieve.exceptions.TargetOutOfRangeError` (a host synchronisation)."""
    check_linear_args(hidden, weight, targets, None, False, REFERENCE_DTYPES)
    _check_loss_args(targets, weights, z_loss)
    if compute_dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"compute_dtype must be float32 or float64, got {compute_dtype}")
    vocab, dim = weight.shape
    flat_h = hidden.reshape(-1, dim)
    flat_t = targets.reshape(-1).long()
    ignored = ignored_or_raise(flat_t, ignore_index, vocab)
    flat_w = torch.ones_like(flat_t, dtype=compute_dtype) if weights is None else weights.reshape(-1)

    def chunk_loss(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, wt: torch.Tensor, skip: torch.Tensor):
        logits = h.to(compute_dtype) @ w.to(compute_dtype).T
        lse = torch.logsumexp(logits, dim=-1)
        nll = lse - logits.gather(1, torch.where(skip, 0, t)[:, None])[:, 0]
        return torch.where(skip, 0.0, wt.to(compute_dtype) * (nll + z_loss * lse * lse)).sum()

    step = max(1, REFERENCE_CHUNK_ELEMENTS // vocab)
    total = flat_h.new_zeros((), dtype=compute_dtype)
    for i in range(0, flat_h.shape[0], step):
        chunk = (
            flat_h[i : i + step],
            weight,
            flat_t[i : i + step],
            flat_w[i : i + step],
            ignored[i : i + step],
        )
        total = total + checkpoint(chunk_loss, *chunk, use_reentrant=False)
    return total


# ---------------------------------------------------------------------------------------------
# Triton kernels


@triton.jit
def _linear_stats_partial_kernel(
    hidden_ptr,
    weight_ptr,
    bias_ptr,
    targets_ptr,
    part_ptr,  # fp32 [6, n_rows * n_splits]: m, s0, s1, s2, sx (as token_stats), target logit
    part_arg_ptr,  # int32 [n_rows * n_splits]
    logits_ptr,  # fp32 [n_rows, vocab]: the softcapped logits, when STORE_LOGITS
    n_rows,
    vocab,
    dim,
    rows_per_seq,  # row r is hidden[r // rows_per_seq, r % rows_per_seq] (shift=True skips a row)
    stride_seq,
    stride_row,
    stride_w,
    n_row_tiles,
    group_rows,
    split_size,
    scale,
    softcap,
    softcap_scale,
    HAS_BIAS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    FULL_STATS: tl.constexpr,  # False: only m, s0 and the target logit (the loss needs no more)
    STORE_LOGITS: tl.constexpr,
    UPCAST: tl.constexpr,  # bf16 operands turned into fp32 (the interpreter's bf16 tl.dot is wrong)
    EVEN_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # programs run in groups of group_rows row tiles x all splits (about one wave): together they
    # hold group_rows hidden tiles and n_splits weight tiles in L2 while they walk the vocabulary
    pid = tl.program_id(0)
    n_splits = tl.num_programs(0) // n_row_tiles
    in_group = group_rows * n_splits
    first_tile = (pid // in_group) * group_rows
    tiles_here = tl.minimum(n_row_tiles - first_tile, group_rows)
    split = (pid % in_group) // tiles_here
    rows = (first_tile + (pid % in_group) % tiles_here).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_live = rows < n_rows
    # rows past the end re-read the last row (no masks in the D loop); their results are dropped
    safe_rows = tl.minimum(rows, n_rows - 1)
    target = tl.load(targets_ptr + safe_rows).to(tl.int64)
    dk = tl.arange(0, BLOCK_D)
    h_ptrs = (
        hidden_ptr
        + ((safe_rows // rows_per_seq) * stride_seq + (safe_rows % rows_per_seq) * stride_row)[:, None]
    )
    h_ptrs += dk[None, :]
    v_begin = split * split_size
    v_end = tl.minimum(v_begin + split_size, vocab)

    m = tl.full([BLOCK_N], -float("inf"), tl.float32)
    arg = tl.zeros([BLOCK_N], tl.int32) + v_begin
    s0 = tl.zeros([BLOCK_N], tl.float32)
    s1 = tl.zeros([BLOCK_N], tl.float32)
    s2 = tl.zeros([BLOCK_N], tl.float32)
    sx = tl.zeros([BLOCK_N], tl.float32)
    c_target = tl.zeros([BLOCK_N], tl.float32)
    # flattened with the D loop into one pipelined loop: the next tile's operands are being copied
    # into shared memory while this tile's statistics are computed
    for v0 in tl.range(v_begin, v_end, BLOCK_V, flatten=True):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_live = cols < v_end
        w_ptrs = weight_ptr + tl.minimum(cols, vocab - 1).to(tl.int64)[None, :] * stride_w + dk[:, None]
        acc = tl.zeros([BLOCK_N, BLOCK_V], tl.float32)
        for k in range(0, dim, BLOCK_D):
            if EVEN_D:
                h = tl.load(h_ptrs + k)
                w = tl.load(w_ptrs + k)
            else:
                h = tl.load(h_ptrs + k, mask=(k + dk)[None, :] < dim, other=0.0)
                w = tl.load(w_ptrs + k, mask=(k + dk)[:, None] < dim, other=0.0)
            if UPCAST:
                h = h.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(h, w, acc, input_precision=DOT_PRECISION)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + cols, mask=col_live, other=0.0).to(tl.float32)[None, :]
        # padded columns are masked after the softcap, which would otherwise make them -softcap
        c = tl.where(
            col_live[None, :], _capped_logits(acc, softcap, softcap_scale, HAS_SOFTCAP), -float("inf")
        )
        if STORE_LOGITS:
            tl.store(
                logits_ptr + rows[:, None] * vocab + cols[None, :],
                c,
                mask=row_live[:, None] & col_live[None, :],
            )
        tile_max, tile_arg = tl.max(c, 1, return_indices=True, return_indices_tie_break_left=True)
        arg = tl.where(tile_max > m, v0 + tile_arg, arg)  # ties keep the earlier tile: first index
        new_m = tl.maximum(m, tile_max)
        # token_stats' closed-form merge rule, moving each row's reference point up to new_m
        delta = tl.where(m > -float("inf"), (new_m - m) * scale, 0.0)
        f = tl.exp2(-delta)
        if FULL_STATS:
            s2 = f * (s2 - 2.0 * delta * s1 + delta * delta * s0)
            s1 = f * (s1 - delta * s0)
            sx = f * f * sx
        s0 = f * s0
        m = new_m
        d = (c - tl.where(m > -float("inf"), m, 0.0)[:, None]) * scale
        e = tl.exp2(d)
        s0 += tl.sum(e, 1)
        if FULL_STATS:
            d = tl.where(e > 0.0, d, 0.0)  # -inf logits carry no mass (and would give -inf * 0)
            ed = e * d
            s1 += tl.sum(ed, 1)
            s2 += tl.sum(ed * d, 1)
            sx += tl.sum(e * e, 1)
        # the target logit out of the tile; most tiles hold no row's target and skip the select
        in_tile = (target >= v0) & (target < v0 + BLOCK_V)
        if tl.max(in_tile.to(tl.int32), 0) > 0:
            c_target += tl.sum(tl.where(cols[None, :] == target[:, None], c, 0.0), 1)

    out = rows * n_splits + split
    n_parts = n_rows * n_splits
    tl.store(part_ptr + out, m, mask=row_live)
    tl.store(part_ptr + n_parts + out, s0, mask=row_live)
    tl.store(part_ptr + 2 * n_parts + out, s1, mask=row_live)
    tl.store(part_ptr + 3 * n_parts + out, s2, mask=row_live)
    tl.store(part_ptr + 4 * n_parts + out, sx, mask=row_live)
    tl.store(part_ptr + 5 * n_parts + out, c_target, mask=row_live)
    tl.store(part_arg_ptr + out, arg, mask=row_live)


@triton.jit
def _nll_grad_logits_kernel(
    logits_ptr,  # fp32 [n_rows, vocab]
    grad_ptr,  # [n_rows, vocab] in the operand dtype
    targets_ptr,
    coef_ptr,  # fp32 per-token weight, 0 for ignored tokens
    row_max_ptr,
    max_logprob_ptr,  # -log s0: with row_max, p = exp(z - row_max + max_logprob)
    lse_ptr,
    n_rows,
    vocab,
    two_z_loss,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_live = rows < n_rows
    live = row_live[:, None] & (cols < vocab)[None, :]
    m = tl.load(row_max_ptr + rows, mask=row_live, other=0.0)
    max_logprob = tl.load(max_logprob_ptr + rows, mask=row_live, other=0.0)
    lse = tl.load(lse_ptr + rows, mask=row_live, other=0.0)
    coef = tl.load(coef_ptr + rows, mask=row_live, other=0.0)
    target = tl.load(targets_ptr + rows, mask=row_live, other=-1).to(tl.int64)
    offs = rows[:, None] * vocab + cols[None, :]
    z = tl.load(logits_ptr + offs, mask=live, other=-float("inf"))
    # both terms relative to the row maximum: no cancellation at large common logit offsets
    p = tl.exp2((z - m[:, None] + max_logprob[:, None]) * LOG2E_K)
    one_hot = tl.where(cols[None, :] == target[:, None], 1.0, 0.0)
    grad = coef[:, None] * (p * (1.0 + two_z_loss * lse)[:, None] - one_hot)
    # rounded to nearest on a GPU (the interpreter truncates to bf16)
    tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=live)


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,  # fp32 [M, N], contiguous rows
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    ACCUMULATE: tl.constexpr,  # c += a @ b, else c = a @ b
    UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    # grouped order: GROUP_M row tiles of c run together over the same b column tiles (L2 reuse)
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    in_group = GROUP_M * tiles_n
    first_m = (pid // in_group) * GROUP_M
    group_m = tl.minimum(tl.cdiv(M, BLOCK_M) - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_m
    pid_n = (pid % in_group) // group_m
    rm = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    # masked, not clamped: a clamped index hides the contiguity that vectorised, asynchronous
    # (pipelined) copies need when the contiguous dimension is M or N (dz^T is M-major)
    a_ptrs = a_ptr + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b_ptr + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    m_live = rm < M
    n_live = rn < N
    c_ptrs = c_ptr + rm[:, None] * N + rn[None, :]
    live = m_live[:, None] & n_live[None, :]
    if ACCUMULATE:  # noqa: SIM108 (a compile-time branch)
        # the running sum is the accumulator's starting value: no second tile of registers
        acc = tl.load(c_ptrs, mask=live, other=0.0)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_ptrs, mask=m_live[:, None] & ((k + rk)[None, :] < K), other=0.0)
        b = tl.load(b_ptrs, mask=((k + rk)[:, None] < K) & n_live[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    tl.store(c_ptrs, acc, mask=live)


# ---------------------------------------------------------------------------------------------
# launching


def _power_of_two_at_least_16(name: str, value: int) -> None:
    if value < 16 or value & (value - 1):
        raise InvalidArgumentError(f"{name} must be a power of two >= 16 (tl.dot's minimum), got {value}")


@dataclass(frozen=True)
class LinearLaunch:
    """Tile sizes and launch settings of the fused kernels. ``block_*``: the forward kernel's
    tokens x vocabulary x hidden tile; ``dw_block_*``: the grad_weight GEMM's tile (rows of the
    weight x hidden size x tokens). Blocks are powers of two >= 16. Results are deterministic for
    a given setting."""

    block_n: int = 128
    block_v: int = 128
    block_d: int = 64
    num_warps: int = 8
    num_stages: int = 3
    dw_block_v: int = 128
    dw_block_d: int = 128
    dw_block_tokens: int = 64
    dw_num_warps: int = 8
    dw_num_stages: int = 3

    def __post_init__(self) -> None:
        for name in ("block_n", "block_v", "block_d", "dw_block_v", "dw_block_d", "dw_block_tokens"):
            _power_of_two_at_least_16(name, getattr(self, name))
        for name in ("num_warps", "dw_num_warps", "num_stages", "dw_num_stages"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {getattr(self, name)}")


def default_launch(dtype: torch.dtype) -> LinearLaunch:
    """The H100 settings: 128 x 128 x 64 tiles for 16-bit operands (wgmma, fp32 accumulators in
    registers, three stages of 32 KiB in shared memory); fp32 operands are multiplied on the FMA
    units and get smaller tiles."""
    if dtype == torch.float32:
        return LinearLaunch(
            block_n=64, block_d=32, num_stages=2, dw_block_v=64, dw_block_d=128, dw_block_tokens=32
        )
    return LinearLaunch()


def _kernel_device_or_raise(t: torch.Tensor) -> None:
    if t.device.type != "cuda" and not interpreted():
        raise InvalidArgumentError(
            f"the Triton kernels need CUDA tensors (got {t.device}); set TRITON_INTERPRET=1 before "
            "tokensieve.triton_kernels is imported to run them on CPU"
        )


def _dot_settings(dtype: torch.dtype) -> tuple[bool, str]:
    """(UPCAST, DOT_PRECISION): fp32 operands are multiplied in full fp32 ("ieee", not tf32)."""
    upcast = dtype == torch.bfloat16 and interpreted()
    return upcast, "ieee" if upcast or dtype == torch.float32 else "tf32"


def _grid_shape(device: torch.device, n_row_tiles: int, n_blocks: int, splits: int | None) -> tuple[int, int]:
    """(vocabulary splits, row tiles per group). A program holds one hidden tile (block_n x D,
    1 MiB at D = 4096) for its whole walk over the vocabulary, far more than shared memory, so the
    tiles come from L2: the programs running together must share few of them. A wave (one
    program per SM: the tiles use all registers) is therefore group_rows row tiles x splits, at
    least 8 splits (at D = 4096: 16 hidden + 8 weight tiles in L2, every weight tile read from
    HBM once per 16 row tiles), and enough splits that the last wave is 90% full."""
    if device.type != "cuda":
        return splits or 1, max(1, 4 // (splits or 1))  # any shape is correct; small groups for tests
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    if splits is None:
        splits = n_blocks
        for s in range(min(8, n_blocks), n_blocks + 1):
            programs = n_row_tiles * s
            if programs >= sms * 0.9 and programs / (triton.cdiv(programs, sms) * sms) >= 0.9:
                splits = s
                break
    return splits, max(1, sms // splits)


@dataclass(frozen=True)
class _Rows:
    """Where the token rows of a call are: row r is ``base[r // per_seq, r % per_seq]`` (the
    [B, T - 1] rows of a shifted [B, T, D] tensor, or the rows of a flat [N, D] one) and its
    target ``targets[r]`` (contiguous)."""

    base: torch.Tensor
    count: int
    per_seq: int
    stride_seq: int
    stride_row: int
    targets: torch.Tensor

    @staticmethod
    def flat(hidden: torch.Tensor, targets: torch.Tensor) -> _Rows:
        rows = hidden.reshape(-1, hidden.shape[-1])
        if rows.stride(1) != 1:
            rows = rows.contiguous()
        return _Rows(
            rows, rows.shape[0], max(1, rows.shape[0]), 0, rows.stride(0), targets.reshape(-1).contiguous()
        )

    @staticmethod
    def shifted(hidden: torch.Tensor, targets: torch.Tensor) -> _Rows:
        if hidden.stride(2) != 1:
            hidden = hidden.contiguous()
        b, t, _ = hidden.shape
        flat_t = targets[:, 1:].reshape(-1).contiguous()
        return _Rows(hidden, b * (t - 1), max(1, t - 1), hidden.stride(0), hidden.stride(1), flat_t)


def _fused_stats(
    rows: _Rows,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    argmax: torch.Tensor,
    row_max: torch.Tensor | None,
    *,
    ignore_index: int,
    temperature: float,
    softcap: float | None,
    launch: LinearLaunch,
    splits: int | None,
    full_stats: bool,
    logits: torch.Tensor | None = None,
) -> None:
    """Runs the forward kernel and the merge over ``rows`` (at least one), writing ``out``
    ([6, rows] fp32: logprob, lse, entropy, sum_p2, var_logp, max_logprob), ``argmax``, the
    merged row maximum into ``row_max`` and the fp32 logits into ``logits`` when given."""
    vocab, dim = weight.shape
    n_rows = rows.count
    n_row_tiles = triton.cdiv(n_rows, launch.block_n)
    n_blocks = triton.cdiv(vocab, launch.block_v)
    if splits is not None and splits < 1:
        raise InvalidArgumentError(f"splits must be >= 1, got {splits}")
    splits, group_rows = _grid_shape(weight.device, n_row_tiles, n_blocks, splits)
    split_size = triton.cdiv(n_blocks, min(splits, n_blocks)) * launch.block_v
    n_splits = triton.cdiv(vocab, split_size)
    parts = torch.empty((6, n_rows * n_splits), dtype=torch.float32, device=weight.device)
    part_args = torch.empty(n_rows * n_splits, dtype=torch.int32, device=weight.device)
    scale = LOG2E / float(temperature)
    cap = 0.0 if softcap is None else float(softcap)
    cap_scale = 0.0 if softcap is None else 2.0 * LOG2E / cap
    upcast, precision = _dot_settings(weight.dtype)
    _linear_stats_partial_kernel[(n_row_tiles * n_splits,)](
        rows.base,
        weight,
        weight if bias is None else bias,
        rows.targets,
        parts,
        part_args,
        parts if logits is None else logits,
        n_rows,
        vocab,
        dim,
        rows.per_seq,
        rows.stride_seq,
        rows.stride_row,
        weight.stride(0),
        n_row_tiles,
        group_rows,
        split_size,
        scale,
        cap,
        cap_scale,
        HAS_BIAS=bias is not None,
        HAS_SOFTCAP=softcap is not None,
        FULL_STATS=full_stats,
        STORE_LOGITS=logits is not None,
        UPCAST=upcast,
        EVEN_D=dim % launch.block_d == 0,
        DOT_PRECISION=precision,
        BLOCK_N=launch.block_n,
        BLOCK_V=launch.block_v,
        BLOCK_D=launch.block_d,
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
    )
    block_rows, split_block = merge_launch(n_splits)
    _token_stats_merge_kernel[(triton.cdiv(n_rows, block_rows),)](
        parts,  # not read: the target logits are in the partials
        rows.targets,
        parts,
        part_args,
        *out,
        argmax,
        argmax if row_max is None else row_max,
        n_rows,
        vocab,
        0,
        ignore_index,
        scale,
        1.0 / float(temperature),
        cap,
        cap_scale,
        n_splits,
        HAS_SOFTCAP=softcap is not None,
        TARGET_IN_PARTS=True,
        STORE_ROW_MAX=row_max is not None,
        BLOCK_ROWS=block_rows,
        SPLITS=split_block,
        num_warps=4,
    )


def _prepared_weight(weight: torch.Tensor) -> torch.Tensor:
    return weight if weight.stride(1) == 1 else weight.contiguous()


def linear_token_stats_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    shift: bool = False,
    launch: LinearLaunch | None = None,
    splits: int | None = None,
) -> TokenStats:
    """The Triton implementation (module docstring): ``hidden`` ``[*targets.shape, D]`` (or
    ``[B, T, D]`` with ``shift=True``, giving ``[B, T - 1]`` statistics), ``weight`` ``[V, D]`` of
    the same dtype (fp16/bf16/fp32), optional ``bias`` ``[V]``; fp32 results (``argmax`` int64).

    ``launch`` (tile sizes, warps, stages) and ``splits`` (vocabulary splits per row tile)
    override the defaults; results are deterministic for a given setting. Runs on CUDA tensors,
    or on CPU tensors when the module was imported under ``TRITON_INTERPRET=1``.
    """
    check_linear_args(hidden, weight, targets, bias, shift, KERNEL_DTYPES)
    check_scales(temperature, softcap)
    _kernel_device_or_raise(hidden)
    rows = _Rows.shifted(hidden, targets) if shift else _Rows.flat(hidden, targets)
    shape = _shifted(hidden, targets, shift)[2]
    out = torch.empty((6, rows.count), dtype=torch.float32, device=hidden.device)
    argmax = torch.empty(rows.count, dtype=torch.int64, device=hidden.device)
    if rows.count > 0:
        _fused_stats(
            rows,
            _prepared_weight(weight),
            None if bias is None else bias.contiguous(),
            out,
            argmax,
            None,
            ignore_index=ignore_index,
            temperature=temperature,
            softcap=softcap,
            launch=launch or default_launch(weight.dtype),
            splits=splits,
            full_stats=True,
        )
    return TokenStats._make([*(o.reshape(shape) for o in out), argmax.reshape(shape)])


def _chunk_rows(n_rows: int, vocab: int, operand_bytes: int, block: int, chunk_tokens: int | None) -> int:
    """Tokens per chunk: ``chunk_tokens``, or as many as fit DEFAULT_CHUNK_BYTES of fp32 logits
    and their gradient, in equal chunks rounded up to whole row tiles."""
    if chunk_tokens is None:
        chunk_tokens = max(block, DEFAULT_CHUNK_BYTES // (vocab * (4 + operand_bytes)) // block * block)
    elif chunk_tokens < 1:
        raise InvalidArgumentError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    n_chunks = triton.cdiv(n_rows, chunk_tokens)
    return min(n_rows, triton.cdiv(triton.cdiv(n_rows, n_chunks), block) * block)


def _loss_and_gradients(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None,
    ignore_index: int,
    z_loss: float,
    options: _NllOptions,
    need_hidden: bool,
    need_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(loss, per-token ``nll + z_loss * lse^2`` (0 where ignored), grad_hidden, grad_weight) for a
    unit incoming gradient; the gradients only where asked for."""
    rows = _Rows.flat(hidden, targets)
    flat_h = rows.base
    weight = _prepared_weight(weight)
    vocab, dim = weight.shape
    n = rows.count
    device = hidden.device
    launch = options.launch or default_launch(weight.dtype)
    ignored = rows.targets == ignore_index
    token_weights = torch.ones(n, device=device) if weights is None else weights.reshape(-1).float()
    coef = torch.where(ignored, 0.0, token_weights)
    out = torch.empty((6, n), dtype=torch.float32, device=device)
    argmax = torch.empty(n, dtype=torch.int64, device=device)
    row_max = torch.empty(n, dtype=torch.float32, device=device)
    grads = need_hidden or need_weight
    grad_hidden = torch.empty((n, dim), dtype=hidden.dtype, device=device) if need_hidden else None
    grad_weight = None
    if need_weight:  # fp32 accumulator; the first chunk overwrites it (zeros if there is none)
        grad_weight = (torch.empty if n else torch.zeros)((vocab, dim), dtype=torch.float32, device=device)
    chunk, logits, grad_logits = max(n, 1), None, None
    if grads and n > 0:
        chunk = _chunk_rows(n, vocab, weight.element_size(), launch.block_n, options.chunk_tokens)
        logits = torch.empty((chunk, vocab), dtype=torch.float32, device=device)
        grad_logits = torch.empty((chunk, vocab), dtype=weight.dtype, device=device)
    upcast, precision = _dot_settings(weight.dtype)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        m = r1 - r0
        part = _Rows(flat_h[r0:r1], m, m, 0, rows.stride_row, rows.targets[r0:r1])
        _fused_stats(
            part,
            weight,
            None,
            out[:, r0:r1],
            argmax[r0:r1],
            row_max[r0:r1],
            ignore_index=ignore_index,
            temperature=1.0,
            softcap=None,
            launch=launch,
            splits=options.splits,
            full_stats=False,
            logits=None if logits is None else logits[:m],
        )
        if logits is None or grad_logits is None:
            continue
        block_r, block_c = 4, 1024
        _nll_grad_logits_kernel[(triton.cdiv(m, block_r), triton.cdiv(vocab, block_c))](
            logits,
            grad_logits,
            part.targets,
            coef[r0:r1],
            row_max[r0:r1],
            out[5, r0:r1],
            out[1, r0:r1],
            m,
            vocab,
            2.0 * z_loss,
            BLOCK_R=block_r,
            BLOCK_C=block_c,
            num_warps=4,
        )
        dz = grad_logits[:m]
        if grad_hidden is not None:
            # the whole reduction over V is inside one GEMM (fp32 accumulators): cuBLAS on a GPU
            torch.matmul(dz, weight, out=grad_hidden[r0:r1])
        if grad_weight is not None:
            # grad_weight += dz^T @ hidden[chunk], fp32, chunk after chunk in order
            grid = (triton.cdiv(vocab, launch.dw_block_v) * triton.cdiv(dim, launch.dw_block_d),)
            _matmul_kernel[grid](
                dz,
                flat_h[r0:r1],
                grad_weight,
                vocab,
                dim,
                m,
                dz.stride(1),
                dz.stride(0),
                flat_h.stride(0),
                flat_h.stride(1),
                ACCUMULATE=r0 > 0,
                UPCAST=upcast,
                DOT_PRECISION=precision,
                BLOCK_M=launch.dw_block_v,
                BLOCK_N=launch.dw_block_d,
                BLOCK_K=launch.dw_block_tokens,
                GROUP_M=8,
                num_warps=launch.dw_num_warps,
                num_stages=launch.dw_num_stages,
            )
    lse = out[1]
    per_token = torch.where(ignored, 0.0, z_loss * lse * lse - out[0])
    loss = (coef * per_token).sum()
    if grad_weight is not None and weight.dtype != torch.float32:
        grad_weight = grad_weight.to(weight.dtype)
    if grad_hidden is not None:
        grad_hidden = grad_hidden.reshape(hidden.shape)
    return loss, per_token.reshape(targets.shape), grad_hidden, grad_weight


@dataclass(frozen=True)
class _NllOptions:
    launch: LinearLaunch | None
    splits: int | None
    chunk_tokens: int | None


class _LinearWeightedNLL(torch.autograd.Function):
    """The loss with its gradients formed in the forward (module docstring); ``backward`` scales
    them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, weights, ignore_index, z_loss, options):
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        loss, per_token, grad_hidden, grad_weight = _loss_and_gradients(
            hidden, weight, targets, weights, ignore_index, z_loss, options, need_hidden, need_weight
        )
        ctx.save_for_backward(grad_hidden, grad_weight, per_token)
        ctx.weights_dtype = None if weights is None else weights.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, per_token = ctx.saved_tensors
        need_weights = ctx.needs_input_grad[3]
        return (
            None if grad_hidden is None else grad_hidden * grad_loss,
            None if grad_weight is None else grad_weight * grad_loss,
            None,
            (per_token * grad_loss).to(ctx.weights_dtype) if need_weights else None,
            None,
            None,
            None,
        )


def linear_weighted_nll_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    *,
    launch: LinearLaunch | None = None,
    splits: int | None = None,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """The Triton implementation of ``sum_t w_t * (nll_t + z_loss * lse_t^2)`` over the tokens
    whose target is not ``ignore_index``: an fp32 scalar, differentiable with respect to
    ``hidden``, ``weight`` and ``weights`` (module docstring). Without gradients to compute (no
    input requires one, or grad mode is off) it is one pass of the forward kernel with no logits
    stored; with them, chunks of ``chunk_tokens`` tokens (by default as many as fit 2 GiB of fp32
    logits and their gradient). A target outside ``[0, V)`` that is not ``ignore_index`` makes the
    loss NaN (nothing synchronises with the host to check).
    """
    check_linear_args(hidden, weight, targets, None, False, KERNEL_DTYPES)
    _check_loss_args(targets, weights, z_loss)
    _kernel_device_or_raise(hidden)
    options = _NllOptions(launch, splits, chunk_tokens)
    needs_grad = (
        hidden.requires_grad or weight.requires_grad or (weights is not None and weights.requires_grad)
    )
    if not (torch.is_grad_enabled() and needs_grad):
        return _loss_and_gradients(
            hidden, weight, targets, weights, ignore_index, z_loss, options, False, False
        )[0]
    return _LinearWeightedNLL.apply(hidden, weight, targets, weights, ignore_index, z_loss, options)
