"""Per-document reductions of per-token values, and per-document order statistics.

Documents are given either by ``cu_seqlens`` (int, ``[D + 1]``, nondecreasing, within
``[0, N]``: document ``d`` is the flat tokens ``cu_seqlens[d]:cu_seqlens[d + 1]``) or by
``doc_ids`` (int, shaped like the values: the document of each token, in any order; tokens with
an id outside ``[0, num_docs)``, e.g. ``-1`` for padding, belong to no document). ``mask`` (bool,
shaped like the values) drops tokens (``False``) from every statistic.

* ``segment_reduce_triton`` (kernel) and ``segment_reduce_reference`` (torch, float64 when
  asked): per-document ``count`` (int64), ``sum``, ``mean``, ``min``, ``max``. A document without
  tokens has ``count = 0``, ``sum = 0`` and NaN ``mean``/``min``/``max``. The kernel runs one
  program per document summing in a fixed order (a strided per-lane sum, then a tree), with no
  atomics and no host synchronisation, so it is deterministic; with ``doc_ids`` a stable sort
  groups each document's tokens, keeping their order.
* ``bottom_k_mean``, ``quantiles`` and ``top_k_token_mask`` are torch only (sorting has no
  better kernel here); they run on any device and may synchronise with the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from tokensieve.exceptions import InvalidArgumentError

from .results import SegmentStats

__all__ = [
    "SegmentStats",
    "bottom_k_mean",
    "quantiles",
    "segment_reduce_reference",
    "segment_reduce_triton",
    "token_documents",
    "top_k_token_mask",
]

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
REFERENCE_DTYPES = (*KERNEL_DTYPES, torch.float64)


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def check_segment_args(
    values: torch.Tensor,
    cu_seqlens: torch.Tensor | None,
    doc_ids: torch.Tensor | None,
    mask: torch.Tensor | None,
    num_docs: int | None,
    dtypes: tuple[torch.dtype, ...],
) -> None:
    """Raises :class:`~tokensieve.exceptions.InvalidArgumentError` for arguments no
    implementation accepts. Reads no tensor values."""
    if values.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise InvalidArgumentError(f"values must be one of {names}, got {values.dtype}")
    if (cu_seqlens is None) == (doc_ids is None):
        raise InvalidArgumentError("give exactly one of cu_seqlens and doc_ids")
    if cu_seqlens is not None:
        if not _is_integer(cu_seqlens) or cu_seqlens.dim() != 1 or cu_seqlens.numel() == 0:
            raise InvalidArgumentError(
                f"cu_seqlens must be a non-empty 1-D integer tensor, got {cu_seqlens.dtype} "
                f"of shape {tuple(cu_seqlens.shape)}"
            )
        if num_docs is not None:
            raise InvalidArgumentError("num_docs goes with doc_ids (cu_seqlens already has D + 1 entries)")
    if doc_ids is not None and (not _is_integer(doc_ids) or doc_ids.shape != values.shape):
        raise InvalidArgumentError(
            f"doc_ids must be an integer tensor shaped like values {tuple(values.shape)}, got "
            f"{doc_ids.dtype} of shape {tuple(doc_ids.shape)}"
        )
    if num_docs is not None and num_docs < 0:
        raise InvalidArgumentError(f"num_docs must be >= 0, got {num_docs}")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != values.shape):
        raise InvalidArgumentError(
            f"mask must be a bool tensor shaped like values {tuple(values.shape)}, got {mask.dtype} "
            f"of shape {tuple(mask.shape)}"
        )
    for name, t in (("cu_seqlens", cu_seqlens), ("doc_ids", doc_ids), ("mask", mask)):
        if t is not None and t.device != values.device:
            raise InvalidArgumentError(f"values are on {values.device} but {name} on {t.device}")


def _resolve_num_docs(doc_ids: torch.Tensor, num_docs: int | None) -> int:
    """``num_docs``, or ``max(doc_ids) + 1`` (a host synchronisation) when it is not given."""
    if num_docs is not None:
        return num_docs
    return int(doc_ids.max()) + 1 if doc_ids.numel() else 0


def _check_cu_seqlens_values(cu_seqlens: torch.Tensor, n: int) -> None:
    """The value checks of ``cu_seqlens`` (host synchronisation; the kernel clamps instead)."""
    if bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()) or int(cu_seqlens[0]) < 0 or int(cu_seqlens[-1]) > n:
        raise InvalidArgumentError(f"cu_seqlens must be nondecreasing and within [0, {n}]")


def token_documents(
    n: int, cu_seqlens: torch.Tensor | None, doc_ids: torch.Tensor | None, num_docs: int | None
) -> tuple[torch.Tensor, int]:
    """The document of each of the ``n`` flat tokens (int64, ``-1`` for none) and the number of
    documents. Checks ``cu_seqlens`` values (a host synchronisation)."""
    if cu_seqlens is not None:
        cu = cu_seqlens.long()
        _check_cu_seqlens_values(cu, n)
        positions = torch.arange(n, device=cu.device)
        docs = torch.searchsorted(cu, positions, right=True) - 1
        inside = (positions >= cu[0]) & (positions < cu[-1])
        return torch.where(inside, docs, -1), cu.numel() - 1
    assert doc_ids is not None
    d = _resolve_num_docs(doc_ids, num_docs)
    ids = doc_ids.reshape(-1).long()
    return torch.where((ids >= 0) & (ids < d), ids, -1), d


# ---------------------------------------------------------------------------------------------
# torch reference


def segment_reduce_reference(
    values: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_docs: int | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> SegmentStats:
    """The torch definition of :func:`segment_reduce_triton` (module docstring), in
    ``compute_dtype`` (float32 or float64). Checks ``cu_seqlens`` values, raising
    :class:`~tokensieve.exceptions.InvalidArgumentError` (a host synchronisation)."""
    check_segment_args(values, cu_seqlens, doc_ids, mask, num_docs, REFERENCE_DTYPES)
    if compute_dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"compute_dtype must be float32 or float64, got {compute_dtype}")
    docs, d = token_documents(values.numel(), cu_seqlens, doc_ids, num_docs)
    live = docs >= 0
    if mask is not None:
        live &= mask.reshape(-1)
    seg = docs[live]
    v = values.reshape(-1)[live].to(compute_dtype)
    count = torch.bincount(seg, minlength=d)
    total = torch.zeros(d, dtype=compute_dtype, device=values.device).index_add_(0, seg, v)
    nan = torch.full((d,), float("nan"), dtype=compute_dtype, device=values.device)
    empty = count == 0
    return SegmentStats(
        count=count,
        sum=total,
        mean=torch.where(empty, nan, total / count.clamp(min=1)),
        min=nan.clone().scatter_reduce_(0, seg, v, "amin", include_self=False),
        max=nan.clone().scatter_reduce_(0, seg, v, "amax", include_self=False),
    )


# ---------------------------------------------------------------------------------------------
# Triton kernel


@triton.jit
def _segment_reduce_kernel(
    values_ptr,
    mask_ptr,
    order_ptr,
    bounds_ptr,
    count_ptr,
    sum_ptr,
    mean_ptr,
    min_ptr,
    max_ptr,
    n,
    HAS_MASK: tl.constexpr,
    HAS_ORDER: tl.constexpr,
    BLOCK: tl.constexpr,
):
    doc = tl.program_id(0).to(tl.int64)
    # clamped rather than checked: bad cu_seqlens cannot make the kernel read out of bounds
    start = tl.minimum(tl.maximum(tl.load(bounds_ptr + doc).to(tl.int64), 0), n)
    end = tl.minimum(tl.maximum(tl.load(bounds_ptr + doc + 1).to(tl.int64), start), n)
    lanes = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    lo = tl.full([BLOCK], float("inf"), dtype=tl.float32)
    hi = tl.full([BLOCK], -float("inf"), dtype=tl.float32)
    for i in range(start, end, BLOCK):
        idx = i + lanes
        live = idx < end
        if HAS_ORDER:
            idx = tl.load(order_ptr + idx, mask=live, other=0)
        v = tl.load(values_ptr + idx, mask=live, other=0.0).to(tl.float32)
        if HAS_MASK:
            live = live & (tl.load(mask_ptr + idx, mask=live, other=0) != 0)
        total += tl.where(live, v, 0.0)
        count += live.to(tl.int32)
        lo = tl.where(live, tl.minimum(lo, v), lo)
        hi = tl.where(live, tl.maximum(hi, v), hi)
    c = tl.sum(count, 0)
    s = tl.sum(total, 0)
    empty = c == 0
    tl.store(count_ptr + doc, c.to(tl.int64))
    tl.store(sum_ptr + doc, s)
    tl.store(mean_ptr + doc, tl.where(empty, float("nan"), s / tl.maximum(c, 1).to(tl.float32)))
    tl.store(min_ptr + doc, tl.where(empty, float("nan"), tl.min(lo, 0)))
    tl.store(max_ptr + doc, tl.where(empty, float("nan"), tl.max(hi, 0)))


def segment_reduce_triton(
    values: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_docs: int | None = None,
    block: int = 256,
) -> SegmentStats:
    """The Triton implementation (module docstring): fp16/bf16/fp32 values, fp32 results.

    No host synchronisation, except computing ``max(doc_ids) + 1`` when ``num_docs`` is not
    given. ``cu_seqlens`` values are not checked (that would synchronise): they are clamped into
    ``[0, N]`` and a decreasing pair gives an empty document. Runs on CUDA tensors, or on CPU
    tensors under ``TRITON_INTERPRET=1``.
    """
    check_segment_args(values, cu_seqlens, doc_ids, mask, num_docs, KERNEL_DTYPES)
    if values.device.type != "cuda" and not isinstance(_segment_reduce_kernel, InterpretedFunction):
        raise InvalidArgumentError(
            f"the Triton kernel needs CUDA tensors (got {values.device}); set TRITON_INTERPRET=1 "
            "before this module is imported to run it on CPU"
        )
    flat = values.reshape(-1).contiguous()
    order = None
    if cu_seqlens is not None:
        bounds = cu_seqlens.contiguous()
    else:
        assert doc_ids is not None
        d = _resolve_num_docs(doc_ids, num_docs)
        ids, order = torch.sort(doc_ids.reshape(-1), stable=True)
        bounds = torch.searchsorted(ids, torch.arange(d + 1, device=ids.device, dtype=ids.dtype))
    d = bounds.numel() - 1
    device = values.device
    count = torch.empty(d, dtype=torch.int64, device=device)
    stats = torch.empty((4, d), dtype=torch.float32, device=device)
    if d > 0:
        mask_u8 = None if mask is None else mask.reshape(-1).contiguous().view(torch.uint8)
        _segment_reduce_kernel[(d,)](
            flat,
            flat if mask_u8 is None else mask_u8,
            flat if order is None else order,
            bounds,
            count,
            *stats,
            flat.numel(),
            HAS_MASK=mask_u8 is not None,
            HAS_ORDER=order is not None,
            BLOCK=block,
            num_warps=max(1, min(4, block // 128)),
        )
    return SegmentStats(count, *stats)


# ---------------------------------------------------------------------------------------------
# order statistics (torch only)


class _SortedDocuments(NamedTuple):
    values: torch.Tensor  # live values sorted by (document, value, position)
    docs: torch.Tensor  # their documents
    positions: torch.Tensor  # their flat positions in the input
    starts: torch.Tensor  # [D] first index of each document in the sorted arrays
    counts: torch.Tensor  # [D]


def _sort_within_documents(
    values: torch.Tensor,
    cu_seqlens: torch.Tensor | None,
    doc_ids: torch.Tensor | None,
    mask: torch.Tensor | None,
    num_docs: int | None,
    compute_dtype: torch.dtype,
    descending: bool = False,
) -> _SortedDocuments:
    """Live tokens grouped by document and sorted by value inside each (ties keep the token
    order). Without ``cu_seqlens`` and ``doc_ids`` all tokens form one document."""
    if cu_seqlens is None and doc_ids is None:
        docs, d = torch.zeros(values.numel(), dtype=torch.int64, device=values.device), 1
        check_segment_args(values, None, docs.reshape(values.shape), mask, None, REFERENCE_DTYPES)
    else:
        check_segment_args(values, cu_seqlens, doc_ids, mask, num_docs, REFERENCE_DTYPES)
        docs, d = token_documents(values.numel(), cu_seqlens, doc_ids, num_docs)
    live = docs >= 0
    if mask is not None:
        live &= mask.reshape(-1)
    positions = live.nonzero()[:, 0]
    v = values.reshape(-1)[positions].to(compute_dtype)
    by_value = torch.sort(v, stable=True, descending=descending).indices
    by_doc = torch.sort(docs[positions][by_value], stable=True).indices
    perm = by_value[by_doc]
    counts = torch.bincount(docs[positions], minlength=d)
    starts = counts.cumsum(0) - counts
    return _SortedDocuments(v[perm], docs[positions][perm], positions[perm], starts, counts)


def bottom_k_mean(
    values: torch.Tensor,
    fraction: float,
    *,
    cu_seqlens: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_docs: int | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Min-K%: per document, the mean of its ``k = floor(count * fraction)`` smallest values
    (``int(len * ratio)`` of the reference code; ``k = 0`` gives NaN, as there). Without
    ``cu_seqlens``/``doc_ids`` all live values are one document and a 0-d tensor comes back.
    Torch only; synchronises with the host."""
    if not 0.0 <= fraction <= 1.0:
        raise InvalidArgumentError(f"fraction must be in [0, 1], got {fraction}")
    s = _sort_within_documents(values, cu_seqlens, doc_ids, mask, num_docs, compute_dtype)
    k = torch.floor(s.counts.double() * fraction).long()
    rank = torch.arange(s.values.numel(), device=values.device) - s.starts[s.docs]
    keep = rank < k[s.docs]
    total = torch.zeros(k.numel(), dtype=compute_dtype, device=values.device)
    total.index_add_(0, s.docs[keep], s.values[keep])
    out = total / k  # k = 0 gives 0 / 0 = NaN
    return out[0] if cu_seqlens is None and doc_ids is None else out


