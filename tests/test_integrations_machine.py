"""share_arrays_on_machine: processes of a machine score from one copy of a fastText model's input
matrix in shared memory, with the scores of a model of their own; the files go when the block
ends; a process that cannot find them builds its own copy; functions without shareable arrays
pass through; equal functions still pickle to equal bytes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import in_shared_mapping, read_jsonl_zst
from tokensieve import DSIR
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.fasttext import PRESETS, load_model
from tokensieve.integrations.batch import DSIRWeights, FastTextScores
from tokensieve.integrations.machine import share_arrays_on_machine

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str]:
    records = read_jsonl_zst(shared_data / "raw_pool/bbc_news.jsonl.zst", 60)
    records += read_jsonl_zst(shared_data / "raw_pool/spamassassin_email.jsonl.zst", 60)
    return [r["text"] for r in records]


@pytest.fixture
def shm(tmp_path: Path) -> Path:
    """A directory on the shared memory file system when there is one (tmpfs), else tmp_path."""
    if not os.path.isdir("/dev/shm"):
        return tmp_path
    path = Path("/dev/shm") / f"tokensieve-test-{os.getpid()}-{tmp_path.name}"
    path.mkdir()
    yield path
    for leftover in path.iterdir():
        leftover.unlink()
    path.rmdir()


def probe(fn: FastTextScores, texts: list[str]) -> tuple[list[float], bool, str | None]:
    """In a worker process: the scores, whether the model computes from a shared mapping, and
    the file behind it."""
    scores = fn.compute(texts).columns[fn.column].to_numpy(zero_copy_only=False)
    matrix = fn.model.get_input_matrix()
    backing = getattr(getattr(fn.model, "_shared_input", None), "filename", None)
    return scores.tolist(), in_shared_mapping(matrix), backing


def test_worker_processes_score_from_one_shared_copy(news_or_mail: Path, texts: list[str], shm: Path) -> None:
    expected = load_model(news_or_mail).score(texts, "news", **PRESETS["dclm"])
    plain = FastTextScores(news_or_mail, "news")
    with share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm) as fn:
        (segment,) = shm.iterdir()
        rows, dim = fn.model.get_input_matrix().shape
        assert segment.name == f"tokensieve-{fn.model.sha256}-input_matrix-{rows}x{dim}-float32"
        assert segment.stat().st_size == rows * dim * 4
        # spawned processes unpickle the function, as datasets and datatrove workers do
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            results = pool.starmap(probe, [(fn, texts[:70]), (fn, texts[70:])])
        # this process computes from the file too, its own copy released
        here = probe(fn, texts)
        assert here[1] and here[2] == str(segment)
        shared_pickle = pickle.dumps(fn)
    for _, shared, backing in results:
        assert shared and backing == str(segment)
    np.testing.assert_array_equal(np.array(results[0][0] + results[1][0], np.float32), expected)
    np.testing.assert_array_equal(np.array(here[0], np.float32), expected)
    assert list(shm.iterdir()) == []  # the block deleted the file it wrote
    # out of the block the function pickles as one that never shared; inside, as its twin does
    assert pickle.dumps(fn) == pickle.dumps(plain)
    with share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm) as twin:
        assert pickle.dumps(twin) == shared_pickle


def test_a_process_without_the_file_builds_its_own_copy(
    news_or_mail: Path, texts: list[str], shm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm) as fn:
        elsewhere = pickle.loads(pickle.dumps(fn))
    # the block is over, as on a machine the files were never on
    with caplog.at_level(logging.WARNING, logger="tokensieve.integrations.machine"):
        scores, shared, backing = probe(elsewhere, texts)
    assert "input_matrix is not shared on this machine" in caplog.text
    assert not shared and backing is None
    np.testing.assert_array_equal(
        np.array(scores, np.float32), load_model(news_or_mail).score(texts, "news", **PRESETS["dclm"])
    )


def test_an_existing_file_is_used_and_left(news_or_mail: Path, texts: list[str], shm: Path) -> None:
    with share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm) as first:
        # a second block over the same model (another job on the machine) finds the file
        with share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm) as second:
            assert probe(second, texts)[2] == probe(first, texts)[2]
        assert len(list(shm.iterdir())) == 1  # the second block did not write it: left for the first
    assert list(shm.iterdir()) == []


def test_functions_without_shareable_arrays_pass_through(
    news_or_mail: Path, shared_data: Path, texts: list[str], shm: Path, tmp_path: Path
) -> None:
    target = [r["text"] for r in read_jsonl_zst(shared_data / "target/gutenberg_books.jsonl.zst", 20)]
    weights = DSIRWeights(DSIR(texts, target, buckets=1024, num_threads=1).fit())
    with share_arrays_on_machine(weights, shm) as fn:
        assert fn is weights and list(shm.iterdir()) == []
    fasttext = pytest.importorskip("fasttext")
    quantised = tmp_path / "model.ftz"
    model = fasttext.load_model(str(news_or_mail))
    model.quantize(input=None, retrain=False, dsub=2, cutoff=1000)
    model.save_model(str(quantised))
    with share_arrays_on_machine(FastTextScores(quantised, "news"), shm) as fn:
        assert list(shm.iterdir()) == []
        assert len(fn.compute(texts).columns[fn.column]) == len(texts)
        assert fn.model._shared_input is None
    missing = share_arrays_on_machine(FastTextScores(news_or_mail, "news"), tmp_path / "missing")
    with pytest.raises(InvalidArgumentError, match="is not a directory"), missing:
        pass


def test_a_directory_without_room_is_refused_before_writing(
    news_or_mail: Path, shm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(64e6, 64e6, 1000))
    sharing = share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm)
    with pytest.raises(InvalidArgumentError, match=r"0 MB free, the arrays to share need \d+ MB"), sharing:
        pass
    assert list(shm.iterdir()) == []


def test_the_files_go_when_the_block_fails(news_or_mail: Path, shm: Path) -> None:
    sharing = share_arrays_on_machine(FastTextScores(news_or_mail, "news"), shm)
    with pytest.raises(RuntimeError, match="the job failed"), sharing:  # noqa: PT012 (the block is the subject)
        assert len(list(shm.iterdir())) == 1
        raise RuntimeError("the job failed")
    assert list(shm.iterdir()) == []
