"""DSIR end to end: parity with the installed ``data-selection`` package, determinism, output
accounting, persistence and bad input."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import read_jsonl_zst
from tokensieve import DSIR, _core
from tokensieve.dsir import kl_divergence
from tokensieve.exceptions import CorpusFormatError, FeatureSpaceMismatchError, InvalidArgumentError
from tokensieve.io import Files


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Two raw JSONL files of mixed real documents and one target file."""
    root = tmp_path_factory.mktemp("dsir_corpus")
    raw_a = read_jsonl_zst(shared_data / "raw_pool/newsgroups20.jsonl.zst", 150)
    raw_a += read_jsonl_zst(shared_data / "raw_pool/bbc_news.jsonl.zst", 100)
    raw_b = read_jsonl_zst(shared_data / "raw_pool/imdb_reviews.jsonl.zst", 150)
    raw_b += read_jsonl_zst(shared_data / "raw_pool/reuters21578.jsonl.zst", 120)
    target = read_jsonl_zst(shared_data / "target/wikipedia_en.jsonl.zst", 60)
    return {
        "raw": [write_jsonl(root / "a.jsonl", raw_a), write_jsonl(root / "b.jsonl", raw_b)],
        "target": [write_jsonl(root / "target.jsonl", target)],
    }


@pytest.fixture(scope="module")
def fitted(corpus: dict[str, list[Path]]) -> DSIR:
    return DSIR(Files(corpus["raw"]), Files(corpus["target"]), num_threads=2).fit()


def reference_run(corpus: dict[str, list[Path]], tmp: Path, **resample_args) -> tuple[object, list[str]]:
    """Runs data-selection 1.0.3 with one virtual shard per raw file; returns the estimator and
    the selected lines (stripped, sorted)."""
    data_selection = pytest.importorskip("data_selection")
    ref = data_selection.HashedNgramDSIR(
        [str(p) for p in corpus["raw"]],
        [str(p) for p in corpus["target"]],
        cache_dir=str(tmp / "cache"),
        num_proc=len(corpus["raw"]),
    )
    # The reference pickles its tokenizer into joblib's workers. The module-level nltk tokenizer
    # it defaults to, once used in this process (by another test), holds a compiled pattern whose
    # timeout sentinel does not survive pickling ("timeout not float or None"); a fresh one is
    # the same tokenizer, compiled in each worker.
    from nltk.tokenize import WordPunctTokenizer

    ref.tokenizer = WordPunctTokenizer().tokenize
    ref.fit_importance_estimator(num_tokens_to_fit="all")
    ref.compute_importance_weights()
    out = tmp / "out"
    ref.resample(out_dir=str(out), cache_dir=str(tmp / "resample_cache"), **resample_args)
    lines = sorted(
        line.strip()
        for f in sorted(out.glob("*.jsonl"))
        for line in f.read_text(encoding="utf-8").split("\n")
        if line.strip()
    )
    return ref, lines


def our_lines(paths: list[Path], selection) -> list[str]:
    lines = [
        line.strip() for p in paths for line in p.read_text(encoding="utf-8").split("\n") if line.strip()
    ]
    return sorted(lines[i] for i in selection.indices)


def lines_with_copies(paths: list[Path], selection) -> list[tuple[str, int]]:
    lines = [
        line.strip() for p in paths for line in p.read_text(encoding="utf-8").split("\n") if line.strip()
    ]
    return sorted((lines[i], int(selection.copies[i])) for i in np.flatnonzero(selection.copies))


