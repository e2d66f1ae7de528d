"""Per-token statistics of a language model's distribution from its logits, in one read.

``token_stats_triton`` is the Triton kernel pair, ``token_stats_reference`` the plain-torch
reference with the same signature (float64 when asked; it materialises ``log_softmax`` as the
definitions below read, and is the tests' oracle) and ``token_stats_torch`` the fast torch
implementation, the CPU backend (the kernel's algorithm on cache-sized chunks of rows,
:class:`RowSums`). All return a :class:`TokenStats`.

Definitions, for one row of logits ``x`` (length V) and its target ``y``:

* ``z = softcap * tanh(x / softcap)`` when ``softcap`` is given (the model's own output
  transform, as in Gemma 2), then ``z = z / temperature`` (the sampling-time scale applied to the
  model's logits, as Hugging Face's temperature warper does). ``p = softmax(z)``.
* ``logprob = log p(y)``, ``lse = logsumexp(z)``, ``entropy = -sum p log p``,
  ``sum_p2 = sum p^2``, ``var_logp = Var_p[log p]`` (= ``Var_p[z]``),
  ``max_logprob = max log p``, ``argmax`` (the first index of the maximum).
* A token whose target equals ``ignore_index`` gets ``logprob = 0`` (as
  ``F.cross_entropy(reduction="none")``); its other statistics do not depend on the target and
  are computed as for any token. Any other target outside ``[0, V)`` is an error: the reference
  raises :class:`~tokensieve.exceptions.TargetOutOfRangeError`; the kernel cannot raise without
  a host synchronisation, so it writes ``logprob = NaN`` for that token instead.
* Logits equal to ``-inf`` (a model masking part of its vocabulary) carry no probability. A row
  whose logits are all ``-inf`` has no distribution: its statistics are not finite.

The kernel (methods.md section 0) streams each row once. A program keeps a running maximum
``m`` of the softcapped logits ``c`` (temperature scaling is monotone, so it is the maximum of
``z`` too) and per-lane running sums ``s0 = sum e``, ``s1 = sum e*d``, ``s2 = sum e*d^2``,
``sx = sum e^2`` with ``d = (c - m) * log2(e) / temperature`` (base-2 units: one ``exp2``,
``e = 2^d``, per lane; subtracting before scaling keeps logits offset by 1e4 accurate),
rescaled by the closed-form merge rule whenever ``m`` grows. Large vocabularies are split over
several programs per row (split-V); a second, small kernel merges the partial states of a row
in a fixed order, so results are bitwise reproducible and no atomics are used. Nothing
synchronises with the host, so the call can be captured in a CUDA graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from tokensieve.exceptions import InvalidArgumentError, TargetOutOfRangeError

from .results import TokenStats

__all__ = [
    "RowSums",
    "TokenStats",
    "check_scales",
    "check_token_stats_args",
    "compute_dtype_of",
    "ignored_or_raise",
    "interpreted",
    "merge_launch",
    "reference_rows",
    "token_stats_reference",
    "token_stats_torch",
    "token_stats_triton",
]

LOG2E = math.log2(math.e)  # host side: folded into the scale the kernels receive
LN2 = tl.constexpr(math.log(2.0))  # a global a kernel reads must be a constexpr instance

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
REFERENCE_DTYPES = (*KERNEL_DTYPES, torch.float64)
#: Rows the reference turns into float64 at a time (bounds its memory at about 64 MiB per buffer).
REFERENCE_CHUNK_ELEMENTS = 1 << 23
#: Logits :class:`RowSums` holds per chunk on the CPU: its buffers (10 MiB of fp32) stay in the L3
#: cache between its passes. Measured on a 2-core EPYC VM (V = 4096 and 32000): chunks of 2^19 to
#: 2^20 logits are fastest; 4x larger ones spill and take 1.5x longer, 8x smaller ones pay the
#: per-call overhead of torch and a slower matrix product.
CPU_CHUNK_ELEMENTS = 1 << 19
#: Rows per chunk at least (large vocabularies): an LM head is read from memory once per chunk.
MIN_CHUNK_ROWS = 16


def check_token_stats_args(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    softcap: float | None,
    dtypes: tuple[torch.dtype, ...],
) -> None:
    """Raises :class:`~tokensieve.exceptions.InvalidArgumentError` for shapes, dtypes or scales
    that neither implementation accepts. Never reads tensor values (no host synchronisation)."""
    if logits.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise InvalidArgumentError(f"logits must be one of {names}, got {logits.dtype}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise InvalidArgumentError(f"targets must be an integer tensor, got {targets.dtype}")
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise InvalidArgumentError(
            f"logits must be shaped [*targets.shape, V]; got logits {tuple(logits.shape)} "
            f"and targets {tuple(targets.shape)}"
        )
    if logits.shape[-1] == 0:
        raise InvalidArgumentError("logits have an empty vocabulary dimension (V = 0)")
    if logits.device != targets.device:
        raise InvalidArgumentError(f"logits are on {logits.device} but targets on {targets.device}")
    check_scales(temperature, softcap)


def check_scales(temperature: float, softcap: float | None) -> None:
    """Raises :class:`~tokensieve.exceptions.InvalidArgumentError` unless ``temperature`` is
    finite and > 0 and ``softcap`` is None or finite and > 0."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise InvalidArgumentError(f"temperature must be finite and > 0, got {temperature}")
    if softcap is not None and not (math.isfinite(softcap) and softcap > 0):
        raise InvalidArgumentError(f"softcap must be None or finite and > 0, got {softcap}")


