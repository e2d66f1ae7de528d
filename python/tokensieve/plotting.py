"""Histograms of per-document scores with a selection threshold, written to PNG.

:func:`selection_threshold` turns a rule (a value, the best k documents, or a quantile) into a
threshold on a score column; :func:`plot_histogram` draws the distribution of the column, the
threshold and the share of documents kept. ``tokensieve plot`` is the command-line front end.

Needs matplotlib (``pip install tokensieve[scoring]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError, MissingDependencyError

__all__ = ["Keep", "kept_mask", "plot_histogram", "selection_threshold"]

#: Which side of the threshold is kept: ``"low"`` (e.g. perplexity filtering) or ``"high"``.
Keep = Literal["low", "high"]


def selection_threshold(
    values: npt.ArrayLike,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    quantile: float | None = None,
    keep: Keep = "low",
) -> float | None:
    """The threshold of a selection rule over ``values`` (NaN ignored), or ``None`` without a
    rule. Give at most one of ``threshold`` (taken as is), ``top_k`` (the value of the k-th
    best document on the ``keep`` side: documents at least as good are kept, so ties at the
    threshold may keep more than k) and ``quantile`` (numpy's linear quantile, in [0, 1])."""
    if keep not in ("low", "high"):
        raise InvalidArgumentError(f'keep must be "low" or "high", got {keep!r}')
    rules = [r for r in (threshold, top_k, quantile) if r is not None]
    if len(rules) > 1:
        raise InvalidArgumentError("give at most one of threshold, top_k and quantile")
    finite = _finite(values)
    if threshold is not None:
        return float(threshold)
    if top_k is not None:
        if not 1 <= top_k <= finite.size:
            raise InvalidArgumentError(
                f"top_k must be in [1, {finite.size}] (documents with a value), got {top_k}"
            )
        ordered = np.sort(finite)
        return float(ordered[top_k - 1] if keep == "low" else ordered[-top_k])
    if quantile is not None:
        if not 0 <= quantile <= 1 or finite.size == 0:
            raise InvalidArgumentError(f"quantile must be in [0, 1] over at least one value, got {quantile}")
        return float(np.quantile(finite, quantile))
    return None


def kept_mask(values: npt.ArrayLike, threshold: float, keep: Keep = "low") -> npt.NDArray[np.bool_]:
    """Which documents a threshold keeps: ``values <= threshold`` (``keep="low"``) or
    ``values >= threshold``; NaN is never kept."""
    array = np.asarray(values, dtype=np.float64)
    return array <= threshold if keep == "low" else array >= threshold


def plot_histogram(
    values: npt.ArrayLike,
    out: str | os.PathLike[str],
    *,
    column: str,
    threshold: float | None = None,
    keep: Keep = "low",
    bins: int = 50,
    title: str | None = None,
) -> Path:
    """Draws the histogram of ``values`` (NaN counted in the title, not drawn) with the
    ``threshold`` line and the kept side shaded, and writes it to ``out`` as PNG (under a
    temporary name, then renamed). Returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as e:
        raise MissingDependencyError("plotting needs matplotlib: pip install tokensieve[scoring]") from e
    if bins < 1:
        raise InvalidArgumentError(f"bins must be >= 1, got {bins}")
    array = np.asarray(values, dtype=np.float64)
    finite = _finite(array)
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    try:
        ax.hist(finite, bins=bins, color="0.55")
        if threshold is not None:
            kept = int(kept_mask(finite, threshold, keep).sum())
            share = 100 * kept / max(finite.size, 1)
            label = f"threshold {threshold:.4g}: keep {keep} side, {kept:,} of {finite.size:,} ({share:.1f}%)"
            ax.axvline(threshold, color="C3", linestyle="--", label=label)
            low, high = ax.get_xlim()
            ax.axvspan(
                low if keep == "low" else threshold,
                threshold if keep == "low" else high,
                color="C2",
                alpha=0.12,
            )
            ax.set_xlim(low, high)
            ax.legend(loc="upper right", fontsize="small")
        missing = array.size - finite.size
        if title is None:
            title = f"{column}: {finite.size:,} documents"
            title += f" ({missing:,} not finite, not shown)" if missing else ""
        ax.set_title(title)
        ax.set_xlabel(column)
        ax.set_ylabel("documents")
        path = Path(out)
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]
