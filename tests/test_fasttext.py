"""tokensieve.fasttext against the real fastText package (fasttext 0.9.3 or fasttext-numpy2-wheel).

Small models of every loss, n-gram setting and quantisation are trained by fastText itself on
real documents from ../shared/data inside the tests; tokensieve must then give the same labels
and bit-identical float32 probabilities on every document. Hostile files (truncated at every
section boundary, oversized, absurd counts, wrong magic or version) must raise
ModelFormatError, never crash.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import struct
import sys
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest

from conftest import in_shared_mapping, read_jsonl_zst
from tokensieve import fasttext as tsft
from tokensieve.exceptions import (
    BadRecordError,
    CorpusNotFoundError,
    InvalidArgumentError,
    ModelFormatError,
)

fasttext = pytest.importorskip("fasttext", reason="the reference package: pip install fasttext-numpy2-wheel")

SOURCES = [
    "raw_pool/blogs",
    "raw_pool/newsgroups20",
    "raw_pool/reuters21578",
    "raw_pool/imdb_reviews",
    "raw_pool/bbc_news",
    "raw_pool/spamassassin_email",
    "target/gutenberg_books",
    "target/wikipedia_en",
]
TRAIN_PER_SOURCE = 200
TEST_PER_SOURCE = 250
EDGE_TEXTS = [
    "",
    "   ",
    "\t\r\x0b\x0c",
    "a\x00b",
    "__label__blogs",
    "the __label__nope option",
    "the\u00a0option",
    "naïve 日本 Ωmega é",
    "x" * 5000,
    " ".join(["the"] * 3000),
]


Docs = dict[str, list]


def _flat(text: str) -> str:
    return " ".join(text.split("\n"))


@pytest.fixture(scope="session")
def documents(shared_data: Path) -> dict[str, list]:
    """Labelled training lines, single-line test texts and their multi-line originals."""
    train: list[tuple[str, str]] = []
    originals: list[str] = []
    for source in SOURCES:
        name = source.split("/")[1]
        records = read_jsonl_zst(shared_data / f"{source}.jsonl.zst", TRAIN_PER_SOURCE + TEST_PER_SOURCE)
        texts = [r["text"] for r in records]
        train += [(name, _flat(t)[:3000]) for t in texts[:TRAIN_PER_SOURCE]]
        originals += texts[TRAIN_PER_SOURCE:]
    test = [_flat(t) for t in originals] + EDGE_TEXTS
    return {"train": train, "test": test, "originals": originals}


def _write_training_file(path: Path, lines: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for label, text in lines:
            f.write(f"__label__{label} {text}\n")
    return path


BIGRAMS = {"dim": 20, "wordNgrams": 2, "bucket": 100_000}
MODELS = {
    "softmax": {"loss": "softmax", **BIGRAMS},
    "hs": {"loss": "hs", **BIGRAMS},
    "ova": {"loss": "ova", **BIGRAMS},
    "ns": {"loss": "ns", **BIGRAMS},
    "charngram": {"loss": "softmax", "dim": 20, "minn": 2, "maxn": 4, "bucket": 100_000},
    "unigram_dim100": {"loss": "softmax", "dim": 100},
    "many_hs": {"loss": "hs", "dim": 10, "wordNgrams": 2, "bucket": 20_000},
    "many_ova": {"loss": "ova", "dim": 10, "wordNgrams": 2, "bucket": 20_000},
}
QUANTIZED = {
    # pruned dictionary + product-quantised input with quantised norms
    "softmax.ftz": ("softmax", {"cutoff": 5000, "qnorm": True, "qout": False}),
    # quantised output too (needs >= 256 labels), no pruning
    "many_softmax_qout.ftz": ("many_softmax", {"cutoff": 0, "qnorm": True, "qout": True}),
}


@pytest.fixture(scope="session")
def models(documents: Docs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every model trained once by fastText."""
    root = tmp_path_factory.mktemp("fasttext_models")
    train = _write_training_file(root / "train.txt", documents["train"])
    rng = random.Random(0)
    many = _write_training_file(
        root / "many.txt", [(f"c{rng.randrange(300)}", text[:1500]) for _, text in documents["train"]]
    )
    paths: dict[str, Path] = {}
    specs = {**MODELS, "many_softmax": {"loss": "softmax", "dim": 10, "wordNgrams": 2, "bucket": 20_000}}
    for name, kwargs in specs.items():
        source = many if name.startswith("many") else train
        # fastText initialises only min(thread, 10) tenths of the input matrix (and never the
        # last m*n % 10 floats) and leaves the rest as whatever memory it got, which gives NaN
        # once this process reuses freed memory: thread=10 and a dim divisible by 10 cover it all.
        model = fasttext.train_supervised(str(source), epoch=3, thread=10, seed=0, verbose=0, **kwargs)
        paths[name] = root / f"{name}.bin"
        model.save_model(str(paths[name]))
    for name, (base, kwargs) in QUANTIZED.items():
        model = fasttext.load_model(str(paths[base]))
        model.quantize(input=None, retrain=False, dsub=2, **kwargs)
        paths[name] = root / name
        model.save_model(str(paths[name]))
    return paths


