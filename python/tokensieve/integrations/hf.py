"""Hugging Face ``datasets``: batch functions as ``Dataset.map`` functions.

Every batch function of :mod:`tokensieve.integrations.batch` is a ``map`` function as it is::

    from tokensieve.integrations.batch import FastTextScores

    scored = dataset.map(FastTextScores("hq.bin", "hq"), batched=True, num_proc=4)

It pickles as its saved state (a feature space, estimator arrays, a model's path and SHA-256),
so ``num_proc`` works, each worker reads the model once, and ``datasets`` fingerprints it
stably: a second ``map`` with an equal function loads the cached result. :func:`add_columns`
hands the texts to the compiled code as Arrow arrays, without Python strings.
"""

from __future__ import annotations

from typing import Any

try:
    import datasets
except ImportError as error:  # pragma: no cover - exercised only without datasets
    raise ImportError(
        "tokensieve.integrations.hf needs datasets: pip install 'tokensieve[datasets]'"
    ) from error

from tokensieve.integrations.batch import BatchFunction

__all__ = ["add_columns"]


def add_columns(
    dataset: datasets.Dataset,
    fn: BatchFunction,
    *,
    batch_size: int = 1000,
    num_proc: int | None = None,
    **map_kwargs: Any,
) -> datasets.Dataset:
    """``dataset`` with ``fn``'s columns, computed on Arrow batches
    (``dataset.with_format("arrow").map(fn, batched=True, ...)``); the dataset's format type is
    restored on the result. ``map_kwargs`` go to ``Dataset.map`` (``cache_file_name``,
    ``load_from_cache_file``, ``desc``, ...)."""
    fmt = dataset.format
    mapped = dataset.with_format("arrow").map(
        fn, batched=True, batch_size=batch_size, num_proc=num_proc, **map_kwargs
    )
    return mapped.with_format(fmt["type"], **fmt["format_kwargs"])
