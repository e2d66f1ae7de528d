"""Perplexity filtering: CCNet's percentile buckets (Wenzek et al. 2020, "CCNet: Extracting High
Quality Monolingual Datasets from Web Crawl Data"; reference facebookresearch/cc_net @bda555b,
``cc_net/perplexity.py``, ``cc_net/mine.py``) and perplexity bands under a neural LM (Marion et
al. 2023, "When Less is More", arXiv 2309.04564; Ankner et al. 2024, "Perplexed by Perplexity").

CCNet scores a document with a 5-gram KenLM model over SentencePiece pieces:
``pp = 10 ** (-sum_lines log10 P(line) / sum_lines (pieces + 1))`` (the ``+ 1`` is ``</s>``),
rounded to 0.1. In its mining pipeline the whole document is one line, because normalisation
deletes ``"\\n"`` before the split. Buckets: ``head`` if ``pp < cutoff_30``, ``middle`` if ``pp <
cutoff_60``, else ``tail``, where the cutoffs are per-language 30th and 60th percentiles
(``cc_net/data/cutoff.csv``; English: 340 and 520); the reproduced config keeps ``head``.

With a neural LM the document perplexity is ``exp(mean token NLL)`` (the scorer's ``perplexity``
column), and the cutoffs are best taken as percentiles of the pool itself
(:func:`percentile_cutoffs`, numpy's ``linear`` rule; cc_net does not say how its were
interpolated).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._common import NanPolicy, Scores, check_fraction, nan_rows, score_vector

__all__ = [
    "BUCKETS",
    "CCNET_EN_CUTOFFS",
    "ccnet_buckets",
    "ccnet_perplexity",
    "percentile_cutoffs",
    "perplexity_band",
]

#: Bucket names, best first; ``"rejected"`` is a NaN perplexity under ``nan_policy="reject"``.
BUCKETS = ("head", "middle", "tail")
#: cc_net's English cutoffs (30th and 60th percentiles of its KenLM perplexities).
CCNET_EN_CUTOFFS = (340.0, 520.0)


def ccnet_perplexity(
    log10_scores: npt.ArrayLike, n_pieces: npt.ArrayLike, *, ndigits: int | None = 1
) -> float:
    """CCNet's document perplexity from its lines' KenLM ``log10 P(line)`` and piece counts:
    ``10 ** (-sum score / sum (pieces + 1))``, rounded to ``ndigits`` as cc_net stores it
    (``None``: unrounded)."""
    scores = np.asarray(log10_scores, dtype=np.float64)
    lengths = np.asarray(n_pieces, dtype=np.float64) + 1
    if scores.shape != lengths.shape or scores.ndim != 1 or scores.size == 0:
        raise InvalidArgumentError("give one log10 score and one piece count per line, for one line or more")
    pp = 10.0 ** (-scores.sum() / lengths.sum())
    return pp if ndigits is None else round(pp, ndigits)


def percentile_cutoffs(
    perplexity: Scores, percentiles: Sequence[float] = (30, 60), *, column: str = "perplexity"
) -> tuple[float, ...]:
    """The given percentiles of the pool's (non-NaN) perplexities, numpy's ``linear`` rule."""
    values = score_vector(perplexity, column, "perplexity")
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise InvalidArgumentError("no perplexity to take percentiles of")
    return tuple(float(c) for c in np.percentile(values, list(percentiles)))


def ccnet_buckets(
    perplexity: Scores,
    cutoffs: Sequence[float] | None = None,
    *,
    column: str = "perplexity",
    nan_policy: NanPolicy = "raise",
) -> npt.NDArray[np.str_]:
    """Each document's bucket: ``"head"`` below ``cutoffs[0]``, ``"middle"`` below ``cutoffs[1]``,
    ``"tail"`` otherwise (``"rejected"`` for NaN under ``nan_policy="reject"``).

    ``cutoffs`` defaults to the pool's own 30th and 60th percentiles (:func:`percentile_cutoffs`);
    pass :data:`CCNET_EN_CUTOFFS` for cc_net's English KenLM values.
    """
    values = score_vector(perplexity, column, "perplexity")
    nan = nan_rows(values, nan_policy, "perplexities")
    head, middle = percentile_cutoffs(values) if cutoffs is None else tuple(cutoffs)
    if not head <= middle:
        raise InvalidArgumentError(f"cutoffs must be increasing, got {cutoffs}")
    buckets = np.where(values < head, "head", np.where(values < middle, "middle", "tail")).astype("<U8")
    buckets[nan] = "rejected"
    return buckets


def perplexity_band(
    perplexity: Scores,
    fraction: float,
    band: str = "low",
    *,
    column: str = "perplexity",
    nan_policy: NanPolicy = "raise",
) -> npt.NDArray[np.bool_]:
    """Marion et al. / Ankner et al. pruning: keep ``k = round(fraction * N)`` documents, the
    lowest perplexities (``"low"``), the highest (``"high"``) or those around the median
    (``"middle"``: ranks ``(N - k) // 2`` up to ``(N - k) // 2 + k`` in increasing order). Ties
    are ranked in document order; ``N`` counts the non-NaN perplexities."""
    if band not in ("low", "middle", "high"):
        raise InvalidArgumentError(f'band must be "low", "middle" or "high", got {band!r}')
    values = score_vector(perplexity, column, "perplexity")
    eligible = np.flatnonzero(~nan_rows(values, nan_policy, "perplexities"))
    k = round(check_fraction(fraction) * eligible.size)
    ranked = eligible[np.argsort(values[eligible], kind="stable")]
    start = {"low": 0, "middle": (ranked.size - k) // 2, "high": ranked.size - k}[band]
    keep = np.zeros(values.shape, dtype=bool)
    keep[ranked[start : start + k]] = True
    return keep