def _assert_same(reference: tuple, ours: tuple, what: str) -> None:
    ref_labels, ref_probs = reference
    our_labels, our_probs = ours
    assert our_labels == ref_labels, what
    assert [len(p) for p in our_probs] == [len(p) for p in ref_probs], what
    assert all(p.dtype == np.float32 for p in our_probs), what
    ref_all = np.concatenate(ref_probs).astype(np.float32)
    our_all = np.concatenate(our_probs)
    bad = np.flatnonzero(ref_all.view(np.uint32) != our_all.view(np.uint32))
    assert bad.size == 0, f"{what}: {bad.size} of {ref_all.size} probabilities differ, first at {bad[:5]}"


@pytest.mark.parametrize("name", [*MODELS, *QUANTIZED])
def test_predictions_are_bit_identical(name: str, models: dict[str, Path], documents: Docs) -> None:
    texts = documents["test"]
    reference = fasttext.load_model(str(models[name]))
    ours = tsft.load_model(models[name])
    assert ours.is_quantized() == name.endswith(".ftz")
    assert ours.get_labels() == reference.get_labels()
    for k, threshold in [(1, 0.0), (-1, 0.0), (3, 0.05), (2, 0.5)]:
        expected = reference.predict(texts, k=k, threshold=threshold)
        _assert_same(expected, ours.predict(texts, k=k, threshold=threshold), f"{name} k={k} t={threshold}")
    # The batch arrays hold the same predictions (k = -1: every label of every document).
    ref_labels, ref_probs = reference.predict(texts, k=-1)
    batch = ours.predict_batch(texts, k=-1)
    assert batch.label_ids.shape == batch.probs.shape == (len(texts), len(ours.labels))
    assert batch.probs.dtype == np.float32 and batch.label_ids.dtype == np.int32
    for i in range(0, len(texts), 97):
        n = len(ref_labels[i])
        assert [batch.labels[j] for j in batch.label_ids[i, :n]] == ref_labels[i]
        assert np.array_equal(batch.probs[i, :n], ref_probs[i])
        assert (batch.label_ids[i, n:] == -1).all() and (batch.probs[i, n:] == 0).all()


def test_single_text_predict_has_fasttexts_shape(models: dict[str, Path], documents: Docs) -> None:
    reference = fasttext.load_model(str(models["softmax"]))
    ours = tsft.load_model(models["softmax"])
    for text in documents["test"][::50] + EDGE_TEXTS:
        for k in (1, -1):
            ref_labels, ref_probs = reference.predict(text, k=k)
            labels, probs = ours.predict(text, k=k)
            assert isinstance(labels, tuple) and labels == ref_labels
            assert probs.dtype == np.float64 and np.array_equal(probs, ref_probs)
    labels, probs = ours.predict(EDGE_TEXTS[-1], k=-1)
    assert probs.sum() > 1.0  # fastText's unclipped p + 1e-5
    labels, probs = ours.predict("x", threshold=2.0)
    assert labels == () and probs.shape == (0,) and probs.dtype == np.float64


