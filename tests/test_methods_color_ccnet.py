"""CoLoR-Filter (methods.md §3) and perplexity filtering (§9.1): test vectors, tables matched on
ids, bands, and the NaN policy."""

from __future__ import annotations

import numpy as np
import pytest

from tokensieve.exceptions import InvalidArgumentError, MissingColumnError, NaNScoreError
from tokensieve.methods import color_filter, perplexity_filter

PRIOR = [3.0, 2.5, 4.0, 3.5, 2.0, 3.75, 3.0, 2.75]
CONDITIONAL = [2.0, 2.625, 3.875, 2.25, 1.875, 2.25, 3.125, 2.0]


def test_color_vector() -> None:
    scores = color_filter.color_scores(PRIOR, CONDITIONAL)
    np.testing.assert_array_equal(scores, [1.0, -0.125, 0.125, 1.25, 0.125, 1.5, -0.125, 0.75])
    assert color_filter.color_select(scores, 4).tolist() == [3, 5]  # argsort order
    assert color_filter.color_select(scores, k=4).tolist() == [7, 0, 3, 5]


def test_color_ties_keep_the_later_sequence_and_k_counts_live_scores() -> None:
    assert color_filter.color_select([1.0, 2.0, 2.0, 0.0], k=1).tolist() == [2]
    scores = [1.0, np.nan, 3.0, 2.0, np.nan]
    with pytest.raises(NaNScoreError, match="2 NaN"):
        color_filter.color_select(scores, 2)
    # N = 3 live scores, int(3 / 2) = 1
    assert color_filter.color_select(scores, 2, nan_policy="reject").tolist() == [2]


def test_color_tables_are_matched_on_ids() -> None:
    pa = pytest.importorskip("pyarrow")
    prior = pa.table({"id": ["a", "b", "c"], "mean_nll": PRIOR[:3]})
    shuffled = [CONDITIONAL[2], CONDITIONAL[0], CONDITIONAL[1]]
    conditional = pa.table({"id": ["c", "a", "b"], "mean_nll": shuffled})
    np.testing.assert_array_equal(color_filter.color_scores(prior, conditional), [1.0, -0.125, 0.125])
    with pytest.raises(MissingColumnError, match="the conditional has no column 'mean_nll'") as error:
        color_filter.color_scores(prior, conditional.rename_columns(["id", "loss"]))
    assert error.value.column == "mean_nll"
    with pytest.raises(InvalidArgumentError, match="two tables or two arrays"):
        color_filter.color_scores(prior, CONDITIONAL[:3])


def test_color_bad_sizes() -> None:
    with pytest.raises(InvalidArgumentError, match="larger than the 8"):
        color_filter.color_select(PRIOR, k=9)
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        color_filter.color_select(PRIOR, 4, k=2)


def test_ccnet_perplexity_vector() -> None:
    # two lines, (log10 score, words) = (-12, 5) and (-9, 3)
    assert perplexity_filter.ccnet_perplexity([-12, -9], [5, 3], ndigits=None) == pytest.approx(
        125.89254117941675, rel=1e-15
    )
    assert perplexity_filter.ccnet_perplexity([-12, -9], [5, 3]) == 125.9


def test_ccnet_buckets() -> None:
    pp = np.array([100.0, 340.0, 400.0, 520.0, 800.0, np.nan])
    buckets = perplexity_filter.ccnet_buckets(pp, perplexity_filter.CCNET_EN_CUTOFFS, nan_policy="reject")
    assert buckets.tolist() == ["head", "middle", "middle", "tail", "tail", "rejected"]
    with pytest.raises(NaNScoreError):
        perplexity_filter.ccnet_buckets(pp)
    pool = np.arange(1.0, 101.0)
    cuts = perplexity_filter.percentile_cutoffs(pool)
    assert cuts == (np.percentile(pool, 30), np.percentile(pool, 60))
    counts = {b: int((perplexity_filter.ccnet_buckets(pool) == b).sum()) for b in perplexity_filter.BUCKETS}
    assert counts == {"head": 30, "middle": 30, "tail": 40}


def test_perplexity_bands() -> None:
    pp = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    assert np.flatnonzero(perplexity_filter.perplexity_band(pp, 0.5, "low")).tolist() == [1, 3, 4]
    assert np.flatnonzero(perplexity_filter.perplexity_band(pp, 0.5, "high")).tolist() == [0, 2, 5]
    # k = 2 of 6 around the median: ranks 2 and 3 (values 3 and 4)
    assert np.flatnonzero(perplexity_filter.perplexity_band(pp, 1 / 3, "middle")).tolist() == [2, 4]
