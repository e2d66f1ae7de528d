"""Hugging Face datasets: batch functions as map functions in 2 processes give the in-process
results, fingerprint stably (the cache is hit by an equal function) and pickle as saved state."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import read_jsonl_zst
from tokensieve import DSIR, HashedNgrams
from tokensieve.exceptions import ModelFormatError
from tokensieve.fasttext import PRESETS, load_model
from tokensieve.integrations.batch import DSIRWeights, FastTextScores, NgramFeatures

datasets = pytest.importorskip("datasets")
hf = pytest.importorskip("tokensieve.integrations.hf")
from datasets.fingerprint import Hasher  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:multiprocess")


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str | None]:
    records = read_jsonl_zst(shared_data / "raw_pool/reuters21578.jsonl.zst", 300)
    records += read_jsonl_zst(shared_data / "target/wikipedia_en.jsonl.zst", 40)
    out: list[str | None] = [r["text"] for r in records]
    out[7] = None  # not a document: nulls in every new column
    return out


@pytest.fixture(scope="module")
def dsir(shared_data: Path, texts) -> DSIR:
    target = [r["text"] for r in read_jsonl_zst(shared_data / "target/gutenberg_books.jsonl.zst", 50)]
    return DSIR([t for t in texts if t is not None], target, buckets=4096, num_threads=1).fit()


@pytest.fixture(scope="module")
def saved(texts, tmp_path_factory: pytest.TempPathFactory):
    """The texts as a dataset backed by a cache file (in-memory datasets are never cached)."""
    path = tmp_path_factory.mktemp("hf") / "ds"
    datasets.Dataset.from_dict({"text": texts, "n": list(range(len(texts)))}).save_to_disk(path)
    return datasets.load_from_disk(path)


def functions(dsir: DSIR, model_path: Path) -> dict[str, object]:
    return {
        "features": NgramFeatures(HashedNgrams(buckets=4096, hash="fast-v1")),
        "fasttext": FastTextScores(model_path, "news", preset="dclm"),
        "dsir": DSIRWeights(dsir),
    }


def test_map_in_two_processes_equals_the_in_process_api(saved, texts, dsir, news_or_mail):
    fns = functions(dsir, news_or_mail)
    docs = [t for t in texts if t is not None]
    out = saved
    for fn in fns.values():
        out = out.map(fn, batched=True, batch_size=64, num_proc=2)
    assert out["n"] == list(range(len(texts)))
    rows = [i for i, t in enumerate(texts) if t is not None]
    assert out[7]["fasttext_score"] is None and out[7]["dsir_log_weight"] is None
    scores = load_model(news_or_mail).score(docs, "news", **PRESETS["dclm"])
    np.testing.assert_array_equal(np.array([out[i]["fasttext_score"] for i in rows], np.float32), scores)
    np.testing.assert_array_equal([out[i]["dsir_log_weight"] for i in rows], dsir.weights())
    assert [out[i]["dsir_tokens"] for i in rows] == dsir.tokens.tolist()
    counts = HashedNgrams(buckets=4096, hash="fast-v1").transform(docs)
    first = counts[[0]]
    assert out[0]["ngram_buckets"] == first.indices.tolist()
    assert out[0]["ngram_counts"] == first.data.tolist()


def test_arrow_batches_give_the_same_columns_with_their_types(saved, dsir, news_or_mail):
    fn = functions(dsir, news_or_mail)["fasttext"]
    plain = saved.map(fn, batched=True, batch_size=64)
    arrow = hf.add_columns(saved, fn, batch_size=64, num_proc=2)
    assert arrow.format["type"] is None
    assert arrow.features["fasttext_score"].dtype == "float32"
    assert arrow["fasttext_score"] == plain["fasttext_score"]


def test_map_in_two_processes_sharing_the_model_on_the_machine(saved, dsir, news_or_mail, tmp_path):
    from tokensieve.integrations.machine import share_arrays_on_machine

    plain = saved.map(functions(dsir, news_or_mail)["fasttext"], batched=True, batch_size=64)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    with share_arrays_on_machine(functions(dsir, news_or_mail)["fasttext"], shm) as fn:
        shared = saved.map(fn, batched=True, batch_size=64, num_proc=2)
    assert shared["fasttext_score"] == plain["fasttext_score"]


def test_fingerprints_are_stable_and_the_cache_is_hit(saved, dsir, news_or_mail):
    first, second = functions(dsir, news_or_mail), functions(dsir, news_or_mail)
    for name in first:
        assert Hasher.hash(first[name]) == Hasher.hash(second[name]), name
    assert Hasher.hash(FastTextScores(news_or_mail, "mail")) != Hasher.hash(first["fasttext"])
    a = saved.map(first["dsir"], batched=True, num_proc=2)
    b = saved.map(second["dsir"], batched=True, num_proc=2)
    assert a.cache_files == b.cache_files
    assert a._fingerprint == b._fingerprint


def test_pickles_hold_state_not_compiled_objects(dsir, news_or_mail, tmp_path):
    for fn in functions(dsir, news_or_mail).values():
        fn(pa.table({"text": ["warm the compiled objects up"]}))
        clone = pickle.loads(pickle.dumps(fn))
        batch = {"text": ["a text", None, "another text"]}
        assert clone(batch) == fn(batch)
    # The model is read lazily after unpickling, and only if its file is still the one pickled.
    copy = tmp_path / "model.bin"
    copy.write_bytes(news_or_mail.read_bytes())
    blob = pickle.dumps(FastTextScores(copy, "news"))
    changed = bytearray(news_or_mail.read_bytes())
    changed[-1] ^= 1  # the last weight of the output matrix: still a valid model
    copy.write_bytes(changed)
    clone = pickle.loads(blob)
    with pytest.raises(ModelFormatError, match="not the file"):
        clone({"text": ["a text"]})
