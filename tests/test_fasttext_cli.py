"""``tokensieve classify`` and ``tokensieve train-classifier`` on real corpus files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import read_jsonl_zst
from tokensieve import fasttext as tsft
from tokensieve.cli import main

zstandard = pytest.importorskip("zstandard")

INPUTS = ["raw_pool/bbc_news", "raw_pool/reddit_drunk", "target/sotu_addresses"]


@pytest.fixture(scope="module")
def model_path(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classify")
    train = root / "train.txt"
    with open(train, "w", encoding="utf-8") as f:
        for source, label in (("target/wikipedia_en", "hq"), ("raw_pool/blogs", "cc")):
            for record in read_jsonl_zst(shared_data / f"{source}.jsonl.zst", 200):
                f.write(f"__label__{label} {' '.join(record['text'].split())}\n")
    out = root / "model.bin"
    args = ["train-classifier", "--input", str(train), "--output", str(out), "--dim", "16", "--thread", "1"]
    assert main([*args, "--wordNgrams", "2", "--bucket", "50000", "--epoch", "3", "--no-progress"]) == 0
    return out


def _read_shard(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        text = zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_train_classifier_writes_a_fasttext_model(model_path: Path) -> None:
    fasttext = pytest.importorskip("fasttext")
    reference = fasttext.load_model(str(model_path))
    ours = tsft.load_model(model_path)
    assert sorted(reference.get_labels()) == ["__label__cc", "__label__hq"]
    assert reference.predict(["a text about something"], k=-1)[1][0].tolist() == list(
        ours.predict(["a text about something"], k=-1)[1][0]
    )


@pytest.mark.parametrize("mode", [[], ["--threshold", "0.5"], ["--top-fraction", "0.25"]])
def test_classify_accounts_for_every_record(
    mode: list[str], model_path: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [str(shared_data / f"{name}.jsonl.zst") for name in INPUTS]
    out = tmp_path / "out"
    args = ["classify", "--model", str(model_path), "--input", *inputs, "--out", str(out), "--label", "hq"]
    assert main([*args, *mode, "--progress"]) == 0
    assert "score" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    scores = np.load(out / "scores.npy")
    texts = [r["text"] for name in INPUTS for r in read_jsonl_zst(shared_data / f"{name}.jsonl.zst")]
    expected = tsft.load_model(model_path).score(texts, "hq", **tsft.PRESETS["dclm"])
    assert np.array_equal(scores, expected)
    counts = manifest["counts"]
    assert counts["records"] == counts["documents"] + sum(counts["skipped"].values())
    assert counts["selected"] + counts["not_selected"] == counts["documents"] == len(texts)
    assert [s["documents"] for s in manifest["sources"]] == [
        len(read_jsonl_zst(shared_data / f"{name}.jsonl.zst")) for name in INPUTS
    ]
    written = [r["text"] for shard in manifest["shards"] for r in _read_shard(out / shard["path"])]
    if not mode:
        assert counts["selected"] == 0 and written == []
        return
    if mode[0] == "--threshold":
        keep = scores >= 0.5
    else:
        keep = np.zeros(len(scores), dtype=bool)
        keep[np.argsort(-scores, kind="stable")[: round(0.25 * len(scores))]] = True
        assert manifest["selection"]["k"] == keep.sum()
    assert written == [t for t, k in zip(texts, keep, strict=True) if k]
    assert counts["selected"] == keep.sum() > 0


def test_classify_refuses_foreign_files_and_bad_fractions(
    model_path: Path, shared_data: Path, tmp_path: Path
) -> None:
    inputs = [str(shared_data / "raw_pool/reddit_drunk.jsonl.zst")]
    (tmp_path / "notes.txt").write_text("mine")
    args = ["classify", "--model", str(model_path), "--input", *inputs, "--out", str(tmp_path)]
    assert main(args) == 2
    assert main([*args[:-1], str(tmp_path / "o"), "--top-fraction", "1.5"]) == 2


def test_npy_scores_are_float32(model_path: Path, shared_data: Path, tmp_path: Path) -> None:
    inputs = [str(shared_data / "raw_pool/reddit_drunk.jsonl.zst")]
    assert (
        main(["classify", "--model", str(model_path), "--input", *inputs, "--out", str(tmp_path / "o")]) == 0
    )
    scores = np.load(io.BytesIO((tmp_path / "o" / "scores.npy").read_bytes()))
    assert scores.dtype == np.float32
