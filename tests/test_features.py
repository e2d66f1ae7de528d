"""Hashed n-gram features: parity with data-selection, the pure-Python reference, and the API."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from reference_impl import ngram_counts, whitespace_tokens, wordpunct_tokens
from strategies import texts as texts_strategy
from tokensieve import HashedNgrams
from tokensieve.exceptions import BadRecordError, InvalidArgumentError


def dense_row(counter: dict[int, int], buckets: int) -> np.ndarray:
    row = np.zeros(buckets, dtype=np.int64)
    for b, c in counter.items():
        row[b] += c
    return row


def test_data_selection_test_vectors() -> None:
    f = HashedNgrams(ngrams=2, buckets=10000, hash="dsir-sha256")
    assert f.transform(["alice"]).indices.tolist() == [6720]
    row = f.transform(["Alice went to the store"])
    assert row.sum() == 9
    assert sorted(row.indices.tolist()) == [114, 1087, 2441, 3440, 4126, 5816, 6720, 8288, 9879]
    assert 114 in row.indices  # "alice went"


@pytest.mark.parametrize(("ngrams", "buckets"), [(2, 10000), (1, 997), (3, 50000)])
def test_dsir_sha256_equals_data_selection_on_real_text(
    corpus_slice: list[str], ngrams: int, buckets: int
) -> None:
    hashed_ngram_dsir = pytest.importorskip("data_selection.hashed_ngram_dsir")
    texts = corpus_slice[:: 3 if ngrams == 3 else 1]
    ours = HashedNgrams(ngrams=ngrams, buckets=buckets, hash="dsir-sha256")
    rows = ours.transform(texts).toarray()
    total = np.zeros(buckets, dtype=np.int64)
    for i, text in enumerate(texts):
        expected = hashed_ngram_dsir.get_ngram_counts(text, n=ngrams, num_buckets=buckets)
        np.testing.assert_array_equal(rows[i], expected, err_msg=f"document {i}")
        total += expected
    np.testing.assert_array_equal(ours.sum_counts(texts), total)


@given(
    texts=st.lists(texts_strategy, max_size=6),
    ngrams=st.integers(1, 4),
    buckets=st.sampled_from([1, 7, 10000, 2**20, 2**32 - 1]),
    family=st.sampled_from(["dsir-sha256", "fast-v1"]),
    tokenizer=st.sampled_from(["wordpunct", "whitespace"]),
)
@settings(max_examples=150, deadline=None)
def test_counts_match_python_reference(
    texts: list[str], ngrams: int, buckets: int, family: str, tokenizer: str
) -> None:
    f = HashedNgrams(ngrams=ngrams, buckets=buckets, tokenizer=tokenizer, hash=family)  # type: ignore[arg-type]
    split = wordpunct_tokens if tokenizer == "wordpunct" else whitespace_tokens
    m = f.transform(texts)
    assert m.shape == (len(texts), buckets)
    for i, text in enumerate(texts):
        expected = ngram_counts(split(text), ngrams, buckets, family)
        got = dict(zip(m[[i]].indices.tolist(), m[[i]].data.tolist(), strict=True))
        assert got == dict(expected)


@given(
    docs=st.lists(st.lists(st.integers(0, 2**32 - 1), max_size=10), max_size=5),
    ngrams=st.integers(1, 3),
    family=st.sampled_from(["dsir-sha256", "fast-v1"]),
    dtype=st.sampled_from([np.uint32, np.int64, np.uint64, np.int32]),
)
@settings(max_examples=100, deadline=None)
def test_token_ids_match_python_reference(docs: list[list[int]], ngrams: int, family: str, dtype) -> None:
    if dtype == np.int32:
        docs = [[t % 2**31 for t in d] for d in docs]
    f = HashedNgrams(ngrams=ngrams, buckets=5003, hash=family)  # type: ignore[arg-type]
    ids = np.array([t for d in docs for t in d], dtype=dtype)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    m = f.transform_ids(ids, offsets)
    total = np.zeros(5003, dtype=np.int64)
    for i, d in enumerate(docs):
        expected = dense_row(ngram_counts(d, ngrams, 5003, family), 5003)
        np.testing.assert_array_equal(m[[i]].toarray()[0], expected)
        total += expected
    np.testing.assert_array_equal(f.sum_counts_ids(ids, offsets), total)


def test_ids_under_sha256_equal_their_decimal_text() -> None:
    hashed_ngram_dsir = pytest.importorskip("data_selection.hashed_ngram_dsir")
    ids = np.array([464, 3290, 318, 257, 1332, 13, 464], dtype=np.uint32)
    f = HashedNgrams(hash="dsir-sha256")
    got = f.transform_ids(ids, [0, len(ids)]).toarray()[0]
    expected = hashed_ngram_dsir.get_ngram_counts(" ".join(map(str, ids)), n=2, num_buckets=10000)
    np.testing.assert_array_equal(got, expected)


def test_transform_hands_over_rust_buffers_without_copy() -> None:
    m = HashedNgrams().transform(["a b c", "d e"])
    assert isinstance(m, sparse.csr_array)
    assert m.data.dtype == np.int64
    assert m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    for arr in (m.data, m.indices, m.indptr):
        base = arr
        while isinstance(base, np.ndarray):
            assert not base.flags.owndata
            base = base.base
        assert base is not None and not isinstance(base, np.ndarray)  # owned by Rust


def test_results_do_not_depend_on_thread_count(corpus_slice: list[str]) -> None:
    results = []
    for threads in (1, 2, 3):
        f = HashedNgrams(hash="fast-v1", buckets=2**16, num_threads=threads)
        results.append((f.transform(corpus_slice), f.sum_counts(corpus_slice)))
    for m, total in results[1:]:
        assert (m != results[0][0]).nnz == 0
        np.testing.assert_array_equal(total, results[0][1])
    np.testing.assert_array_equal(np.asarray(results[0][0].sum(axis=0)), results[0][1])


def test_pickles_through_feature_space() -> None:
    f = HashedNgrams(ngrams=3, buckets=123, tokenizer="whitespace", hash="fast-v1", num_threads=1)
    g = pickle.loads(pickle.dumps(f))
    assert g == f and g.feature_space == f.feature_space and g.num_threads == 1
    assert (g.transform(["x y z"]) != f.transform(["x y z"])).nnz == 0
    assert f.feature_space == {
        "tokenizer": "whitespace",
        "hash": "fast-v1",
        "ngrams": 3,
        "buckets": 123,
        "lowercase": False,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ngrams": 0},
        {"ngrams": 9},
        {"buckets": 0},
        {"buckets": 2**32},
        {"hash": "md5"},
        {"tokenizer": "bpe"},
        {"num_threads": 0},
    ],
)
def test_bad_arguments_are_typed_errors(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        HashedNgrams(**kwargs).transform(["x"])


def test_bad_items_raise_or_give_empty_rows() -> None:
    f = HashedNgrams()
    items = ["ok text", None, 5, "bad \ud800 surrogate", "fine"]
    with pytest.raises(BadRecordError) as info:
        f.transform(items)
    assert (info.value.path, info.value.line, info.value.reason) == ("<list>", 2, "missing_field")
    m = f.transform(items, on_error="skip")
    assert m.shape[0] == 5
    assert [m[[i]].nnz > 0 for i in range(5)] == [True, False, False, False, True]
    total, report = f.sum_counts(items, return_report=True)
    assert report.documents == 2 and report.records == 5
    assert report.skipped == {"missing_field": 1, "not_a_string": 1, "lone_surrogate": 1}
    np.testing.assert_array_equal(total, f.sum_counts(["ok text", "fine"]))
    # Lists are read by index (their objects prefetched 16 ahead), other iterables by
    # iteration: both give the same counts and account for every item.
    many = items * 9
    by_index, by_index_report = f.sum_counts(many, return_report=True)
    by_iteration, by_iteration_report = f.sum_counts(iter(many), return_report=True)
    np.testing.assert_array_equal(by_index, by_iteration)
    np.testing.assert_array_equal(by_index, 9 * total)
    expected = {"missing_field": 9, "not_a_string": 9, "lone_surrogate": 9}
    assert by_index_report.skipped == by_iteration_report.skipped == expected


def test_token_id_calls_over_several_slices_equal_their_parts() -> None:
    # The binding works through 2M ids at a time (so that Ctrl-C stops it): 5M ids in
    # documents of uneven lengths, one longer than a slice, give the rows of the parts.
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 1 << 20, size=5_000_000, dtype=np.uint32)
    cuts = np.sort(rng.choice(np.arange(1, 2_000_000), size=3_000, replace=False))
    offsets = np.concatenate([[0], cuts, [4_500_000, 5_000_000]])
    f = HashedNgrams(buckets=4099)
    whole = f.transform_ids(ids, offsets)
    # Every document has its row and every bigram and unigram its count (2n - 1 for n ids).
    lengths = np.diff(offsets)
    assert whole.shape == (len(lengths), 4099)
    np.testing.assert_array_equal(np.asarray(whole.sum(axis=1)).ravel(), 2 * lengths - 1)
    split = 1_500  # a document boundary
    first = f.transform_ids(ids[: offsets[split]], offsets[: split + 1])
    rest = f.transform_ids(ids[offsets[split] :], offsets[split:] - offsets[split])
    assert (whole != sparse.vstack([first, rest])).nnz == 0
    np.testing.assert_array_equal(f.sum_counts_ids(ids, offsets), np.asarray(whole.sum(axis=0)).ravel())


def test_bad_token_ids_are_typed_errors() -> None:
    f = HashedNgrams()
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        f.transform_ids(np.array([1, -1]), [0, 2])
    with pytest.raises(InvalidArgumentError, match="offsets"):
        f.transform_ids(np.array([1, 2], dtype=np.uint32), [0, 1])
    with pytest.raises(InvalidArgumentError, match="offsets decrease"):
        f.transform_ids(np.array([1, 2], dtype=np.uint32), [0, 2, 1, 2])
    with pytest.raises(InvalidArgumentError):
        f.transform_ids(np.array([0.5]), [0, 1])


def test_empty_and_enormous_documents() -> None:
    f = HashedNgrams(hash="fast-v1")
    assert f.transform([]).shape == (0, 10000)
    assert f.transform([""]).nnz == 0
    big = "word " * 2_000_000  # 10 MB, one document
    assert f.sum_counts([big]).sum() == 2 * 2_000_000 - 1


@pytest.mark.parametrize("family", ["fast-v1", "dsir-sha256"])
@pytest.mark.parametrize("tokenizer", ["wordpunct", "whitespace"])
def test_documents_featurised_in_pieces_match_python_reference(
    corpus_slice: list[str], family: str, tokenizer: str
) -> None:
    """Texts over 64 KiB are featurised a piece at a time; the n-grams across the cuts count."""
    joined = "\n".join(corpus_slice)[:200_000]
    assert len(joined.encode()) > 3 * 65536
    # Capital sigmas (lowercased by their neighbours) throughout, and a long run without spaces.
    with_sigma = joined.replace(" the ", " ΟΔΟΣ ΣΑΣ ") + "ΣΣ" * 20_000
    split = wordpunct_tokens if tokenizer == "wordpunct" else whitespace_tokens
    for ngrams in (2, 3):
        f = HashedNgrams(ngrams=ngrams, buckets=2**20, tokenizer=tokenizer, hash=family)  # type: ignore[arg-type]
        m = f.transform([joined, with_sigma])
        for i, text in enumerate([joined, with_sigma]):
            expected = ngram_counts(split(text), ngrams, 2**20, family)
            got = dict(zip(m[[i]].indices.tolist(), m[[i]].data.tolist(), strict=True))
            assert got == dict(expected), (ngrams, i)


@pytest.mark.parametrize("tokenizer", ["wordpunct", "whitespace"])
@pytest.mark.parametrize("lowercase", [True, False])
def test_fast_v1_matches_python_reference_on_real_text(
    corpus_slice: list[str], tokenizer: str, lowercase: bool
) -> None:
    texts = corpus_slice[::4]
    split = wordpunct_tokens if tokenizer == "wordpunct" else whitespace_tokens
    f = HashedNgrams(ngrams=2, buckets=2**20, tokenizer=tokenizer, hash="fast-v1", lowercase=lowercase)  # type: ignore[arg-type]
    m = f.transform(texts)
    assert any(t.isascii() for t in texts)
    assert any(not t.isascii() for t in texts)
    for i, text in enumerate(texts):
        expected = ngram_counts(split(text, lowercase=lowercase), 2, 2**20, "fast-v1")
        got = dict(zip(m[[i]].indices.tolist(), m[[i]].data.tolist(), strict=True))
        assert got == dict(expected), f"document {i}"
