"""Generic selections and :func:`select_from_tables`: ties, the NaN policy, typed errors for bad
input, and every method accounting for every row."""

from __future__ import annotations

import numpy as np
import pytest

from tokensieve.exceptions import InvalidArgumentError, MissingColumnError, NaNScoreError
from tokensieve.methods import select_from_tables, threshold_mask, top_k

pa = pytest.importorskip("pyarrow")


def test_top_k_ties_and_nan_policy() -> None:
    scores = np.array([2.0, 5.0, 5.0, np.nan, 1.0, 5.0])
    assert top_k(scores, 2, nan_policy="reject").tolist() == [1, 2]  # ties: the earlier first
    assert top_k(scores, 2, largest=False, nan_policy="reject").tolist() == [4, 0]
    with pytest.raises(NaNScoreError, match=r"1 NaN value\(s\) \(rows \[3\]\)") as error:
        top_k(scores, 2)
    assert error.value.count == 1
    with pytest.raises(InvalidArgumentError, match="k = 6 is larger than the 5"):
        top_k(scores, 6, nan_policy="reject")
    with pytest.raises(InvalidArgumentError, match="non-negative integer"):
        top_k(scores, -1, nan_policy="reject")


def test_threshold_mask() -> None:
    scores = [1.0, 2.0, 3.0, float("nan")]
    assert threshold_mask(scores, at_least=2.0, nan_policy="reject").tolist() == [False, True, True, False]
    assert threshold_mask(scores, at_least=1.5, at_most=2.5, nan_policy="reject").tolist() == [
        False,
        True,
        False,
        False,
    ]
    with pytest.raises(InvalidArgumentError, match="at_least, at_most or both"):
        threshold_mask(scores)


def table(**columns: list) -> object:
    return pa.table({"id": [f"d{i}" for i in range(len(next(iter(columns.values()))))], **columns})


def test_every_method_accounts_for_every_row() -> None:
    rng = np.random.default_rng(0)
    n = 40
    nll = rng.uniform(1, 4, n)
    nll[[3, 17]] = np.nan
    scores = table(
        mean_nll=nll.tolist(),
        perplexity=np.exp(nll).tolist(),
        min_k=(-nll).tolist(),
        bits_per_byte=(nll / 3).tolist(),
        tokens=rng.integers(10, 100, n).tolist(),
    )
    conditional = table(mean_nll=(nll - rng.uniform(0, 1, n)).tolist())
    other_model = table(bits_per_byte=rng.uniform(0.3, 1.5, n).tolist(), tokens=[50] * n)
    cases = [
        ("top-k", [scores], {"k": 5}),
        ("bottom-k", [scores], {"fraction": 0.25}),
        ("threshold", [scores], {"at_most": 2.0}),
        ("ccnet", [scores], {}),
        ("color", [scores, conditional], {"tau": 4}),
        ("min-k", [scores], {"threshold": -2.5}),
        ("perplexity-correlations", [scores, other_model], {"benchmark_errors": [0.3, 0.5]}),
    ]
    for method, tables, options in cases:
        result = select_from_tables(method, tables, nan_policy="reject", **options)
        counts = result.counts
        assert counts["rows"] == n and counts["rejected_nan"] == 2, method
        assert counts["selected"] + counts["rejected"] + counts["rejected_nan"] == n, method
        assert not result.selected[[3, 17]].any(), method
        with pytest.raises(NaNScoreError):
            select_from_tables(method, tables, **options)
    assert select_from_tables("top-k", [scores], k=5, nan_policy="reject").counts["selected"] == 5
    assert select_from_tables("bottom-k", [scores], fraction=0.25, nan_policy="reject").details["k"] == 10
    assert select_from_tables("color", [scores, conditional], tau=4, nan_policy="reject").details["k"] == 9


def test_top_k_from_tables_is_the_top_k_of_the_column() -> None:
    scores = table(mean_nll=[3.0, 1.0, 2.0, 5.0])
    result = select_from_tables("top-k", [scores], k=2)
    assert result.selected.tolist() == [True, False, False, True]
    assert result.ids == ["d0", "d1", "d2", "d3"]


def test_bad_requests_raise_typed_errors() -> None:
    scores = table(mean_nll=[3.0, 1.0])
    with pytest.raises(MissingColumnError, match=r"table 0 has no column 'perplexity'; its columns are \["):
        select_from_tables("ccnet", [scores])
    with pytest.raises(InvalidArgumentError, match="k = 3 is larger than the 2"):
        select_from_tables("top-k", [scores], k=3)
    with pytest.raises(InvalidArgumentError, match=r"does not read \['tau'\]"):
        select_from_tables("top-k", [scores], k=1, tau=2)
    with pytest.raises(InvalidArgumentError, match="reads 2 score table"):
        select_from_tables("color", [scores], tau=2)
    with pytest.raises(InvalidArgumentError, match="one benchmark error per score table"):
        select_from_tables("perplexity-correlations", [scores, scores], benchmark_errors=[0.1])
    with pytest.raises(InvalidArgumentError, match="'d0' occurs more than once"):
        select_from_tables("top-k", [pa.table({"id": ["d0", "d0"], "mean_nll": [1.0, 2.0]})], k=1)
    with pytest.raises(InvalidArgumentError, match="holds string, not numbers"):
        select_from_tables("top-k", [pa.table({"id": ["a"], "mean_nll": ["x"]})], k=1)
    with pytest.raises(InvalidArgumentError, match="method must be one of"):
        select_from_tables("random", [scores])
