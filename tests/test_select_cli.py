"""``tokensieve select``: score tables in, selected ids and a manifest out; the same selection as
the API (and, for perplexity correlations, as the reference package); typed errors as exit code 2
with a message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tokensieve.cli import main
from tokensieve.methods import color_filter

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

N = 60


def write(path: Path, **columns: object) -> str:
    pq.write_table(pa.table({"id": [f"doc-{i:03d}" for i in range(N)], **columns}), path)
    return str(path)


@pytest.fixture
def scores(tmp_path: Path) -> str:
    rng = np.random.default_rng(1)
    nll = rng.uniform(1.0, 4.0, N)
    return write(
        tmp_path / "scores.parquet",
        tokens=rng.integers(20, 200, N),
        mean_nll=nll,
        perplexity=np.exp(nll),
        min_k=-nll - rng.uniform(0, 1, N),
    )


def read_selected(out: Path) -> tuple[list[dict], dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    name = manifest["output"]["file"]
    if name.endswith(".jsonl"):
        rows = [json.loads(line) for line in (out / name).read_text().splitlines()]
    else:
        rows = pq.read_table(out / name).to_pylist()
    return rows, manifest


def test_top_k_writes_ids_and_manifest(
    scores: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["select", "--method", "top-k", "--scores", scores, "--k", "7", "--out", str(out)]) == 0
    assert "selected 7 / rejected 53 / NaN score 0 of 60 rows" in capsys.readouterr().out
    rows, manifest = read_selected(out)
    nll = pq.read_table(scores).column("mean_nll").to_numpy()
    expected = sorted(np.argsort(-nll, kind="stable")[:7])
    assert [r["id"] for r in rows] == [f"doc-{i:03d}" for i in expected]  # input order
    np.testing.assert_array_equal([r["score"] for r in rows], nll[expected])
    assert manifest["counts"] == {"rows": 60, "selected": 7, "rejected": 53, "rejected_nan": 0}
    assert manifest["inputs"][0]["rows"] == 60 and len(manifest["inputs"][0]["sha256"]) == 64
    config = {"column": "mean_nll", "id_column": "id", "nan_policy": "raise", "k": 7, "fraction": None}
    assert manifest["config"] == config and manifest["method"] == "top-k"


def test_ccnet_jsonl_with_buckets(scores: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["select", "--method", "ccnet", "--scores", scores, "--out", str(out), "--format", "jsonl"]
    assert main([*args, "--keep-buckets", "head", "middle"]) == 0
    rows, manifest = read_selected(out)
    assert {r["bucket"] for r in rows} == {"head", "middle"}
    assert manifest["selection"]["buckets"] == {"head": 18, "middle": 18, "tail": 24}
    assert manifest["counts"]["selected"] == len(rows) == 36
    # a rerun in the other format replaces the output
    assert main([*args[:-1], "parquet", "--cutoffs", "10", "20"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "selected.parquet"]
    rows, manifest = read_selected(out)
    pp = pq.read_table(scores).column("perplexity").to_numpy()
    assert len(rows) == int((pp < 10).sum()) and manifest["selection"]["cutoffs_from"] == "given"


def test_color_from_two_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    prior_nll, cond_nll = rng.uniform(2, 4, N), rng.uniform(1.5, 4, N)
    prior = write(tmp_path / "prior.parquet", mean_nll=prior_nll)
    # the conditional file lists the documents in another order
    order = rng.permutation(N)
    cond = tmp_path / "cond.parquet"
    pq.write_table(pa.table({"id": [f"doc-{i:03d}" for i in order], "mean_nll": cond_nll[order]}), cond)
    out = tmp_path / "out"
    args = ["select", "--method", "color", "--scores", prior, str(cond), "--tau", "7", "--out", str(out)]
    assert main(args) == 0
    rows, manifest = read_selected(out)
    expected = color_filter.color_select(color_filter.color_scores(prior_nll, cond_nll), 7)
    assert {r["id"] for r in rows} == {f"doc-{i:03d}" for i in expected} and len(rows) == 8
    assert manifest["selection"]["k"] == 8


@pytest.mark.parametrize("projection", ["linear", "l2"])
def test_perplexity_correlations_matches_the_reference_package(tmp_path: Path, projection: str) -> None:
    """With the ``sign`` estimator, whose values do not tie (the rank-based ones take few values
    for 5 models, and the reference orders ties with an unstable sort)."""
    estimation = pytest.importorskip("perplexity_correlations.estimation")
    projections = pytest.importorskip("perplexity_correlations.projection")
    rng = np.random.default_rng(3)
    models = 5
    bpb = rng.uniform(0.5, 1.5, size=(models, N))
    tokens = rng.integers(50, 500, N)
    errors = rng.uniform(0.2, 0.8, models)
    files = [write(tmp_path / f"m{i}.parquet", bits_per_byte=bpb[i], tokens=tokens) for i in range(models)]
    out = tmp_path / "out"
    args = ["select", "--method", "perplexity-correlations", "--scores", *files, "--out", str(out)]
    args += ["--estimator", "sign", "--projection", projection, "--fraction", "0.2"]
    assert main([*args, "--benchmark-errors", *map(str, errors)]) == 0
    rows, manifest = read_selected(out)
    tau = (tokens / tokens.sum()) / 0.2
    reference = getattr(projections, projection)(estimation.sign(bpb, errors), tau)
    assert [r["id"] for r in rows] == [f"doc-{i:03d}" for i in np.flatnonzero(reference > 0)]
    np.testing.assert_allclose([r["weight"] for r in rows], reference[reference > 0], atol=1e-7)
    assert manifest["selection"]["estimator"] == "sign"


def test_min_k_keeps_the_non_members(scores: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["select", "--method", "min-k", "--scores", scores, "--threshold", "-3", "--out", str(out)]
    assert main(args) == 0
    rows, _ = read_selected(out)
    min_k = pq.read_table(scores).column("min_k").to_numpy()
    assert len(rows) == int((min_k <= -3).sum()) and all(r["score"] <= -3 for r in rows)


def test_errors_exit_2_with_a_message(
    scores: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    base = ["select", "--scores", scores, "--out", out]
    assert main([*base, "--method", "top-k", "--k", "61"]) == 2
    assert "k = 61 is larger than the 60 documents" in capsys.readouterr().err
    assert main([*base, "--method", "top-k", "--k", "3", "--column", "entropy"]) == 2
    assert "has no column 'entropy'" in capsys.readouterr().err
    nan_file = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "mean_nll": [1.0, None, float("nan")]}), nan_file)
    nan_args = ["select", "--scores", str(nan_file), "--out", out, "--method", "bottom-k", "--k", "1"]
    assert main(nan_args) == 2
    assert "hold 2 NaN value(s) (rows [1, 2])" in capsys.readouterr().err
    assert main([*nan_args, "--nan-policy", "reject"]) == 0
    rows, manifest = read_selected(Path(out))
    assert [r["id"] for r in rows] == ["a"] and manifest["counts"]["rejected_nan"] == 2
    assert main([*base, "--method", "top-k", "--k", "1", "--scores", str(tmp_path / "missing.parquet")]) == 2
    assert "missing.parquet: no such file" in capsys.readouterr().err
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert main([*base, "--method", "top-k", "--k", "1", "--scores", str(tmp_path / "bad.parquet")]) == 2
    assert "bad.parquet: not a readable Parquet file" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    other = ["select", "--scores", scores, "--out", str(tmp_path / "other"), "--method", "top-k", "--k", "1"]
    assert main(other) == 2
    assert "holds files tokensieve did not write" in capsys.readouterr().err
