"""PreSelect: Shum et al. 2025, "Predictive Data Selection: The Data That Predicts Is the Data That
Teaches" (arXiv 2503.00808); reference code hkust-nlp/PreSelect @258c632.

A document is *predictive* when the models that score better on the benchmarks also compress it
better. With the total NLL ``C_i(d)`` of N reference models and their benchmark scores ``b_i``
(higher is better):

    S_raw(d) = sum over model pairs i < j of 1[(b_i > b_j and C_i < C_j) or (b_i < b_j and C_i > C_j)]

(a tie in ``b`` or in ``C`` counts 0; the maximum is N(N-1)/2, and ``S = S_raw / (N(N-1)/2)`` is
the paper's normalised form). Every model reads the same characters of ``d``, so ranking by
total NLL or by bits per character gives the same score.

Pipeline (``data_processing/fasttext``): documents with ``S_raw = N(N-1)/2`` are the positives
(the script hard-codes 15, i.e. 6 models; generalised here); as many negatives are taken among the
others in increasing order of ``S_raw`` (the script walks an undefined ``sorted_id2score``; we read
it as "lowest scores first", ties in document order); a fastText classifier is trained on them
(``epoch=3, lr=0.1, wordNgrams=2``, newlines as spaces); the pool is ranked by P(``__label__1``)
and the top ``fraction`` of its *characters* kept (:func:`select_by_characters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tokensieve.exceptions import InvalidArgumentError
from tokensieve.methods._common import (
    FloatArray,
    NanPolicy,
    Scores,
    aligned_matrix,
    check_fraction,
    is_table,
    nan_rows,
    score_vector,
)

__all__ = [
    "POSITIVE_LABEL",
    "concordance_scores",
    "preselect_labels",
    "select_by_characters",
    "train_preselect_classifier",
]

#: The label whose probability ranks the pool.
POSITIVE_LABEL = "__label__1"


def concordance_scores(
    losses: Sequence[Any] | npt.ArrayLike,
    benchmark: npt.ArrayLike,
    *,
    normalize: bool = False,
    column: str = "sum_nll",
    id_column: str = "id",
) -> FloatArray:
    """PreSelect's predictive strength ``S_raw(d)`` (module docstring) of every document.

    Args:
        losses: ``[N, D]``: the total NLL (or bits per character) of document ``d`` under model
            ``i``; or N score tables (one per model, read at ``column`` and aligned on
            ``id_column``; the first table's order is kept).
        benchmark: ``[N]`` benchmark scores of the models, higher is better.
        normalize: divide by N(N-1)/2, giving the paper's ``S`` in [0, 1].

    Returns:
        float64 ``[D]``: integers (or their normalised values); NaN for a document with a NaN
        loss under some model (the reference skips documents a model did not score).
    """
    if isinstance(losses, Sequence) and len(losses) > 0 and is_table(losses[0]):
        losses = aligned_matrix(losses, column, id_column)[1]
    c = np.asarray(losses, dtype=np.float64)
    b = np.asarray(benchmark, dtype=np.float64)
    if c.ndim != 2 or b.ndim != 1 or c.shape[0] != b.shape[0] or b.shape[0] < 2:
        raise InvalidArgumentError(
            f"losses must be [N, D] and benchmark [N] with N >= 2 models, got {c.shape} and {b.shape}"
        )
    if not np.isfinite(b).all():
        raise InvalidArgumentError("benchmark scores must be finite")
    n = b.shape[0]
    score = np.zeros(c.shape[1])
    for i in range(n - 1):
        # pair (i, j): +1 when the better model by benchmark has the strictly lower loss
        agree = np.sign(b[i] - b[i + 1 :])[:, None] * np.sign(c[i + 1 :] - c[i]) > 0
        score += agree.sum(axis=0)
    score[np.isnan(c).any(axis=0)] = np.nan
    return score / (n * (n - 1) / 2) if normalize else score


def preselect_labels(scores: npt.ArrayLike, n_models: int) -> npt.NDArray[np.int8]:
    """Training labels from raw scores ``S_raw``: 1 for a perfect ranking (``S_raw =
    N(N-1)/2``), 0 for as many of the rest as there are positives, lowest ``S_raw`` first (ties:
    the earlier document), -1 for the unused documents and NaN scores. With fewer non-positive
    documents than positives, all of them are negatives."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or n_models < 2:
        raise InvalidArgumentError(f"scores must be 1-D and n_models >= 2, got {s.shape} and {n_models}")
    labels = np.full(s.shape, -1, dtype=np.int8)
    positive = s == n_models * (n_models - 1) / 2
    labels[positive] = 1
    others = np.flatnonzero(~positive & ~np.isnan(s))
    negatives = others[np.argsort(s[others], kind="stable")[: int(positive.sum())]]
    labels[negatives] = 0
    return labels


def train_preselect_classifier(
    texts: Sequence[str],
    labels: npt.ArrayLike,
    *,
    epoch: int = 3,
    lr: float = 0.1,
    wordNgrams: int = 2,  # noqa: N803 (fastText's name)
    thread: int = 1,
    seed: int = 0,
    **fasttext_args: Any,
) -> Any:
    """Trains PreSelect's fastText classifier on the labelled documents (label 1 vs 0; -1 is
    skipped) with :func:`tokensieve.fasttext.train_supervised`.

    The reference's hyper-parameters are the defaults (others at fastText's defaults); newlines
    become spaces, as in the reference's training file. ``thread=1`` (fastText's default is
    CPUs - 1) makes the model a function of ``seed``. Returns a
    :class:`~tokensieve.fasttext.FastTextModel`; score a pool with
    ``model.score(texts, POSITIVE_LABEL, newline=" ")`` (the training-time newline handling) or
    ``**fasttext.PRESETS["datatrove"]`` (what the reference's filter ran).
    """
    from tokensieve.fasttext import train_supervised

    y = np.asarray(labels)
    if y.shape != (len(texts),):
        raise InvalidArgumentError(f"{len(texts)} texts but labels of shape {y.shape}")
    used = np.flatnonzero(y >= 0)
    if not ((y[used] == 1).any() and (y[used] == 0).any()):
        raise InvalidArgumentError("training needs at least one positive (1) and one negative (0) document")
    return train_supervised(
        ([texts[i] for i in used.tolist()], [f"__label__{int(y[i])}" for i in used]),
        epoch=epoch,
        lr=lr,
        wordNgrams=wordNgrams,
        thread=thread,
        seed=seed,
        newline=" ",
        **fasttext_args,
    )


def select_by_characters(
    probabilities: Scores,
    n_chars: npt.ArrayLike,
    fraction: float = 0.1,
    *,
    column: str = "score",
    nan_policy: NanPolicy = "raise",
) -> tuple[npt.NDArray[np.bool_], float]:
    """PreSelect's cut (``find_threshold.py`` + datatrove's ``keep_labels``): the top
    ``fraction`` of the pool by characters.

    Documents sorted by decreasing probability add up their ``n_chars`` until the running sum
    first exceeds ``fraction`` of the total; that document's probability is the threshold, and
    every document scoring at least the threshold is kept (so ties at the threshold are kept and
    the kept characters slightly exceed the fraction).

    Returns:
        ``(keep, threshold)``.
    """
    p = score_vector(probabilities, column, "probabilities")
    chars = np.asarray(n_chars, dtype=np.float64)
    if chars.shape != p.shape or (chars < 0).any():
        raise InvalidArgumentError(f"n_chars must be {p.shape} non-negative counts, got {chars.shape}")
    fraction = check_fraction(fraction)
    eligible = np.flatnonzero(~nan_rows(p, nan_policy, "probabilities"))
    if eligible.size == 0:
        raise InvalidArgumentError("no document to select from")
    order = eligible[np.argsort(-p[eligible], kind="stable")]
    running = np.cumsum(chars[order])
    over = np.flatnonzero(running > fraction * running[-1])
    threshold = float(p[order[over[0]]] if over.size else p[order[-1]])
    keep = np.zeros(p.shape, dtype=bool)
    keep[eligible] = p[eligible] >= threshold
    return keep, threshold
