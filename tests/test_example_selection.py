"""benches/example_selection.py at its toy size: the whole pipeline runs on the shared data, its
selections keep the budget, and a second run with the same seed gives the same numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pa = pytest.importorskip("pyarrow")

from conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_example():
    path = ROOT / "benches" / "example_selection.py"
    spec = importlib.util.spec_from_file_location("example_selection", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


example = load_example()


def without_timings(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "seconds"}


def test_the_toy_pipeline_runs_keeps_the_budget_and_is_deterministic(shared_data: Path) -> None:
    settings = example.Settings.quick()
    results = example.run(shared_data, settings, log=lambda _: None)

    json.dumps(results)  # what the results file holds
    n_models = len(settings.reference_models)
    histogram = results["preselect"]["concordance_histogram"]
    assert sum(histogram.values()) == settings.scored_docs
    # positives: the perfectly concordant documents; negatives: as many others
    assert results["preselect"]["positives"] == histogram[str(n_models * (n_models - 1) // 2)] > 0
    assert results["preselect"]["negatives"] == results["preselect"]["positives"]
    assert 0 < results["perplexity_correlations"]["included"] < settings.scored_docs

    arms = results["arms"]
    assert set(arms) == {"preselect", "perplexity_correlations", "random_0"}
    budget = settings.fraction * results["data"]["pool_characters"]
    # the random arm: the top documents until their characters first exceed the budget
    assert budget < arms["random_0"]["characters"] <= budget + settings.max_chars
    for method in ("preselect", "perplexity_correlations"):
        # the methods' classifiers can tie (duplicate documents): every tied document is kept
        cut = results[method]["cut"]
        assert cut["characters_above_threshold"] <= budget < arms[method]["characters"], method
        assert cut["documents_at_threshold"] >= 1
        at_most = cut["characters_above_threshold"] + cut["documents_at_threshold"] * settings.max_chars
        assert arms[method]["characters"] <= at_most, method
    for name, arm in arms.items():
        assert math.isclose(sum(arm["composition"].values()), 1.0, abs_tol=1e-3)
        assert len(arm["runs"]) == settings.model_seeds
        for run in arm["runs"]:
            for split in ("target", "benchmark_test"):
                assert 0 < run[split]["bits_per_byte"] < 8, (name, split)
    overlap = results["selection_overlap_jaccard"]
    assert all(0 <= v < 1 for v in overlap.values())
    # the benchmark errors that ranked the models are those the report lists
    assert "reference models" in example.report(results)

    again = example.run(shared_data, settings, log=lambda _: None)
    assert without_timings(again) == without_timings(results)


def test_preselect_without_negatives_trains_no_classifier() -> None:
    # every document's losses rank the models as the benchmark does: nothing to contrast
    pool = [example.Doc(f"document {i} " * 5, "blogs") for i in range(6)]
    corpora = example.Corpora({"blogs": []}, pool, [], [], [])
    ids = [str(i) for i in range(len(pool))]
    tables = [pa.table({"id": ids, "sum_nll": np.full(len(pool), 10.0 - m)}) for m in range(3)]
    benchmark_bpb = np.array([3.0, 2.5, 2.0])  # model 2 best, as its losses say
    keep, details = example.preselect(tables, benchmark_bpb, corpora, example.Settings.quick())
    assert keep is None
    assert details["positives"] == len(pool) and details["negatives"] == 0
    assert "no classifier" in details["skipped"]