@pytest.mark.parametrize("name", ["softmax", "hs", "ns", "softmax.ftz"])
def test_score_is_the_k_all_probability(name: str, models: dict[str, Path], documents: Docs) -> None:
    texts = documents["test"]
    reference = fasttext.load_model(str(models[name]))
    ours = tsft.load_model(models[name])
    for label in (ours.labels[0], ours.labels[-1].removeprefix("__label__")):
        full = label if label.startswith("__label__") else "__label__" + label
        scores = ours.score(texts, label)
        assert scores.dtype == np.float32 and scores.shape == (len(texts),)
        ref_labels, ref_probs = reference.predict(texts, k=-1)
        compared = 0
        for i, (labels, probs) in enumerate(zip(ref_labels, ref_probs, strict=True)):
            if full in labels:  # hs leaves out labels below 1e-5
                assert scores[i].view(np.uint32) == probs[labels.index(full)].view(np.uint32), i
                compared += 1
            else:
                assert scores[i] < 2e-5
        assert compared > len(texts) // 2
    with pytest.raises(InvalidArgumentError, match="unknown label"):
        ours.score(texts, "nope")


def test_vectors_and_vocabulary(models: dict[str, Path], documents: Docs) -> None:
    for name in ("softmax", "charngram", "softmax.ftz"):
        reference = fasttext.load_model(str(models[name]))
        ours = tsft.load_model(models[name])
        assert ours.get_dimension() == reference.get_dimension()
        assert ours.get_words() == reference.get_words()
        words, counts = ours.get_words(include_freq=True)
        _, ref_counts = reference.get_words(include_freq=True)
        assert np.array_equal(counts, ref_counts)
        _, label_counts = ours.get_labels(include_freq=True)
        assert np.array_equal(label_counts, reference.get_labels(include_freq=True)[1])
        for word in [*words[:50], "unseen-word", "naïve", "</s>", ""]:
            assert np.array_equal(ours.get_word_vector(word), reference.get_word_vector(word)), (name, word)
        for text in documents["test"][::200] + EDGE_TEXTS[:4]:
            expected = reference.get_sentence_vector(text)
            assert np.array_equal(ours.get_sentence_vector(text), expected), (name, text[:40])


def test_newline_policies_reproduce_the_pipelines(models: dict[str, Path], documents: Docs) -> None:
    reference = fasttext.load_model(str(models["softmax"]))
    ours = tsft.load_model(models["softmax"])
    originals = [t for t in documents["originals"] if "\n" in t][:300]
    extra = ["  a\u2028b\x1cc\u0085d\r\ne\n\n f\u00a0 ", "end\nNext", "\u00a0lead\ntrail\u00a0"]
    texts = originals + extra
    with pytest.raises(InvalidArgumentError, match="newline"):
        ours.predict(texts[0])
    with pytest.raises(ValueError, match="text 1 "):
        ours.predict_batch(["fine", "not\nfine"])
    # A text of 9 MB fills the binding's first slice: the failing text is still named by its
    # position in the whole input.
    with pytest.raises(ValueError, match="text 2 "):
        ours.predict_batch(["x " * 4_500_000, "fine", "not\nfine"])
    seen = {
        "space": [t.replace("\n", " ") for t in texts],
        "datatrove": [t.strip().replace("\n", "") for t in texts],
        "dclm": [" ".join(t.strip().splitlines()) for t in texts],
    }
    for preset, transformed in seen.items():
        expected = reference.predict(transformed, k=-1)
        _assert_same(expected, ours.predict(texts, k=-1, **tsft.PRESETS[preset]), preset)
    assert np.array_equal(
        ours.get_sentence_vector(texts[0], newline=" "), reference.get_sentence_vector(seen["space"][0])
    )


