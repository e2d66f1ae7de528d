"""datatrove: the fastText and DSIR filters and the annotating step in a LocalPipelineExecutor
with 2 worker processes keep and annotate what the in-process API computes."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import read_jsonl_zst
from tokensieve import DSIR
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.fasttext import PRESETS, load_model
from tokensieve.integrations.batch import DSIRWeights

pytest.importorskip("datatrove")
tsdt = pytest.importorskip("tokensieve.integrations.datatrove")
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def records(shared_data: Path) -> list[dict]:
    records = read_jsonl_zst(shared_data / "raw_pool/bbc_news.jsonl.zst", 120)[20:]
    records += read_jsonl_zst(shared_data / "raw_pool/spamassassin_email.jsonl.zst", 220)[120:]
    records += read_jsonl_zst(shared_data / "raw_pool/reuters21578.jsonl.zst", 100)
    return [{"id": f"doc-{i}", "text": r["text"]} for i, r in enumerate(records)]


@pytest.fixture(scope="module")
def input_dir(records, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datatrove_in")
    for part in range(4):
        with open(root / f"part-{part}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records[part::4])
    return root


@pytest.fixture(scope="module")
def dsir(shared_data: Path, records) -> DSIR:
    target = [r["text"] for r in read_jsonl_zst(shared_data / "target/wikipedia_en.jsonl.zst", 40)]
    return DSIR([r["text"] for r in records], target, buckets=4096, num_threads=1).fit()


def run(step, input_dir: Path, tmp_path: Path) -> tuple[dict[str, dict], dict]:
    """Runs reader -> step -> writer with 4 tasks on 2 workers; returns the written documents by
    id and the step's stats."""
    out = tmp_path / "out"
    LocalPipelineExecutor(
        pipeline=[JsonlReader(str(input_dir)), step, JsonlWriter(str(out))],
        tasks=4,
        workers=2,
        logging_dir=str(tmp_path / "logs"),
    ).run()
    docs = {}
    for path in out.glob("*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                docs[doc["id"]] = doc
    stats = json.loads((tmp_path / "logs" / "stats.json").read_text())
    return docs, next(s["stats"] for s in stats if "tokensieve" in s["name"])


def test_fasttext_filter_keeps_what_the_model_scores_above_the_threshold(
    records, input_dir, news_or_mail, tmp_path
):
    docs, stats = run(tsdt.FastTextFilter(news_or_mail, "news", 0.5, batch_size=16), input_dir, tmp_path)
    scores = load_model(news_or_mail).score([r["text"] for r in records], "news", **PRESETS["datatrove"])
    kept = {r["id"] for r, s in zip(records, scores, strict=True) if s >= 0.5}
    assert 0 < len(kept) < len(records)
    assert set(docs) == kept
    for r, s in zip(records, scores, strict=True):
        if r["id"] in docs:
            assert docs[r["id"]]["metadata"]["tokensieve_score"] == float(s)
    assert stats["dropped_low_score"] == len(records) - len(kept)


def test_fasttext_filter_on_a_model_shared_on_the_machine(records, input_dir, news_or_mail, tmp_path):
    from tokensieve.integrations.batch import FastTextScores
    from tokensieve.integrations.machine import share_arrays_on_machine

    plain, _ = run(tsdt.FastTextFilter(news_or_mail, "news", 0.5, batch_size=16), input_dir, tmp_path / "a")
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    scores = FastTextScores(news_or_mail, "news", preset="datatrove", column="tokensieve_score")
    with share_arrays_on_machine(scores, shm) as fn:
        step = tsdt.FastTextFilter.from_scores(fn, 0.5, batch_size=16)
        assert pickle.loads(pickle.dumps(step)).fn._shared_on_machine  # the workers get the file's place
        shared, _ = run(step, input_dir, tmp_path / "b")
    assert shared == plain


def test_dsir_filter_keeps_weights_above_the_threshold_and_long_enough(records, input_dir, dsir, tmp_path):
    weights, tokens = dsir.weights(), dsir.tokens
    threshold = float(np.median(weights))
    dsir.save(tmp_path / "estimator")
    docs, stats = run(tsdt.DSIRFilter(tmp_path / "estimator", threshold), input_dir, tmp_path)
    long_enough = tokens >= dsir.min_example_length
    kept = {r["id"] for r, w, ok in zip(records, weights, long_enough, strict=True) if ok and w >= threshold}
    assert set(docs) == kept
    by_id = {r["id"]: i for i, r in enumerate(records)}
    assert all(d["metadata"]["dsir_log_weight"] == weights[by_id[k]] for k, d in docs.items())
    assert stats["dropped_too_short"] == int(np.count_nonzero(~long_enough))


def test_annotate_adds_columns_and_drops_nothing(records, input_dir, dsir, tmp_path):
    docs, _ = run(tsdt.Annotate(DSIRWeights(dsir), batch_size=32), input_dir, tmp_path)
    assert len(docs) == len(records)
    got = [docs[r["id"]]["metadata"] for r in records]
    np.testing.assert_array_equal([m["dsir_log_weight"] for m in got], dsir.weights())
    assert [m["dsir_tokens"] for m in got] == dsir.tokens.tolist()


def test_filters_load_lazily_and_check_their_arguments(dsir, news_or_mail, tmp_path):
    step = tsdt.FastTextFilter(tmp_path / "not-yet-there.bin", "news", 0.5)  # nothing read yet
    assert pickle.loads(pickle.dumps(step))._fn is None
    two = DSIR.from_counts(
        dsir.raw_counts, np.stack([dsir.target_counts[0]] * 2), targets=["a", "b"], buckets=4096
    )
    with pytest.raises(InvalidArgumentError, match="name one"):
        tsdt.DSIRFilter(two, 0.0)
    with pytest.raises(InvalidArgumentError, match="no target"):
        tsdt.DSIRFilter(two, 0.0, target="c")
    assert tsdt.DSIRFilter(two, 0.0, target="b").filter_batch([]) == []
    # A fitted estimator is kept as its arrays, not with the pool it was fitted on.
    pool_bytes = sum(len(t.encode()) for t in dsir.raw)
    assert len(pickle.dumps(tsdt.DSIRFilter(dsir, 0.0))) < pool_bytes / 4
