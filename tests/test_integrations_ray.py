"""Ray Data integration on a local 2-CPU cluster: the reader accounts for every record, DSIR
fitted and selected on the cluster equals the single-machine API bit for bit, batch functions
on actors equal in-process calls, and a worker killed mid-job still gives every row once."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import in_shared_mapping, read_jsonl_zst
from tokensieve import DSIR
from tokensieve.dsir import gumbel_noise, source_identities
from tokensieve.exceptions import CorpusNotFoundError, InvalidArgumentError
from tokensieve.fasttext import load_model
from tokensieve.integrations.batch import DSIRWeights, FastTextScores
from tokensieve.io import Files

pytest.importorskip("ray")
tsray = pytest.importorskip("tokensieve.integrations.ray")

pytestmark = [
    pytest.mark.ray,
    # Ray Data warns when a pool is larger than the blocks it gets, which small test data makes true.
    pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning"),
    # Ray's own deprecations, between its modules.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Raw JSONL (with a blank line, malformed JSON and a number for a text), zstd JSONL and
    Parquet (with an extra column and a null text); two target files."""
    zstandard = pytest.importorskip("zstandard")
    root = tmp_path_factory.mktemp("ray_corpus")
    news = [json.dumps(r) for r in read_jsonl_zst(shared_data / "raw_pool/newsgroups20.jsonl.zst", 200)]
    news[5:5] = ["", "{not json", json.dumps({"text": 5})]
    imdb = read_jsonl_zst(shared_data / "raw_pool/imdb_reviews.jsonl.zst", 150)
    reuters = read_jsonl_zst(shared_data / "raw_pool/reuters21578.jsonl.zst", 150)
    texts = [r["text"] for r in reuters]
    texts[3] = None
    zst = root / "b.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in imdb).encode()))
    parquet = root / "c.parquet"
    pq.write_table(pa.table({"text": texts, "id": [r["id"] for r in reuters]}), parquet, row_group_size=64)
    wiki = read_jsonl_zst(shared_data / "target/wikipedia_en.jsonl.zst", 50)
    books = read_jsonl_zst(shared_data / "target/gutenberg_books.jsonl.zst", 60)
    return {
        "raw": [write_jsonl(root / "a.jsonl", news), zst, parquet],
        "wiki": [write_jsonl(root / "wiki.jsonl", [json.dumps(r) for r in wiki])],
        "books": [write_jsonl(root / "books.jsonl", [json.dumps(r) for r in books])],
    }


@pytest.fixture(scope="module")
def single(corpus) -> DSIR:
    return DSIR(Files(corpus["raw"]), Files(corpus["wiki"]), num_threads=2).fit()


@pytest.fixture(scope="module")
def raw_ds(ray_cluster, corpus):
    return tsray.read_corpus(Files(corpus["raw"]), rows_per_block=100).materialize()


@pytest.fixture(scope="module")
def fitted(raw_ds, corpus) -> DSIR:
    # The target is a local file: counted in this process, the raw pool on the cluster.
    return tsray.fit_dsir(raw_ds, Files(corpus["wiki"]), actors=2, batch_size=128)


def single_ids(dsir: DSIR, indices: np.ndarray) -> list[tuple[str, int]]:
    """(source identity, position) of single-machine document indices, in their order."""
    names = source_identities([s.name for s in dsir.report.sources])
    starts = np.cumsum([0] + [s.documents for s in dsir.report.sources])
    source_of = np.searchsorted(starts, indices, side="right") - 1
    return [(names[s], int(i - starts[s])) for s, i in zip(source_of, indices, strict=True)]


def ray_ids(selection) -> list[tuple[str, int]]:
    return sorted((source, int(p)) for source, positions in selection.positions.items() for p in positions)


def to_arrow(ds) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")


def rows_by_id(table: pa.Table) -> dict[tuple[str, int], dict]:
    rows = [r for r in table.to_pylist() if r["skipped"] is None]
    by_id = {(r["source"], r["position"]): r for r in rows}
    assert len(by_id) == len(rows), "a document appears twice"
    return by_id