def test_probabilities_weights_and_top_k_equal_the_reference(corpus, fitted, tmp_path):
    k = 60
    ref, ref_lines = reference_run(corpus, tmp_path, num_to_sample=k, top_k=True)
    np.testing.assert_array_equal(fitted.raw_probs, ref.raw_probs)
    np.testing.assert_array_equal(fitted.target_probs, ref.target_probs)
    np.testing.assert_allclose(fitted.log_diff, ref.log_diff, rtol=1e-15, atol=0)
    ref_weights = np.concatenate(
        [np.load(tmp_path / "cache" / "log_importance_weights" / f"{i}.npy") for i in range(2)]
    )
    ref_lengths = np.concatenate(
        [np.load(tmp_path / "cache" / "perexample_metadata" / f"{i}.npy") for i in range(2)]
    )
    ours = fitted.weights()
    assert ours.shape == ref_weights.shape
    # Relative to the sum of the absolute terms: the weights are sums with cancellation.
    features = fitted.featurizer.transform(
        [json.loads(line)["text"] for p in corpus["raw"] for line in p.read_text().split("\n") if line]
    )
    scale = np.abs(features.astype(np.float64)) @ np.abs(fitted.log_diff)
    assert np.all(np.abs(ours - ref_weights) <= 1e-12 * scale)
    np.testing.assert_array_equal(fitted.tokens, ref_lengths)
    assert our_lines(corpus["raw"], fitted.resample(k, method="topk")) == ref_lines


def test_legacy_numpy_seed_selects_what_the_seeded_reference_selects(corpus, fitted, tmp_path):
    k = 80
    np.random.seed(1234)
    _, ref_lines = reference_run(corpus, tmp_path, num_to_sample=k)
    ours = fitted.resample(k, legacy_numpy_seed=1234, legacy_num_proc=2)
    assert our_lines(corpus["raw"], ours) == ref_lines


def test_selection_ignores_thread_count_file_order_and_location(corpus, tmp_path):
    moved = []
    for path in corpus["raw"]:
        moved.append(tmp_path / "elsewhere" / path.name)
        moved[-1].parent.mkdir(exist_ok=True)
        shutil.copy(path, moved[-1])
    runs, drawn = [], []
    for threads, raw in ((1, corpus["raw"]), (2, corpus["raw"][::-1]), (2, moved)):
        dsir = DSIR(Files(raw), Files(corpus["target"]), num_threads=threads).fit()
        runs.append(our_lines(raw, dsir.resample(50, seed=7)))
        drawn.append(lines_with_copies(raw, dsir.resample(150, seed=7, method="replacement")))
    assert runs[0] == runs[1] == runs[2]
    assert drawn[0] == drawn[1] == drawn[2]
    assert sum(c for _, c in drawn[0]) == 150 and max(c for _, c in drawn[0]) > 1
    other_seed = DSIR(Files(corpus["raw"]), Files(corpus["target"])).fit().resample(50, seed=8)
    assert our_lines(corpus["raw"], other_seed) != runs[0]


def test_gumbel_top_k_samples_in_proportion_to_the_weights():
    # Three documents with known log-weights: inclusion frequencies of a Gumbel top-1 draw must
    # follow softmax(log w). Short identical-length documents of disjoint vocabularies.
    raw = ["alpha " * 3, "beta " * 3, "gamma " * 3]
    dsir = DSIR(raw, ["alpha beta"], ngrams=1, buckets=1 << 20, min_example_length=1)
    dsir.fit()
    w = dsir.weights()
    p = np.exp(w - w.max())
    p /= p.sum()
    picks = np.zeros(3)
    for seed in range(3000):
        picks += dsir.resample(1, seed=seed).copies
    np.testing.assert_allclose(picks / picks.sum(), p, atol=0.03)


@pytest.mark.parametrize("chunk", [1, 2, 1 << 16])
def test_draws_with_replacement_follow_the_weights(monkeypatch, chunk):
    # Documents of known log-weights: the copies of many draws with replacement follow
    # softmax(log w), whatever the chunks the running sums are taken over.
    from tokensieve import dsir as dsir_module

    monkeypatch.setattr(dsir_module, "SELECTION_CHUNK", chunk)
    raw = ["alpha " * 3, "beta " * 3, "gamma " * 3, "delta " * 3, "x"]  # "x" is too short
    dsir = DSIR(raw, ["alpha beta alpha delta"], ngrams=1, buckets=1 << 20, min_example_length=2)
    dsir.fit()
    w = dsir.weights()[:4]
    p = np.exp(w - w.max())
    p /= p.sum()
    copies = np.zeros(5)
    for seed in range(500):
        copies += dsir.resample(4, seed=seed, method="replacement").copies
    assert copies[4] == 0 and copies.sum() == 2000
    np.testing.assert_allclose(copies[:4] / copies.sum(), p, atol=0.03)


