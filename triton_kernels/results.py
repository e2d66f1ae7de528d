"""The result types of the kernels. Importing this module needs neither torch nor triton, and
reloading a kernel module (tests switch them to the Triton interpreter) keeps these classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

__all__ = ["SegmentStats", "TokenStats"]


class TokenStats(NamedTuple):
    """Per-token statistics, each shaped like the targets: fp32, except ``argmax`` (int64) and
    the torch reference's float64 results when it computes in float64."""

    logprob: torch.Tensor
    lse: torch.Tensor
    entropy: torch.Tensor
    sum_p2: torch.Tensor
    var_logp: torch.Tensor
    max_logprob: torch.Tensor
    argmax: torch.Tensor


class SegmentStats(NamedTuple):
    """Per-document statistics, each of shape ``[D]``: ``count`` int64, the rest fp32 (or the
    torch reference's float64)."""

    # The public field name; it shadows tuple.count, which a result has no use for.
    count: torch.Tensor  # type: ignore[assignment]
    sum: torch.Tensor
    mean: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