def test_read_corpus_gives_every_record_a_row_with_the_reader_s_identity(raw_ds, single, corpus):
    table = to_arrow(raw_ds)
    report = single.report
    assert table.num_rows == report.records
    assert Counter(r for r in table["skipped"].to_pylist() if r) == Counter(report.skipped)
    documents = rows_by_id(table)
    assert len(documents) == report.documents
    # Python's own readers give the same documents in the same order.
    expected = [json.loads(line)["text"] for line in corpus["raw"][0].read_text().splitlines()[:5]]
    assert [documents["a.jsonl", i]["text"] for i in range(5)] == expected
    reuters = pq.read_table(corpus["raw"][2]).to_pylist()
    kept = [r for r in reuters if r["text"] is not None]
    assert [documents["c.parquet", i]["id"] for i in range(len(kept))] == [r["id"] for r in kept]
    assert documents["c.parquet", 3]["text"] == kept[3]["text"]
    skipped = [r for r in table.to_pylist() if r["skipped"]]
    assert {(r["source"], r["skipped"], r["line"]) for r in skipped if r["line"]} == {
        ("a.jsonl", "malformed_json", 7),
        ("a.jsonl", "not_a_string", 8),
        ("c.parquet", "missing_field", 4),
    }


def test_fit_sums_the_single_machine_counts(fitted, single):
    np.testing.assert_array_equal(fitted.raw_counts, single.raw_counts)
    np.testing.assert_array_equal(fitted.target_counts, single.target_counts)
    np.testing.assert_array_equal(fitted.log_diff, single.log_diff)


def test_weights_on_actors_equal_the_single_machine_weights(raw_ds, single):
    table = to_arrow(tsray.apply(raw_ds, DSIRWeights(single), actors=2, batch_size=100))
    documents = rows_by_id(table)
    ids = single_ids(single, np.arange(single.report.documents))
    ours = np.array([documents[i]["dsir_log_weight"] for i in ids])
    np.testing.assert_array_equal(ours, single.weights())
    assert [documents[i]["dsir_tokens"] for i in ids] == single.tokens.tolist()
    assert all(r["dsir_log_weight"] is None for r in table.to_pylist() if r["skipped"])
    # Only the identity kept beside the weights: the same numbers, no text column.
    slim = to_arrow(tsray.apply(raw_ds, DSIRWeights(single), actors=2, keep_columns=["source", "position"]))
    assert slim.column_names == ["source", "position", "dsir_log_weight", "dsir_tokens"]
    slim_rows = {(r["source"], r["position"]): r for r in slim.to_pylist() if r["position"] is not None}
    np.testing.assert_array_equal([slim_rows[i]["dsir_log_weight"] for i in ids], single.weights())


def test_gumbel_selection_equals_the_single_machine_one(raw_ds, fitted, single, tmp_path):
    reference = single.resample(120, seed=5, out=tmp_path / "single")
    selection = tsray.select_dsir(raw_ds, fitted, 120, seed=5, actors=2, batch_size=100)
    assert ray_ids(selection) == sorted(single_ids(single, reference.indices))
    ours, theirs = selection.manifest["counts"], json.loads(reference.manifest.read_text())["counts"]
    for key in ("records", "documents", "selected", "not_selected", "too_short", "skipped"):
        assert ours[key] == theirs[key], key
    manifest = json.loads(selection.write(tmp_path / "ray").read_text())
    shards = [pq.read_table(tmp_path / "ray" / s["path"]) for s in manifest["shards"]]
    written = pa.concat_tables(shards, promote_options="default")
    assert sum(s["documents"] for s in manifest["shards"]) == written.num_rows == 120
    ids = zip(written["source"].to_pylist(), written["position"].to_pylist(), strict=True)
    assert sorted(ids) == ray_ids(selection)


def test_top_k_with_two_targets_and_per_token_weights_equals_the_single_machine_one(raw_ds, fitted, corpus):
    targets = {"wiki": Files(corpus["wiki"]), "books": Files(corpus["books"])}
    single = DSIR(Files(corpus["raw"]), targets, num_threads=2).fit()
    # The raw counts summed on the cluster, the targets' in this process.
    estimator = DSIR.from_counts(fitted.raw_counts, single.target_counts, targets=list(targets))
    reference = single.resample(100, method="topk", normalize=True)
    selection = tsray.select_dsir(raw_ds, estimator, 100, method="topk", normalize=True, actors=2)
    assert len(selection.cutoffs) == 2 and all(q > 0 for q in selection.manifest["selection"]["quotas"])
    assert ray_ids(selection) == sorted(single_ids(single, reference.indices))