def test_write_accounts_for_every_record_and_keeps_original_bytes(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = corpus["raw"][0].read_text().split("\n")
    short = json.dumps({"text": "too short"})
    lines = [good[0], "", "{not json", good[1], '{"text": 5}', '{"other": "x"}', short, *good[2:40]]
    bad.write_bytes(("\n".join(lines) + "\n").encode())
    dsir = DSIR(Files([bad]), Files(corpus["target"]), min_example_length=50).fit()
    selection = dsir.resample(fraction=0.5, out=tmp_path / "out", output_format="jsonl")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    counts = manifest["counts"]
    skipped = sum(counts["skipped"].values())
    assert counts["records"] == len(lines)
    assert counts["selected"] + counts["not_selected"] + counts["too_short"] + skipped == counts["records"]
    assert counts["skipped"] == {"blank_line": 1, "malformed_json": 1, "not_a_string": 1, "missing_field": 1}
    assert counts["too_short"] >= 1
    written = (tmp_path / "out" / "part-00000.jsonl").read_text().split("\n")[:-1]
    documents = [good[0], good[1], short, *good[2:40]]
    assert written == [documents[i] for i in selection.indices]
    assert counts["selected"] == len(selection.indices)
    assert manifest["sources"][0]["sha256"] and manifest["shards"][0]["documents"] == len(written)


def test_line_copying_writes_what_parsing_writes_and_notices_a_changed_file(corpus, tmp_path):
    # With every skipped line known, JSONL is copied line by line without parsing; the parsing
    # path (taken when the report lists only the first skipped records) must write the same.
    path = tmp_path / "mixed.jsonl"
    good = corpus["raw"][1].read_text().split("\n")[:30]
    path.write_text("\n".join([good[0], "{bad", "  ", *good[1:], '{"text": null}']) + "\r\n")
    dsir = DSIR(Files([path]), Files(corpus["target"]), min_example_length=1).fit()
    copies = np.ascontiguousarray(dsir.resample(fraction=0.5, seed=1, method="replacement").copies)
    report = dsir.report
    args = ([str(path)], [report.documents], copies)
    for name, skipped in (("by_line", [[2, 33]]), ("by_parse", None)):
        (tmp_path / name).mkdir()
        _core.write_selected_files(*args[:2], skipped, args[2], tmp_path / name, format="jsonl")
    assert (tmp_path / "by_line/part-00000.jsonl").read_bytes() == (
        tmp_path / "by_parse/part-00000.jsonl"
    ).read_bytes()
    with path.open("a") as f:
        f.write(good[0] + "\n")
    (tmp_path / "again").mkdir()
    for skipped in ([[2, 33]], None):
        with pytest.raises(CorpusFormatError, match="changed while selecting"):
            _core.write_selected_files(*args[:2], skipped, args[2], tmp_path / "again", format="jsonl")
        assert not list((tmp_path / "again").iterdir())


def test_copies_take_a_byte_per_document_unless_drawn_with_replacement(corpus, fitted, tmp_path):
    # 0-or-1 selections keep uint8 copies (memory per document); the writers take uint8 and
    # uint32 copies alike, over files and over texts in memory.
    assert fitted.resample(40, seed=3).copies.dtype == np.uint8
    assert fitted.resample(40, method="topk").copies.dtype == np.uint8
    assert fitted.resample(40, legacy_numpy_seed=3).copies.dtype == np.uint8
    assert fitted.resample(40, method="replacement").copies.dtype == np.uint32
    copies = fitted.resample(40, seed=3).copies
    report = fitted.report
    paths = [str(p) for p in corpus["raw"]]
    counts = [s.documents for s in report.sources]
    texts = [json.loads(line)["text"] for p in corpus["raw"] for line in p.read_text().split("\n") if line]
    for dtype in (np.uint8, np.uint32):
        out = tmp_path / np.dtype(dtype).name
        out.mkdir()
        _core.write_selected_files(paths, counts, None, copies.astype(dtype), out, format="jsonl")
        _core.write_selected_texts(texts, copies.astype(dtype), out / "texts.jsonl", format="jsonl")
    for shard in (tmp_path / "uint8").iterdir():
        assert shard.read_bytes() == (tmp_path / "uint32" / shard.name).read_bytes()
    with pytest.raises(InvalidArgumentError, match="uint8 or uint32"):
        _core.write_selected_texts(texts, copies.astype(np.int64), tmp_path / "bad.jsonl", format="jsonl")


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_selection_counts_by_chunks_equal_whole_array_counts(monkeypatch, fitted, chunk):
    from tokensieve import dsir as dsir_module

    monkeypatch.setattr(dsir_module, "SELECTION_CHUNK", chunk)
    selection = fitted.resample(40, seed=3)
    chosen, eligible = selection.copies > 0, selection.eligible
    for start, end in ((0, None), (5, 77), (13, 13)):
        stop = len(chosen) if end is None else end
        assert selection.counts(start, end) == {
            "selected": int(chosen[start:stop].sum()),
            "not_selected": int((eligible & ~chosen)[start:stop].sum()),
            "too_short": int((~eligible)[start:stop].sum()),
        }


def test_a_rerun_over_a_killed_run_gives_the_same_output(corpus, fitted, tmp_path):
    clean = tmp_path / "clean"
    fitted.resample(40, seed=3, out=clean)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    # What a kill leaves: a half-written shard under its temporary name, a shard from an
    # earlier configuration, and no manifest.
    (crashed / "part-00000.jsonl.zst.tmp").write_bytes(b"\x28\xb5\x2f\xfd garbage")
    (crashed / "part-00009.jsonl.zst").write_bytes(b"old")
    fitted.resample(40, seed=3, out=crashed)
    assert sorted(p.name for p in crashed.iterdir()) == sorted(p.name for p in clean.iterdir())
    for shard in clean.glob("part-*"):
        assert (crashed / shard.name).read_bytes() == shard.read_bytes()


def test_output_directory_with_foreign_files_is_refused(fitted, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="did not write"):
        fitted.resample(5, out=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "at least 1"),
        ({"k": 10**6}, "larger than"),
        ({"fraction": 1.5}, "fraction"),
        ({}, "exactly one"),
        ({"k": 5, "method": "bogus"}, "method"),
    ],
)
def test_bad_resample_arguments_raise(fitted, kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        fitted.resample(**kwargs)


def test_clamp_takes_every_eligible_document(fitted):
    selection = fitted.resample(10**6, clamp=True)
    assert np.array_equal(selection.copies > 0, selection.eligible)


def test_save_and_load_round_trip_and_refuse_another_feature_space(corpus, fitted, tmp_path):
    fitted.save(tmp_path / "est")
    assert not list((tmp_path / "est").glob("*.pkl"))
    loaded = DSIR.load(tmp_path / "est", Files(corpus["raw"]), buckets=10000, num_threads=1)
    np.testing.assert_array_equal(loaded.log_diff, fitted.log_diff)
    np.testing.assert_array_equal(loaded.weights(), fitted.weights())
    with pytest.raises(FeatureSpaceMismatchError, match="buckets: asked 20000, saved 10000"):
        DSIR.load(tmp_path / "est", Files(corpus["raw"]), buckets=20000)
    with pytest.raises(FeatureSpaceMismatchError, match=r"ngrams: asked 3, saved 2.*lowercase: asked False"):
        DSIR.load(tmp_path / "est", Files(corpus["raw"]), ngrams=3, lowercase=False)
    with pytest.raises(InvalidArgumentError, match="not a saved DSIR"):
        DSIR.load(tmp_path / "nowhere", Files(corpus["raw"]))


def test_budget_is_a_seeded_sample_not_a_prefix(corpus):
    def fit(seed: int) -> DSIR:
        return DSIR(
            Files(corpus["raw"]), Files(corpus["target"]), num_tokens_to_fit=20000, fit_seed=seed
        ).fit()

    a, b, c = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(a.raw_counts, b.raw_counts)
    reversed_files = DSIR(Files(corpus["raw"][::-1]), Files(corpus["target"]), num_tokens_to_fit=20000).fit()
    np.testing.assert_array_equal(a.raw_counts, reversed_files.raw_counts)
    assert not np.array_equal(a.raw_counts, c.raw_counts)
    assert 20000 <= a.raw_counts.sum() < 30000
    full = DSIR(Files(corpus["raw"]), Files(corpus["target"])).fit()
    assert np.all(a.raw_counts <= full.raw_counts)
    # A prefix would hold only documents of the first file.
    prefix = DSIR(Files(corpus["raw"][:1]), Files(corpus["target"])).fit()
    assert np.any(a.raw_counts > prefix.raw_counts)


def test_several_targets_share_k_by_proportion(corpus, shared_data, tmp_path):
    books = write_jsonl(
        tmp_path / "books.jsonl", read_jsonl_zst(shared_data / "target/gutenberg_books.jsonl.zst", 20)
    )
    dsir = DSIR(
        Files(corpus["raw"]),
        {"wiki": Files(corpus["target"]), "books": Files([books])},
        target_proportions=[3, 1],
    ).fit()
    assert dsir.weights().shape == (520, 2)
    assert dsir.target_probs.shape == (2, 10000)
    np.testing.assert_allclose(dsir.target_proportions, [0.75, 0.25])
    selection = dsir.resample(41, seed=0)
    assert selection.copies.sum() == 41 and selection.copies.max() == 1


def test_selection_favours_documents_like_the_target(shared_data):
    wiki = [r["text"] for r in read_jsonl_zst(shared_data / "target/wikipedia_en.jsonl.zst", 160)]
    others = read_jsonl_zst(shared_data / "raw_pool/newsgroups20.jsonl.zst", 150)
    others += read_jsonl_zst(shared_data / "raw_pool/imdb_reviews.jsonl.zst", 150)
    # The raw pool: 100 held-out Wikipedia articles, then 300 off-target documents.
    dsir = DSIR(wiki[60:] + [r["text"] for r in others], wiki[:60]).fit()
    selection = dsir.resample(60, seed=0)
    pool_share = dsir.tokens[:100].size / dsir.tokens.size
    assert (selection.indices < 100).mean() > 2 * pool_share


def test_kl_reduction_is_positive_on_the_demo_sample():
    from tokensieve.cli import demo_files

    files = demo_files()
    dsir = DSIR(Files([files["raw"]]), Files([files["target"]])).fit()
    kl = dsir.resample(200, seed=0, kl=True).kl
    assert kl["kl_reduction"] == pytest.approx(kl["kl_random"] - kl["kl_selected"])
    assert kl["kl_reduction"] > 0


def test_kl_random_sample_has_the_selection_s_size_whatever_the_threads_or_file_order(corpus):
    forward = DSIR(Files(corpus["raw"]), Files(corpus["target"]), num_threads=1).fit()
    backward = DSIR(Files(corpus["raw"][::-1]), Files(corpus["target"]), num_threads=2).fit()
    n = forward.report.documents
    sample = forward._uniform_sample(n, 77, seed=5)
    assert sample.sum() == 77
    # The same documents by identity: file b's rows come first in the backward read.
    first = forward.report.sources[0].documents
    reordered = backward._uniform_sample(n, 77, seed=5)
    np.testing.assert_array_equal(sample, np.concatenate([reordered[n - first :], reordered[: n - first]]))
    assert not np.array_equal(sample, forward._uniform_sample(n, 77, seed=6))
    kl = forward.kl_reduction(forward.resample(77, seed=1))
    assert kl == backward.kl_reduction(backward.resample(77, seed=1))


def test_kl_divergence_matches_its_definition():
    rng = random.Random(0)
    p = np.array([rng.random() for _ in range(50)])
    q = np.array([rng.random() for _ in range(50)])
    pn, qn = p / p.sum(), q / q.sum()
    expected = sum(a * (np.log(a + 1e-10) - np.log(b + 1e-10)) for a, b in zip(pn, qn, strict=True))
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-15)