def quantiles(
    values: torch.Tensor,
    q: float | Sequence[float],
    *,
    cu_seqlens: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_docs: int | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-document quantiles with numpy's default ``linear`` rule: the value at position
    ``q * (count - 1)`` of the sorted values, interpolated between neighbours. Returns ``[D]``
    for a scalar ``q``, ``[D, len(q)]`` otherwise (without the ``D`` axis when no documents are
    given); NaN for a document without values. Torch only; synchronises with the host."""
    qs = torch.as_tensor([q] if isinstance(q, (int, float)) else list(q), dtype=torch.float64)
    if qs.numel() == 0 or bool(((qs < 0) | (qs > 1) | qs.isnan()).any()):
        raise InvalidArgumentError(f"q must be in [0, 1], got {q}")
    s = _sort_within_documents(values, cu_seqlens, doc_ids, mask, num_docs, compute_dtype)
    qs = qs.to(values.device)
    pos = qs[None, :] * (s.counts[:, None] - 1).clamp(min=0).double()
    lo = pos.floor()
    w = (pos - lo).to(compute_dtype)
    hi = torch.minimum(lo + 1, (s.counts[:, None] - 1).clamp(min=0).double())
    last = max(s.values.numel() - 1, 0)
    padded = s.values if s.values.numel() else s.values.new_zeros(1)
    a = padded[(s.starts[:, None] + lo.long()).clamp(max=last)]
    b = padded[(s.starts[:, None] + hi.long()).clamp(max=last)]
    out = torch.where(s.counts[:, None] > 0, a + (b - a) * w, float("nan"))
    if cu_seqlens is None and doc_ids is None:
        out = out[0]
    return out[..., 0] if isinstance(q, (int, float)) else out


def top_k_token_mask(
    values: torch.Tensor,
    fraction: float,
    *,
    cu_seqlens: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_docs: int | None = None,
) -> torch.Tensor:
    """Rho-1's token selection: a bool tensor shaped like ``values``, True for the
    ``k = round(fraction * count)`` largest live values (round half to even), over all tokens
    (the batch, as in the paper) or per document when ``cu_seqlens``/``doc_ids`` are given.
    Ties go to the lower flat position (a stable descending sort). Masked tokens and tokens of no
    document are never selected. Torch only; synchronises with the host."""
    if not 0.0 <= fraction <= 1.0:
        raise InvalidArgumentError(f"fraction must be in [0, 1], got {fraction}")
    s = _sort_within_documents(values, cu_seqlens, doc_ids, mask, num_docs, values.dtype, descending=True)
    k = torch.round(s.counts.double() * fraction).long()
    rank = torch.arange(s.values.numel(), device=values.device) - s.starts[s.docs]
    selected = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    selected[s.positions[rank < k[s.docs]]] = True
    return selected.reshape(values.shape)