def test_arrow_input_threads_and_pickling(models: dict[str, Path], documents: Docs) -> None:
    pa = pytest.importorskip("pyarrow")
    texts = documents["test"][:1000]
    one = tsft.load_model(models["hs"], num_threads=1)
    two = tsft.load_model(models["hs"], num_threads=2)
    a = one.predict_batch(texts, k=2)
    b = two.predict_batch(pa.array(texts), k=2)
    c = two.predict_batch(pa.chunked_array([texts[:300], texts[300:]]), k=2)
    for other in (b, c):
        assert np.array_equal(a.label_ids, other.label_ids) and np.array_equal(a.probs, other.probs)
    clone = pickle.loads(pickle.dumps(two))
    assert np.array_equal(clone.predict_batch(texts, k=2).probs, a.probs)
    with pytest.raises(BadRecordError):
        one.predict_batch([*texts[:3], None])
    with pytest.raises(InvalidArgumentError):
        one.predict_batch("a single str")
    with pytest.raises(InvalidArgumentError, match="k must be"):
        one.predict(texts[:2], k=0)


def test_a_model_file_that_changes_is_refused(models: dict[str, Path], documents: Docs, tmp_path) -> None:
    path = tmp_path / "model.bin"
    shutil.copyfile(models["hs"], path)
    blob = pickle.dumps(tsft.load_model(path))  # the path and the file's SHA-256
    shutil.copyfile(models["softmax"], path)  # another valid model at the same path
    with pytest.raises(ModelFormatError, match="not the file the model was pickled from") as info:
        pickle.loads(blob).predict(documents["test"][0])
    assert info.value.path == str(path)
    read = tsft.load_model(path)  # read, not yet hashed
    shutil.copyfile(models["hs"], path)
    with pytest.raises(ModelFormatError, match="changed after the model was read") as info:
        pickle.dumps(read)
    assert info.value.path == str(path)


def test_the_input_matrix_is_fasttexts_and_can_be_shared(models: dict[str, Path], documents: Docs) -> None:
    texts = documents["test"][:2000]
    reference = fasttext.load_model(str(models["softmax"]))
    own = tsft.load_model(models["softmax"])
    matrix = own.get_input_matrix()
    assert matrix.dtype == np.float32 and matrix.shape == (len(own.get_words()) + own.args["bucket"], 20)
    assert np.array_equal(matrix, reference.get_input_matrix())
    with pytest.raises(ValueError, match="read-only"):
        matrix[0, 0] = 1.0
    with pytest.raises(ValueError, match="cannot set WRITEABLE flag to True"):
        matrix.flags.writeable = True
    # Another process's memory, here a read-only copy: the model computes from it.
    copy = matrix.copy()
    copy.flags.writeable = False
    shared = tsft.FastTextModel(models["softmax"], input_matrix=copy)
    assert np.shares_memory(shared.get_input_matrix(), copy)
    assert not np.shares_memory(shared.get_input_matrix(), matrix)
    _assert_same(reference.predict(texts, k=-1), shared.predict(texts, k=-1), "shared input")
    assert np.array_equal(
        pickle.loads(pickle.dumps(shared)).predict_batch(texts).probs, own.predict_batch(texts).probs
    )
    # Its floats must be the file's.
    changed = matrix.copy()
    changed[1234, 5] = np.nextafter(changed[1234, 5], np.float32(1))
    changed.flags.writeable = False
    with pytest.raises(
        ModelFormatError, match="input matrix in shared memory differs from the file's at row 1234"
    ):
        tsft.FastTextModel(models["softmax"], input_matrix=changed)
    with pytest.raises(ModelFormatError, match=r"has 200 floats, the file.s [0-9]+ x 20"):
        tsft.FastTextModel(models["softmax"], input_matrix=copy[:10])
    with pytest.raises(
        ModelFormatError, match=r"shape \(20, [0-9]+\), the file's input matrix \([0-9]+, 20\)"
    ):
        tsft.FastTextModel(models["softmax"], input_matrix=copy.reshape(20, -1))
    with pytest.raises(InvalidArgumentError, match="read-only"):
        tsft.FastTextModel(models["softmax"], input_matrix=matrix.copy())
    with pytest.raises(InvalidArgumentError, match="2-D float32"):
        tsft.FastTextModel(models["softmax"], input_matrix=copy.astype(np.float64))
    # A quantised model has no dense input matrix, as in fastText.
    quantised = tsft.load_model(models["softmax.ftz"])
    with pytest.raises(InvalidArgumentError, match="quantised"):
        quantised.get_input_matrix()
    with pytest.raises(ModelFormatError, match="quantised: only a dense one can be shared"):
        tsft.FastTextModel(models["softmax.ftz"], input_matrix=copy)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_a_matrix_in_shared_memory_is_read_through_a_mapping_of_the_models_own(
    models: dict[str, Path], documents: Docs
) -> None:
    texts = documents["test"][:2000]
    own = tsft.load_model(models["unigram_dim100"])
    matrix = own.get_input_matrix()
    memory = shared_memory.SharedMemory(create=True, size=matrix.nbytes + 100)
    try:
        # At an offset that is no multiple of a page, as objects in Ray's store are.
        given = np.ndarray(matrix.shape, np.float32, buffer=memory.buf, offset=100)
        given[:] = matrix
        given.flags.writeable = False
        shared = tsft.FastTextModel(models["unigram_dim100"], input_matrix=given)
        seen = shared.get_input_matrix()
        assert in_shared_mapping(given) and in_shared_mapping(seen) and not in_shared_mapping(matrix)
        assert not np.shares_memory(seen, given)  # a second mapping of the same pages
        assert np.array_equal(seen, matrix)
        assert np.array_equal(shared.predict_batch(texts, k=-1).probs, own.predict_batch(texts, k=-1).probs)
        del shared, seen, given
    finally:
        memory.close()
        memory.unlink()