def test_length_normalised_weights_divide_by_tokens(fitted):
    np.testing.assert_allclose(
        fitted.weights(normalize=True), fitted.weights() / np.maximum(fitted.tokens, 1)
    )


def test_one_shot_iterators_are_read_once_and_kept(corpus_slice):
    texts = corpus_slice[:200]
    from_list = DSIR(texts, texts[:20], min_example_length=1).fit()
    from_generators = DSIR((t for t in texts), (t for t in texts[:20]), min_example_length=1).fit()
    np.testing.assert_array_equal(from_generators.weights(), from_list.weights())
    np.testing.assert_array_equal(from_generators.resample(30).copies, from_list.resample(30).copies)


def test_a_mask_of_the_wrong_length_is_a_typed_error():
    core = DSIR(["a b"], ["a"]).featurizer._core
    with pytest.raises(InvalidArgumentError, match="include has 2 entries but the source has 1 documents"):
        core.sum_counts_texts(["a b"], include=np.array([True, False]))


def test_parquet_output_keeps_every_column_of_parquet_rows_and_the_text_of_lines(corpus, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [json.loads(line)["text"] for line in corpus["raw"][0].read_text().split("\n") if line]
    texts = texts[:120]
    texts[5] = None  # not a document: positions after it shift by one
    table = pa.table(
        {"id": list(range(len(texts))), "text": texts, "meta": [{"n": i} for i in range(len(texts))]}
    )
    parquet_in = tmp_path / "pool.parquet"
    pq.write_table(table, parquet_in, row_group_size=50)
    dsir = DSIR(Files([parquet_in]), Files(corpus["target"]), min_example_length=1).fit()
    selection = dsir.resample(30, seed=2, method="replacement", out=tmp_path / "pq", output_format="parquet")
    rows = [i for i in range(len(texts)) if texts[i] is not None]
    expected = [rows[i] for i in np.repeat(np.arange(len(selection.copies)), selection.copies)]
    written = pq.read_table(tmp_path / "pq" / "part-00000.parquet")
    assert written.schema == table.schema
    assert written.to_pylist() == table.take(expected).to_pylist()

    jsonl = DSIR(Files([corpus["raw"][0]]), Files(corpus["target"])).fit()
    chosen = jsonl.resample(20, seed=2, out=tmp_path / "from_jsonl", output_format="parquet")
    lines = [line for line in corpus["raw"][0].read_text().split("\n") if line]
    got = pq.read_table(tmp_path / "from_jsonl" / "part-00000.parquet")
    assert got.column_names == ["text"]
    assert got.column("text").to_pylist() == [json.loads(lines[i])["text"] for i in chosen.indices]


def test_chunked_documents_are_weighed_selected_and_traced_like_python_made_chunks(corpus, tmp_path):
    words = 16
    lines = [line for line in corpus["raw"][1].read_text().split("\n") if line]
    chunks, origin = [], []
    for number, line in enumerate(lines, start=1):
        ws = json.loads(line)["text"].split(" ")
        for c, k in enumerate(range(0, len(ws), words)):
            chunks.append(" ".join(ws[k : k + words]))
            origin.append((number, c))
    target_lines = corpus["target"][0].read_text().split("\n")
    target_chunks = []
    for line in filter(None, target_lines):
        ws = json.loads(line)["text"].split(" ")
        target_chunks += [" ".join(ws[k : k + words]) for k in range(0, len(ws), words)]
    ours = DSIR(Files([corpus["raw"][1]]), Files(corpus["target"]), chunk_words=words, min_example_length=5)
    by_hand = DSIR(chunks, target_chunks, min_example_length=5)
    ours.fit(), by_hand.fit()
    np.testing.assert_array_equal(ours.raw_counts, by_hand.raw_counts)
    np.testing.assert_array_equal(ours.target_counts, by_hand.target_counts)
    np.testing.assert_array_equal(ours.weights(), by_hand.weights())
    assert ours.report.sources[0].chunks == len(chunks) and ours.report.documents == len(lines)

    selection = ours.resample(40, seed=4, out=tmp_path / "out", output_format="jsonl")
    written = [json.loads(x) for x in (tmp_path / "out" / "part-00000.jsonl").read_text().split("\n") if x]
    assert [(r["line"], r["chunk"]) for r in written] == [origin[i] for i in selection.indices]
    assert [r["text"] for r in written] == [chunks[i] for i in selection.indices]
    assert {r["source"] for r in written} == {str(corpus["raw"][1])}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["unit"] == "chunk" and manifest["counts"]["selected"] == 40
    assert manifest["sources"][0]["chunks"] == len(chunks)


@pytest.mark.parametrize(("chunk", "bits"), [(1, 16), (7, 2), (64, 3), (1 << 20, 16), (5, 1)])
def test_top_k_by_histograms_equals_a_stable_sort_ties_included(monkeypatch, chunk, bits):
    # Small chunks and few histogram bits force several narrowing passes and kept bins.
    from tokensieve import dsir as dsir_module

    monkeypatch.setattr(dsir_module, "SELECTION_CHUNK", chunk)
    monkeypatch.setattr(dsir_module, "HISTOGRAM_BITS", bits)
    rng = np.random.default_rng()
    draws = [
        lambda n: rng.integers(-3, 4, size=n).astype(np.float64),  # many ties
        lambda n: rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, size=n),  # any magnitude
        lambda n: rng.choice([-np.inf, -0.0, 0.0, 1e-310, -1e-310, 2.5, np.inf], size=n),
        lambda n: np.full(n, -7.25),  # one key value
    ]
    for trial in range(120):
        n = int(rng.integers(1, 300))
        w = draws[trial % len(draws)](n)
        available = rng.random(n) < 0.8
        if not available.any():
            continue
        k = int(rng.integers(1, available.sum() + 1))
        candidates = np.flatnonzero(available)
        expected = candidates[np.argsort(-w[candidates], kind="stable")[:k]]
        marked = np.zeros(n, dtype=np.int64)

        def mark(rows, marked=marked):
            np.add.at(marked, rows, 1)

        def candidates(lo, hi, available=available):
            return lo + np.flatnonzero(available[lo:hi])

        dsir_module._mark_top_k(n, k, candidates, lambda rows, w=w: w[rows], mark)
        assert marked.max() == 1, "a row was marked twice"
        assert np.flatnonzero(marked).tolist() == sorted(expected.tolist())