def ignored_or_raise(flat_targets: torch.Tensor, ignore_index: int, vocab: int) -> torch.Tensor:
    """The mask of ``ignore_index`` targets; raises
    :class:`~tokensieve.exceptions.TargetOutOfRangeError` (a host synchronisation) for any other
    target outside ``[0, vocab)``."""
    ignored = flat_targets == ignore_index
    bad = ~ignored & ((flat_targets < 0) | (flat_targets >= vocab))
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise TargetOutOfRangeError(
            f"target {int(flat_targets[first])} at flat position {first} is outside [0, {vocab}) "
            f"and is not ignore_index ({ignore_index})"
        )
    return ignored


# ---------------------------------------------------------------------------------------------
# torch reference


def token_stats_reference(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> TokenStats:
    """The plain-torch definition of :func:`token_stats_triton` (module docstring), computed in
    ``compute_dtype`` (float32 or float64) with log-softmax materialised a chunk of rows at a time.
    Results are in ``compute_dtype`` (``argmax`` int64). Synchronises with the host: it checks
    the targets and raises :class:`~tokensieve.exceptions.TargetOutOfRangeError`."""
    check_token_stats_args(logits, targets, temperature, softcap, REFERENCE_DTYPES)
    if compute_dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"compute_dtype must be float32 or float64, got {compute_dtype}")
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)
    flat_targets = targets.reshape(-1).long()
    ignored = ignored_or_raise(flat_targets, ignore_index, vocab)
    rows = max(1, REFERENCE_CHUNK_ELEMENTS // vocab)
    parts = [
        reference_rows(
            flat_logits[i : i + rows],
            flat_targets[i : i + rows],
            ignored[i : i + rows],
            temperature,
            softcap,
            compute_dtype,
        )
        for i in range(0, flat_logits.shape[0], rows)
    ]
    if not parts:
        empty = flat_logits.new_empty(0, dtype=compute_dtype)
        parts = [TokenStats._make([*([empty] * 6), empty.long()])]
    return TokenStats(*(torch.cat(column).reshape(targets.shape) for column in zip(*parts, strict=True)))


def reference_rows(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignored: torch.Tensor,
    temperature: float,
    softcap: float | None,
    compute_dtype: torch.dtype,
) -> TokenStats:
    """The statistics of ``[rows, V]`` logits (any float dtype, turned into ``compute_dtype``)
    with their ``targets`` and ``ignored`` mask (targets already checked), materialised."""
    z = logits.to(compute_dtype)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    p_logp = torch.where(p > 0, p * logp, 0.0)  # 0 * log 0 = 0 for -inf logits
    entropy = -p_logp.sum(-1)
    centred = torch.where(p > 0, logp + entropy[:, None], 0.0)
    logprob = logp.gather(1, torch.where(ignored, 0, targets)[:, None])[:, 0]
    return TokenStats(
        logprob=torch.where(ignored, 0.0, logprob),
        lse=torch.logsumexp(z, dim=-1),
        entropy=entropy,
        sum_p2=(p * p).sum(-1),
        var_logp=(p * centred * centred).sum(-1),
        max_logprob=logp.max(-1).values,
        argmax=z.argmax(-1),
    )


# ---------------------------------------------------------------------------------------------
# fast torch implementation (the CPU backend)


@torch.no_grad()
def token_stats_torch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
) -> TokenStats:
    """:func:`token_stats_reference`'s statistics computed for speed: the algorithm of the kernel
    (running sums about the row maximum, :class:`RowSums`) on chunks of rows sized for the CPU
    caches, in float64 for float64 logits and fp32 otherwise. Same signature and checks as the
    reference (it raises :class:`~tokensieve.exceptions.TargetOutOfRangeError`); results in the
    compute dtype (``argmax`` int64), shaped like ``targets``."""
    check_token_stats_args(logits, targets, temperature, softcap, REFERENCE_DTYPES)
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    flat_targets = targets.reshape(-1).long()
    ignored = ignored_or_raise(flat_targets, ignore_index, vocab)
    sums = RowSums(flat.shape[0], vocab, compute_dtype_of(logits), logits.device, temperature, softcap)
    for start, stop, buffer in sums.chunks():
        chunk = flat[start:stop]
        if chunk.dtype == buffer.dtype:
            torch.clamp(chunk, min=RowSums.FLOOR, out=buffer)  # the copy and the floor in one pass
        else:  # the floor may not exist in the input dtype (fp16)
            buffer.copy_(chunk).clamp_(min=RowSums.FLOOR)
        sums.reduce(start, stop, flat_targets[start:stop], ignored[start:stop])
    return sums.result(ignored, targets.shape)