def test_approximate_cutoff_selects_about_k_by_a_threshold_on_the_same_keys(raw_ds, fitted, single):
    pytest.importorskip("datasketches")
    selection = tsray.select_dsir(raw_ds, fitted, fraction=0.4, seed=1, exact=False, actors=2)
    threshold = selection.cutoffs[0].key
    eligible = np.flatnonzero(single.tokens >= single.min_example_length)
    ids = single_ids(single, eligible)
    keys = single.weights()[eligible] + gumbel_noise([s for s, _ in ids], [p for _, p in ids], seed=1)
    assert ray_ids(selection) == sorted(i for i, key in zip(ids, keys, strict=True) if key >= threshold)
    assert selection.k == round(0.4 * len(eligible))
    assert abs(len(ray_ids(selection)) - selection.k) <= 0.02 * len(eligible)


class KillOnce(FastTextScores):
    """Kills its worker process in the middle of the job, on its third batch, once (a marker file
    remembers): the batches before it are done, the one it was on must be redone."""

    def __init__(self, *args, marker: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = marker
        self.calls = 0

    def _compute(self, texts):
        self.calls += 1
        if self.calls == 3 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return super()._compute(texts)


def test_a_killed_worker_is_retried_and_every_row_comes_once(raw_ds, single, news_or_mail, tmp_path):
    marker = tmp_path / "killed"
    fn = KillOnce(news_or_mail, "news", marker=str(marker))
    table = to_arrow(tsray.apply(raw_ds, fn, actors=1, batch_size=64))
    assert marker.exists()
    assert table.num_rows == single.report.records
    documents = rows_by_id(table)
    ids = single_ids(single, np.arange(single.report.documents))
    model = load_model(news_or_mail)
    expected = model.score(Files(single.report.sources[0].name), "news", newline="splitlines", strip=True)
    ours = np.array([documents[i]["fasttext_score"] for i in ids if i[0] == "a.jsonl"], dtype=np.float32)
    np.testing.assert_array_equal(ours, expected)


class SharingProbe(FastTextScores):
    """Adds a column saying whether the actor's model computes from shared memory holding the
    array it got (through its own second mapping of those pages, on 2 MiB pages)."""

    given = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return (*super().column_names, "shares")

    def use_shared_arrays(self, arrays) -> None:
        super().use_shared_arrays(arrays)
        self.given = arrays["input_matrix"]

    def _compute(self, texts):
        computed = super()._compute(texts)
        matrix = self.model.get_input_matrix()
        shares = (
            self.given is not None
            and not self.given.flags.writeable
            and in_shared_mapping(self.given)
            and in_shared_mapping(matrix)
            and np.array_equal(matrix, self.given)
        )
        computed.columns["shares"] = pa.array([shares] * len(texts))
        return computed


def test_actors_share_a_fasttext_input_matrix_from_the_object_store(raw_ds, news_or_mail):
    fn = SharingProbe(news_or_mail, "news")
    tables = {
        share: to_arrow(tsray.apply(raw_ds, fn, actors=2, batch_size=128, share_arrays=share)).sort_by(
            [("source", "ascending"), ("position", "ascending")]
        )
        for share in (True, False)
    }
    assert pc.all(tables[True]["shares"]).as_py()
    assert not pc.any(tables[False]["shares"]).as_py()
    in_process = FastTextScores(news_or_mail, "news").with_columns(tables[True].select(["text"]))
    for table in tables.values():
        assert table["fasttext_score"].equals(in_process["fasttext_score"])
    assert pc.count(in_process["fasttext_score"]).as_py() > 100


def test_bad_arguments_raise_typed_errors(raw_ds, fitted, tmp_path):
    with pytest.raises(CorpusNotFoundError):
        tsray.read_corpus([tmp_path / "missing.jsonl"])
    with pytest.raises(InvalidArgumentError, match="chunk_words"):
        tsray.fit_dsir(raw_ds, ["some target"], chunk_words=128)
    with pytest.raises(InvalidArgumentError, match="method"):
        tsray.select_dsir(raw_ds, fitted, 10, method="replacement")
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        tsray.apply(raw_ds, DSIRWeights(fitted), batch_size=0)
    with pytest.raises(InvalidArgumentError, match="no column 'id' to keep"):
        DSIRWeights(fitted).with_columns(to_arrow(raw_ds.limit(3)), keep_columns=["id"])
    with pytest.raises(InvalidArgumentError, match="'position'"):  # a materialised dataset's schema is known
        tsray.select_dsir(raw_ds.drop_columns(["position"]), fitted, 10)
