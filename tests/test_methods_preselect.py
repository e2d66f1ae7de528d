"""PreSelect: the test vector of methods.md §1, the score against a pair-by-pair reading of the
reference's formula, labelling, the character-budget cut, and a classifier trained on labelled
real documents that ranks a held-out pool."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import read_jsonl_zst
from tokensieve.exceptions import InvalidArgumentError, NaNScoreError
from tokensieve.methods import preselect


def test_spec_vector() -> None:
    benchmark = [75, 76, 77, 78]  # models A..D
    docs = [(4, 3, 2, 1), (4, 3, 1, 2), (1, 2, 3, 4), (4, 4, 2, 1)]
    losses = np.array(docs, dtype=float).T  # [models, documents]
    np.testing.assert_array_equal(preselect.concordance_scores(losses, benchmark), [6, 5, 0, 5])
    normalized = preselect.concordance_scores(losses, benchmark, normalize=True)
    np.testing.assert_allclose(normalized, [1.0, 0.8333333, 0.0, 0.8333333], atol=1e-7)


def pairwise_reference(losses: np.ndarray, benchmark: np.ndarray) -> list[int]:
    """The reference's loop: for every pair of models, +1 when the benchmark order and the loss
    order disagree in sign (better model, lower loss)."""
    scores = []
    for c in losses.T:
        s = 0
        for i, j in itertools.combinations(range(len(benchmark)), 2):
            b_i, b_j = benchmark[i], benchmark[j]
            if (b_i > b_j and c[i] < c[j]) or (b_i < b_j and c[i] > c[j]):
                s += 1
        scores.append(s)
    return scores


def test_matches_the_pairwise_formula_with_ties() -> None:
    rng = np.random.default_rng(11)
    for n in (2, 3, 6, 9):
        losses = rng.integers(0, 4, size=(n, 200)).astype(float)  # many ties
        benchmark = rng.integers(0, 3, size=n).astype(float)
        got = preselect.concordance_scores(losses, benchmark)
        assert got.tolist() == pairwise_reference(losses, benchmark)


def test_tables_missing_scores_and_labels() -> None:
    pa = pytest.importorskip("pyarrow")
    tables = [
        pa.table({"id": ["a", "b", "c"], "sum_nll": [4.0, 1.0, None]}),
        pa.table({"id": ["c", "b", "a"], "sum_nll": [2.0, 2.0, 3.0]}),
    ]
    s = preselect.concordance_scores(tables, [1.0, 2.0])
    assert s[0] == 1 and s[1] == 0 and np.isnan(s[2])  # c: model 0 did not score it

    scores = np.array([3, 0, 3, 2, np.nan, 1, 0, 3])  # 3 models: 3 is a perfect ranking
    labels = preselect.preselect_labels(scores, 3)
    # positives 0, 2, 7; negatives: the three lowest scores, earlier first among ties: 1, 6, 5
    assert labels.tolist() == [1, 0, 1, -1, -1, 0, 0, 1]


def test_select_by_characters() -> None:
    p = np.array([0.9, 0.2, 0.7, 0.7, 0.1])
    chars = np.array([10, 50, 20, 5, 15])  # 100 characters
    # descending: 0.9 (10), 0.7 (20), 0.7 (5), 0.2 (50): the running sum first exceeds 30 at
    # the second 0.7, so the threshold is 0.7 and both 0.7s are kept
    keep, threshold = preselect.select_by_characters(p, chars, 0.3)
    assert threshold == 0.7 and keep.tolist() == [True, False, True, True, False]
    keep, threshold = preselect.select_by_characters(p, chars, 1.0)
    assert threshold == 0.1 and keep.all()
    with pytest.raises(NaNScoreError):
        preselect.select_by_characters([0.5, np.nan], [1, 1])
    keep, _ = preselect.select_by_characters([0.5, np.nan], [1, 1], 0.5, nan_policy="reject")
    assert keep.tolist() == [True, False]


def test_classifier_learns_the_predictive_documents(shared_data: Path) -> None:
    """Documents whose (synthetic) losses follow the benchmark ranking are encyclopedic text;
    the others are web posts. The classifier trained on the labels ranks held-out documents of the
    same two kinds apart, and the character cut keeps the predictive kind."""
    wiki = [r["text"] for r in read_jsonl_zst(shared_data / "target/wikipedia_en.jsonl.zst", 120)]
    blogs = [r["text"] for r in read_jsonl_zst(shared_data / "raw_pool/blogs.jsonl.zst", 120)]
    train = wiki[:80] + blogs[:80]
    rng = np.random.default_rng(0)
    benchmark = np.array([70.0, 72.0, 75.0, 80.0])
    losses = np.empty((4, len(train)))
    for d in range(len(train)):
        order = np.argsort(-benchmark) if d < 80 else rng.permutation(4)  # concordant for wiki
        losses[order, d] = np.sort(rng.uniform(1, 3, size=4))
    scores = preselect.concordance_scores(losses, benchmark)
    labels = preselect.preselect_labels(scores, 4)
    assert (labels[:80] == 1).all() and (labels[80:] == 0).sum() >= 40
    # the reference's 3 epochs at lr 0.1 are for ~400K documents: 160 need more passes, and a
    # small bucket table (fastText's 2M rows x dim 100 take seconds to initialise)
    model = preselect.train_preselect_classifier(
        train, labels, epoch=20, lr=0.5, dim=16, bucket=100_000, seed=1
    )
    assert model.args["wordNgrams"] == 2
    pool = wiki[80:] + blogs[80:]
    p = model.score(pool, preselect.POSITIVE_LABEL, newline=" ")
    auc = (p[:40, None] > p[None, 40:]).mean()  # P(a wiki document outranks a blog post)
    assert auc > 0.9, auc
    keep, _ = preselect.select_by_characters(p, [len(t) for t in pool], 0.3)
    assert keep[:40].sum() > 3 * keep[40:].sum()


def test_bad_inputs() -> None:
    with pytest.raises(InvalidArgumentError, match="N >= 2"):
        preselect.concordance_scores([[1.0, 2.0]], [1.0])
    with pytest.raises(InvalidArgumentError, match="positive"):
        preselect.train_preselect_classifier(["a", "b"], [0, 0])