def test_score_streams_files_with_a_report(models: dict[str, Path], documents: Docs, tmp_path) -> None:
    ours = tsft.load_model(models["softmax"])
    texts = documents["originals"][:500]
    path = tmp_path / "docs.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"text": text}) + "\n")
            if i == 10:
                f.write("{not json\n")
    label = ours.labels[1]
    scores, report = ours.score(path, label, return_report=True, **tsft.PRESETS["dclm"])
    assert np.array_equal(scores, ours.score(texts, label, **tsft.PRESETS["dclm"]))
    assert report.documents == len(texts) and report.skipped == {"malformed_json": 1}


# hostile files -------------------------------------------------------------------------------


class _Parser:
    """Walks a model file the way fastText writes it and notes every section boundary."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.marks = data, 0, {}

    def take(self, fmt: str, name: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        self.marks[name] = self.pos
        return values

    def skip(self, n: int, name: str) -> None:
        self.pos += n
        self.marks[name] = self.pos

    def pq(self, what: str) -> None:
        dim, _, _, _ = self.take("iiii", f"{what} header")
        self.skip(dim * 256 * 4, f"{what} centroids")

    def matrix(self, quantized: bool, what: str) -> None:
        if not quantized:
            m, n = self.take("qq", f"{what} shape")
            self.skip(m * n * 4, f"{what} data")
            return
        (qnorm,) = self.take("?", f"{what} qnorm")
        m, _n, codesize = self.take("qqi", f"{what} shape")
        self.skip(codesize, f"{what} codes")
        self.pq(f"{what} pq")
        if qnorm:
            self.skip(m, f"{what} norm codes")
            self.pq(f"{what} norm pq")

    def parse(self) -> dict[str, int]:
        self.take("ii", "magic and version")
        self.take("iiiiiiiiiiii", "arguments")
        self.take("d", "header")
        size, _, _, _, prune = self.take("iiiqq", "dictionary header")
        for i in range(size):
            self.pos = self.data.index(b"\0", self.pos) + 1
            self.take("qb", f"entry {i}" if i < 3 or i == size - 1 else "entries")
        if prune > 0:
            self.skip(prune * 8, "pruning index")
        (quant,) = self.take("?", "quant flag")
        self.matrix(quant, "input")
        (qout,) = self.take("?", "qout flag")
        self.matrix(quant and qout, "output")
        assert self.pos == len(self.data)
        return self.marks


def _cut_points(data: bytes) -> list[int]:
    marks = _Parser(data).parse()
    cuts = {0, 1, 3, len(data) - 1}
    for end in marks.values():
        cuts |= {end - 1, end, end + 1}
    rng = random.Random(len(data))
    cuts |= {rng.randrange(len(data)) for _ in range(30)}
    return sorted(c for c in cuts if 0 <= c < len(data))


@pytest.fixture(scope="session")
def tiny_models(documents: Docs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("fasttext_tiny")
    train = _write_training_file(
        root / "train.txt", [(label, text[:300]) for label, text in documents["train"]]
    )
    model = fasttext.train_supervised(
        str(train), dim=10, wordNgrams=2, bucket=2000, epoch=1, thread=10, seed=0, verbose=0, loss="hs"
    )
    model.save_model(str(root / "tiny.bin"))
    model.quantize(input=None, qout=False, cutoff=500, retrain=False, dsub=2, qnorm=True)
    model.save_model(str(root / "tiny.ftz"))
    return {name: (root / name).read_bytes() for name in ("tiny.bin", "tiny.ftz")}


@pytest.mark.parametrize("name", ["tiny.bin", "tiny.ftz"])
def test_truncated_and_oversized_files_raise(name: str, tiny_models: dict[str, bytes], tmp_path) -> None:
    data = tiny_models[name]
    path = tmp_path / name
    path.write_bytes(data)
    tsft.load_model(path)  # the intact file reads
    for cut in _cut_points(data):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError) as info:
            tsft.load_model(path)
        assert info.value.path == str(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(ModelFormatError, match="1 unexpected bytes"):
        tsft.load_model(path)


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def test_absurd_counts_wrong_magic_and_version_raise(tiny_models: dict[str, bytes], tmp_path) -> None:
    data = tiny_models["tiny.bin"]
    ftz = tiny_models["tiny.ftz"]
    marks = _Parser(data).parse()
    ftz_marks = _Parser(ftz).parse()
    input_shape = marks["quant flag"]
    cases = {
        "not a fastText model": _patched(data, 0, "i", 0x12345678),
        "version 13": _patched(data, 4, "i", 13),
        "version 10": _patched(data, 4, "i", 10),
        "dim is -4": _patched(data, 8, "i", -4),
        "unknown loss": _patched(data, 32, "i", 7),
        "skipgram": _patched(data, 36, "i", 2),
        "bucket is -1": _patched(data, 40, "i", -1),
        "inconsistent dictionary": _patched(data, 64, "i", 2**31 - 1),
        "dictionary entries needs": _patched(
            _patched(_patched(data, 64, "i", 2**31 - 2), 68, "i", 2**31 - 3), 72, "i", 1
        ),
        "pruning index": _patched(data, 84, "q", 2**62),
        "input matrix rows": _patched(data, input_shape, "q", 2**62),
        "input matrix data needs": _patched(data, input_shape, "q", 2**31 - 1),
        "input matrix columns": _patched(data, input_shape + 8, "q", -1),
        "output matrix has": _patched(data, marks["qout flag"], "q", 1),
        "not a boolean": _patched(data, marks["input data"], "b", 2),
        "codes needs": _patched(ftz, ftz_marks["quant flag"] + 17, "i", 2**31 - 1),
        "product quantizer is inconsistent": _patched(ftz, ftz_marks["input codes"], "i", 2**30),
    }
    for expected, patched in cases.items():
        path = tmp_path / "bad.bin"
        path.write_bytes(patched)
        with pytest.raises(ModelFormatError, match=expected):
            tsft.load_model(path)
    with pytest.raises(CorpusNotFoundError):
        tsft.load_model(tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError):
        tsft.load_model(tmp_path / "missing.bin")
