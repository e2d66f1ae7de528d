"""Tensor inputs of the per-token methods (which need torch: ``pip install tokensieve[gpu]``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tokensieve.exceptions import InvalidArgumentError


def as_tensor(values: Any, name: str) -> torch.Tensor:
    """A tensor as is; a numpy array or sequence as a tensor (no copy for numpy arrays)."""
    if isinstance(values, torch.Tensor):
        return values
    try:
        return torch.from_numpy(np.asarray(values))
    except TypeError as e:
        raise InvalidArgumentError(f"{name} must be a tensor or a numeric array: {e}") from e


def optional_tensor(values: Any, name: str) -> torch.Tensor | None:
    """:func:`as_tensor`, passing ``None`` through."""
    return None if values is None else as_tensor(values, name)


def compute_dtype(values: torch.Tensor) -> torch.dtype:
    """float64 for float64 values, fp32 otherwise (the kernels' torch-path rule)."""
    return torch.float64 if values.dtype == torch.float64 else torch.float32