def test_a_nan_selection_key_is_an_error():
    from tokensieve import dsir as dsir_module

    w = np.array([1.0, np.nan, 2.0])
    with pytest.raises(InvalidArgumentError, match="NaN"):
        dsir_module._mark_top_k(3, 1, np.arange, lambda rows: w[rows], lambda rows: None)


def test_weights_from_the_fit_spill_equal_weights_from_the_texts(corpus):
    # Over files, fit() spills each document's bucket ids and weights() reads them back instead
    # of the corpus; over in-memory texts both passes featurise. The numbers must be identical.
    texts = [
        json.loads(line)["text"] for path in corpus["raw"] for line in path.read_text().split("\n") if line
    ]
    target = [json.loads(line)["text"] for line in corpus["target"][0].read_text().split("\n") if line]
    for hash_name in ("dsir-sha256", "fast-v1"):
        from_files = DSIR(Files(corpus["raw"]), target, hash=hash_name).fit()
        spill = from_files._spill
        assert spill is not None and os.path.exists(spill[0])
        from_texts = DSIR(texts, target, hash=hash_name).fit()
        np.testing.assert_array_equal(from_files.weights(), from_texts.weights())
        np.testing.assert_array_equal(from_files.tokens, from_texts.tokens)
        assert not os.path.exists(spill[0])
        assert from_files.report.documents == len(texts)