def compute_dtype_of(t: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, fp32 for the others (the torch backend's contract)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class RowSums:
    """Per-token statistics of ``[N, V]`` logits that the caller writes, a chunk of rows at a
    time, into a buffer this object owns (:meth:`chunks`), and :meth:`reduce` overwrites.

    The chunk is reduced as the kernel reduces a row (module docstring): the maximum ``m`` of the
    softcapped logits ``c`` and its first index, the target's ``c``, then ``d = (c - m) *
    log2(e) / temperature`` in place, ``e = 2^d`` and the four sums ``s0 = sum e``, ``s1 = sum
    e*d``, ``s2 = sum e*d^2``, ``sx = sum e^2`` in one reduction over a stacked buffer: about ten
    passes over the chunk, each over data still in the cache (the chunks are
    ``CPU_CHUNK_ELEMENTS`` logits on the CPU) and no temporary of its size. :meth:`result` turns
    the sums into the statistics once for all rows.

    ``-inf`` logits must be written as :attr:`FLOOR` (or any value at most that), finite, so that
    ``e * d`` is ``0 * (huge) = 0`` rather than ``0 * inf = NaN``: a logit ``2^64`` below the
    row's maximum has no mass in fp32 or float64 either way, for any ``temperature`` between
    ``1e-19`` and ``1e16``. Rows whose maximum is at the floor (no finite logit) get NaN
    statistics, and a target whose logit is at the floor ``logprob = -inf``, as in the reference.

    Error in fp32 against the float64 reference on the same logits (LM-head-like logits, V = 4096
    and 32000, with and without a softcap of 30; 6,144 tokens): at most 2.5e-6 absolute on
    ``logprob``, ``lse``, ``entropy`` and ``max_logprob``, 1e-6 on ``sum_p2`` and 1e-5 on
    ``var_logp`` (values of a few units: the variance is ``s2 / s0 - (s1 / s0)^2``, as in the
    kernel). An fp32 LM head adds its own rounding to the logits (there, 4e-5 on an ``lse`` of
    about 70).
    """

    #: What ``-inf`` logits are written as (finite in fp32, bf16 and float64).
    FLOOR = -(2.0**64)

    def __init__(
        self,
        n_rows: int,
        vocab: int,
        dtype: torch.dtype,
        device: torch.device,
        temperature: float,
        softcap: float | None,
    ) -> None:
        self.n_rows, self.vocab, self.dtype, self.device = n_rows, vocab, dtype, device
        self.scale = LOG2E / float(temperature)
        self.temperature, self.softcap = float(temperature), softcap
        limit = CPU_CHUNK_ELEMENTS if device.type == "cpu" else REFERENCE_CHUNK_ELEMENTS
        # at least MIN_CHUNK_ROWS rows: a caller multiplying by an LM head reads all of it per chunk
        self.rows = min(max(n_rows, 1), max(MIN_CHUNK_ROWS, limit // vocab))
        self.buffer = torch.empty((self.rows, vocab), dtype=dtype, device=device)
        self.terms = torch.empty((4, self.rows, vocab), dtype=dtype, device=device)  # e, e*d, e*d^2, e^2
        # m, s0, s1, s2, sx, target c (rows); filled by reduce
        self.sums = torch.empty((6, n_rows), dtype=dtype, device=device)
        self.argmax = torch.empty(n_rows, dtype=torch.int64, device=device)

    def chunks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, buffer)`` for each chunk of rows: write the logits of rows
        ``start:stop`` into ``buffer`` (``[stop - start, V]``), then call :meth:`reduce`."""
        for start in range(0, self.n_rows, self.rows):
            stop = min(start + self.rows, self.n_rows)
            yield start, stop, self.buffer[: stop - start]

    def reduce(self, start: int, stop: int, targets: torch.Tensor, ignored: torch.Tensor) -> None:
        """Reduces the logits of rows ``start:stop`` written in the buffer (which it overwrites)."""
        x = self.buffer[: stop - start]
        m, c_target = self.sums[0, start:stop], self.sums[5, start:stop]
        if self.softcap is not None:
            x.div_(self.softcap).tanh_().mul_(self.softcap)
        torch.amax(x, dim=1, out=m)
        _first_argmax(x, self.argmax[start:stop])
        torch.gather(x, 1, torch.where(ignored, 0, targets)[:, None], out=c_target[:, None])
        x.sub_(m[:, None]).mul_(self.scale)  # d, in base-2 units; subtracting first keeps offsets exact
        terms = self.terms[:, : stop - start]
        e, ed, ed2, e2 = terms
        torch.exp2(x, out=e)
        torch.mul(e, x, out=ed)
        torch.mul(ed, x, out=ed2)
        torch.mul(e, e, out=e2)
        torch.sum(terms, dim=2, out=self.sums[1:5, start:stop])

    def result(self, ignored: torch.Tensor, shape: torch.Size) -> TokenStats:
        """The statistics of all rows (every chunk reduced), shaped ``shape``."""
        m, s0, s1, s2, sx, c_target = self.sums
        has_mass = m > self.FLOOR
        s0 = torch.where(has_mass, s0, float("nan"))  # no finite logit: no distribution
        log_s0 = s0.log()
        mean_d = s1 / s0
        logprob = (c_target - m) * (self.scale * math.log(2.0)) - log_s0
        logprob.masked_fill_(has_mass & (c_target <= self.FLOOR), -float("inf"))  # a -inf target logit
        out = (
            torch.where(ignored, 0.0, logprob),
            m / self.temperature + log_s0,
            log_s0 - mean_d * math.log(2.0),
            sx / (s0 * s0),
            (s2 / s0 - mean_d * mean_d).clamp(min=0.0) * math.log(2.0) ** 2,
            -log_s0,
        )
        return TokenStats._make([*(o.reshape(shape) for o in out), self.argmax.reshape(shape)])


def _first_argmax(x: torch.Tensor, out: torch.Tensor) -> None:
    """The first index of each row's maximum (NaN counts as the maximum) into ``out``. On the
    CPU numpy's vectorised argmax, some ten times faster than torch's there."""
    if x.device.type == "cpu":
        np.argmax(x.numpy(), axis=1, out=out.numpy())
    else:
        torch.argmax(x, dim=1, out=out)


# ---------------------------------------------------------------------------------------------
# Triton kernels


@triton.jit
def _capped_logits(x, softcap, softcap_scale, HAS_SOFTCAP: tl.constexpr):
    """``softcap * tanh(x / softcap)`` (or ``x``), in fp32. tanh is written with exp2, as
    libdevice does not run under the interpreter: softcap * tanh(x / softcap) = softcap -
    2 softcap / (2^(x * softcap_scale) + 1) with softcap_scale = 2 log2(e) / softcap; it
    saturates to +-softcap without overflow."""
    x = x.to(tl.float32)
    if HAS_SOFTCAP:
        x = softcap - 2.0 * softcap / (tl.exp2(x * softcap_scale) + 1.0)
    return x


@triton.jit
def _token_stats_partial_kernel(
    logits_ptr,
    part_ptr,  # fp32 [5, n_rows * n_splits]: m (softcapped logits), s0, s1, s2, sx (base 2)
    part_arg_ptr,  # int32 [n_rows * n_splits]
    n_rows,
    vocab,
    stride_row,
    split_size,
    scale,
    softcap,
    softcap_scale,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK_V: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    n_splits = tl.num_programs(1)
    v_begin = split * split_size
    v_end = tl.minimum(v_begin + split_size, vocab)
    row_ptr = logits_ptr + row * stride_row
    cols = tl.arange(0, BLOCK_V)

    m = -float("inf")
    arg = v_begin
    s0 = tl.zeros([BLOCK_V], dtype=tl.float32)
    s1 = tl.zeros([BLOCK_V], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_V], dtype=tl.float32)
    sx = tl.zeros([BLOCK_V], dtype=tl.float32)
    for start in tl.range(v_begin, v_end, BLOCK_V, num_stages=NUM_STAGES):
        idx = start + cols
        live = idx < v_end
        x = tl.load(row_ptr + idx, mask=live, other=0.0)
        # padded lanes are masked after the softcap, which would otherwise turn them into -softcap
        c = tl.where(live, _capped_logits(x, softcap, softcap_scale, HAS_SOFTCAP), -float("inf"))
        block_max, block_arg = tl.max(c, 0, return_indices=True, return_indices_tie_break_left=True)
        if block_max > m:
            arg = start + block_arg
            # the closed-form merge rule of methods.md 0.1, moving the reference point from m up
            # to block_max (the sums are all zero while m is still -inf)
            delta = tl.where(m > -float("inf"), (block_max - m) * scale, 0.0)
            f = tl.exp2(-delta)
            s2 = f * (s2 - 2.0 * delta * s1 + delta * delta * s0)
            s1 = f * (s1 - delta * s0)
            s0 = f * s0
            sx = f * f * sx
            m = block_max
        d = (c - tl.where(m > -float("inf"), m, 0.0)) * scale
        e = tl.exp2(d)
        d = tl.where(e > 0.0, d, 0.0)  # -inf lanes carry no mass (and would give -inf * 0)
        ed = e * d
        s0 += e
        s1 += ed
        s2 += ed * d
        sx += e * e

    out = row * n_splits + split
    n_parts = n_rows * n_splits
    tl.store(part_ptr + out, m)
    tl.store(part_ptr + n_parts + out, tl.sum(s0, 0))
    tl.store(part_ptr + 2 * n_parts + out, tl.sum(s1, 0))
    tl.store(part_ptr + 3 * n_parts + out, tl.sum(s2, 0))
    tl.store(part_ptr + 4 * n_parts + out, tl.sum(sx, 0))
    tl.store(part_arg_ptr + out, arg)


@triton.jit
def _token_stats_merge_kernel(
    logits_ptr,
    targets_ptr,
    part_ptr,
    part_arg_ptr,
    logprob_ptr,
    lse_ptr,
    entropy_ptr,
    sum_p2_ptr,
    var_ptr,
    max_logprob_ptr,
    argmax_ptr,
    row_max_ptr,  # the merged maximum m of the softcapped logits, when STORE_ROW_MAX
    n_rows,
    vocab,
    stride_row,
    ignore_index,
    scale,
    inv_temperature,
    softcap,
    softcap_scale,
    n_splits,
    HAS_SOFTCAP: tl.constexpr,
    TARGET_IN_PARTS: tl.constexpr,  # part row 5 holds the softcapped target logit (linear_stats)
    STORE_ROW_MAX: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    SPLITS: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_live = rows < n_rows
    splits = tl.arange(0, SPLITS)
    live = row_live[:, None] & (splits < n_splits)[None, :]
    parts = rows[:, None] * n_splits + splits[None, :]
    n_parts = n_rows * n_splits

    m_part = tl.load(part_ptr + parts, mask=live, other=-float("inf"))
    s0_part = tl.load(part_ptr + n_parts + parts, mask=live, other=0.0)
    s1_part = tl.load(part_ptr + 2 * n_parts + parts, mask=live, other=0.0)
    s2_part = tl.load(part_ptr + 3 * n_parts + parts, mask=live, other=0.0)
    sx_part = tl.load(part_ptr + 4 * n_parts + parts, mask=live, other=0.0)
    # a fixed-order merge (tl.sum over the split axis): the result does not depend on scheduling
    m, best = tl.max(m_part, 1, return_indices=True, return_indices_tie_break_left=True)
    delta = tl.where(m_part > -float("inf"), (m[:, None] - m_part) * scale, 0.0)
    f = tl.exp2(-delta)
    s0 = tl.sum(f * s0_part, 1)
    s1 = tl.sum(f * (s1_part - delta * s0_part), 1)
    s2 = tl.sum(f * (s2_part - 2.0 * delta * s1_part + delta * delta * s0_part), 1)
    sx = tl.sum(f * f * sx_part, 1)
    arg = tl.load(part_arg_ptr + rows * n_splits + best, mask=row_live, other=0)

    target = tl.load(targets_ptr + rows, mask=row_live, other=0).to(tl.int64)
    ignored = target == ignore_index
    in_range = (target >= 0) & (target < vocab) & ~ignored
    if TARGET_IN_PARTS:
        # the split holding the target wrote its logit, every other split 0: the sum is exact
        c_target = tl.sum(tl.load(part_ptr + 5 * n_parts + parts, mask=live, other=0.0), 1)
    else:
        x_target = tl.load(logits_ptr + rows * stride_row + target, mask=row_live & in_range, other=0.0)
        c_target = _capped_logits(x_target, softcap, softcap_scale, HAS_SOFTCAP)

    log_s0 = tl.log(s0)
    mean_d = s1 / s0
    logprob = (c_target - m) * scale * LN2 - log_s0
    logprob = tl.where(in_range, logprob, tl.where(ignored, 0.0, float("nan")))
    tl.store(logprob_ptr + rows, logprob, mask=row_live)
    tl.store(lse_ptr + rows, m * inv_temperature + log_s0, mask=row_live)
    tl.store(entropy_ptr + rows, log_s0 - mean_d * LN2, mask=row_live)
    tl.store(sum_p2_ptr + rows, sx / (s0 * s0), mask=row_live)
    tl.store(var_ptr + rows, tl.maximum(s2 / s0 - mean_d * mean_d, 0.0) * (LN2 * LN2), mask=row_live)
    tl.store(max_logprob_ptr + rows, -log_s0, mask=row_live)
    tl.store(argmax_ptr + rows, arg.to(tl.int64), mask=row_live)
    if STORE_ROW_MAX:
        tl.store(row_max_ptr + rows, m, mask=row_live)


def interpreted() -> bool:
    """Whether this module's kernels were decorated under ``TRITON_INTERPRET=1`` (so they run on
    CPU tensors). The setting is read when the module is imported."""
    return isinstance(_token_stats_partial_kernel, InterpretedFunction)


def merge_launch(n_splits: int) -> tuple[int, int]:
    """``(BLOCK_ROWS, SPLITS)`` of :func:`_token_stats_merge_kernel` for ``n_splits`` partial
    states per row. A program holds ``BLOCK_ROWS x SPLITS`` of each of the five sums in
    registers; at most 1024 (8 per thread with 4 warps) so they never spill: 64 rows x 64 splits
    took all 255 registers and spilled (compiled for sm_90, tests/gpu_compile.py)."""
    splits = triton.next_power_of_2(n_splits)
    return max(1, min(64, 1024 // splits)), splits


def _default_splits(logits: torch.Tensor, n_rows: int, n_blocks: int) -> int:
    """Enough programs to fill the GPU (four per SM) when there are few rows, never more splits
    than vocabulary blocks."""
    if logits.device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(logits.device).multi_processor_count
    return max(1, min(n_blocks, triton.cdiv(4 * sms, max(n_rows, 1))))


def token_stats_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    temperature: float = 1.0,
    softcap: float | None = None,
    block_v: int | None = None,
    splits: int | None = None,
    num_warps: int | None = None,
    num_stages: int = 3,
) -> TokenStats:
    """The Triton implementation: one read of ``logits`` ([..., V], fp16/bf16/fp32, shaped
    ``[*targets.shape, V]``), fp32 results (``argmax`` int64) shaped like ``targets``.

    ``block_v`` (a power of two), ``splits`` (programs per row), ``num_warps`` and
    ``num_stages`` (vocabulary blocks in flight, copied asynchronously through shared memory on
    GPUs that can) override the launch heuristics; results are deterministic for a given
    setting. Runs on CUDA tensors, or on CPU tensors when the module was imported under
    ``TRITON_INTERPRET=1``. Logits whose rows are not contiguous in V are copied first.
    """
    check_token_stats_args(logits, targets, temperature, softcap, KERNEL_DTYPES)
    if logits.device.type != "cuda" and not interpreted():
        raise InvalidArgumentError(
            f"the Triton kernel needs CUDA tensors (got {logits.device}); set TRITON_INTERPRET=1 "
            "before this module is imported to run it on CPU"
        )
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    if flat.stride(1) != 1:
        flat = flat.contiguous()
    flat_targets = targets.reshape(-1)
    if not flat_targets.is_contiguous():
        flat_targets = flat_targets.contiguous()
    n_rows = flat.shape[0]
    out = torch.empty((6, n_rows), dtype=torch.float32, device=logits.device)
    argmax = torch.empty(n_rows, dtype=torch.int64, device=logits.device)
    if n_rows > 0:
        if block_v is None:
            block_v = min(4096 if flat.element_size() == 2 else 2048, triton.next_power_of_2(vocab))
        if block_v <= 0 or block_v & (block_v - 1):
            raise InvalidArgumentError(f"block_v must be a power of two, got {block_v}")
        n_blocks = triton.cdiv(vocab, block_v)
        if splits is None:
            splits = _default_splits(logits, n_rows, n_blocks)
        split_size = triton.cdiv(n_blocks, max(1, min(splits, n_blocks))) * block_v
        n_splits = triton.cdiv(vocab, split_size)
        if num_warps is None:
            num_warps = max(1, min(8, block_v // 256))
        parts = torch.empty((5, n_rows * n_splits), dtype=torch.float32, device=logits.device)
        part_args = torch.empty(n_rows * n_splits, dtype=torch.int32, device=logits.device)
        scale = LOG2E / float(temperature)
        cap = 0.0 if softcap is None else float(softcap)
        cap_scale = 0.0 if softcap is None else 2.0 * LOG2E / cap
        _token_stats_partial_kernel[(n_rows, n_splits)](
            flat,
            parts,
            part_args,
            n_rows,
            vocab,
            flat.stride(0),
            split_size,
            scale,
            cap,
            cap_scale,
            HAS_SOFTCAP=softcap is not None,
            BLOCK_V=block_v,
            NUM_STAGES=num_stages,
            num_warps=num_warps,
        )
        block_rows, split_block = merge_launch(n_splits)
        _token_stats_merge_kernel[(triton.cdiv(n_rows, block_rows),)](
            flat,
            flat_targets,
            parts,
            part_args,
            *out,
            argmax,
            argmax,  # no row maximum stored
            n_rows,
            vocab,
            flat.stride(0),
            ignore_index,
            scale,
            1.0 / float(temperature),
            cap,
            cap_scale,
            n_splits,
            HAS_SOFTCAP=softcap is not None,
            TARGET_IN_PARTS=False,
            STORE_ROW_MAX=False,
            BLOCK_ROWS=block_rows,
            SPLITS=split_block,
            num_warps=4,
        )
    shape = targets.shape
    return TokenStats._make([*(o.reshape(shape) for o in out), argmax.reshape(shape)])
