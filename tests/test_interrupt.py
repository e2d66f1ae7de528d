"""Ctrl-C during a long compiled call: the call releases the GIL, so Python's signal handlers
cannot run until it returns; the binding runs them itself between batches of a read, between
slices of texts held in memory, and during training, and the handler's exception stops the call
early and is raised from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tokensieve import HashedNgrams, _core
from tokensieve import fasttext as tsft
from tokensieve.io import Files, scan

#: The raw pool this many times over: a read of tens of seconds, of which the test waits 0.3.
COPIES = 40


class SigintError(Exception):
    """What the test's SIGINT handler raises (not KeyboardInterrupt, which would stop pytest
    if it arrived outside the test's block)."""


def assert_stops_early(run: Callable[[int], object], units: int) -> None:
    """``run(n)`` does ``n`` units of work. Times one unit, then sends this process SIGINT 0.3 s
    into ``run(units)`` and checks that the handler's exception came out of it before a quarter
    of its work could have been done (without the checks it comes at the end of the call)."""
    start = time.perf_counter()
    run(1)
    unit = time.perf_counter() - start
    previous = signal.signal(signal.SIGINT, lambda *_: (_ for _ in ()).throw(SigintError()))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    returned = interrupted = False
    start = time.perf_counter()
    try:
        timer.start()
        run(units)
        returned = True
        timer.join()
        time.sleep(1)  # the signal arrives, and is raised, here
    except SigintError:
        interrupted = True
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    elapsed = time.perf_counter() - start
    assert interrupted and not returned, "the call ran to its end: the signal waited for it"
    assert elapsed < 0.3 + units * unit / 4, (elapsed, unit)


@pytest.fixture(scope="module")
def pool_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "raw_pool").glob("*.jsonl.zst"))


def test_ctrl_c_stops_reading_files(pool_files: list[Path]) -> None:
    assert_stops_early(lambda copies: scan(Files(pool_files * copies), num_threads=2), COPIES)


def test_ctrl_c_stops_counting_ngrams_over_files(pool_files: list[Path]) -> None:
    featurizer = HashedNgrams(hash="dsir-sha256", num_threads=2)
    assert_stops_early(lambda copies: featurizer.sum_counts(Files(pool_files * copies)), COPIES)


def test_ctrl_c_stops_a_classifier_scoring_files(pool_files: list[Path], news_or_mail: Path) -> None:
    model = tsft.load_model(news_or_mail, num_threads=2)
    preset = tsft.PRESETS["dclm"]
    assert_stops_early(lambda copies: model.score(Files(pool_files * copies), "news", **preset), COPIES)


def test_ctrl_c_stops_writing_the_selected_documents(pool_files: list[Path], tmp_path: Path) -> None:
    # The final pass of `tokensieve dsir` and `classify`: every file is read again, line by
    # line, to copy the selected lines (here the first of each file) into shards.
    documents = [s.documents for s in scan(Files(pool_files)).sources]

    def write(copies: int) -> None:
        selected = np.concatenate([np.eye(1, n, dtype=np.uint8)[0] for n in documents] * copies)
        out = tmp_path / f"shards-{copies}"
        out.mkdir()
        _core.write_selected_files(
            [str(p) for p in pool_files * copies],
            documents * copies,
            [[] for _ in range(len(pool_files) * copies)],  # no skipped lines: the line-by-line path
            selected,
            str(out),
            format="jsonl",
            num_threads=2,
        )

    assert_stops_early(write, COPIES)


def test_ctrl_c_stops_training(corpus_slice: list[str]) -> None:
    texts = [" ".join(t.split()) for t in corpus_slice]
    labels = [str(i % 2) for i in range(len(texts))]
    # Units of 10 epochs: one epoch is too short to time.
    assert_stops_early(lambda tens: tsft.train_supervised((texts, labels), epoch=10 * tens, thread=2), 100)


@pytest.mark.parametrize(
    "call", ["sum_counts", "transform", "importance_weights", "classifier_scores", "predictions"]
)
def test_ctrl_c_stops_a_call_over_texts_in_memory(
    call: str, corpus_slice: list[str], news_or_mail: Path
) -> None:
    # The texts are held by Python: the binding works through them a slice at a time and runs
    # the signal handlers in between. dsir-sha256 keeps a unit (the slice once) long enough to time.
    featurizer = HashedNgrams(hash="dsir-sha256", num_threads=2)
    log_diff = np.random.default_rng(0).normal(size=(1, featurizer.buckets))
    importance = _core.ImportanceModel(featurizer._core, log_diff)
    model = tsft.load_model(news_or_mail, num_threads=2)
    runs: dict[str, Callable[[list[str]], object]] = {
        "sum_counts": featurizer.sum_counts,
        "transform": featurizer.transform,
        "importance_weights": lambda texts: importance.score_texts(texts, num_threads=2),
        "classifier_scores": lambda texts: model.score(texts, "news", newline=" "),
        "predictions": lambda texts: model.predict_batch(texts, newline=" "),
    }
    units = 100 if call in ("classifier_scores", "predictions") else 200
    assert_stops_early(lambda copies: runs[call](corpus_slice * copies), units)


@pytest.mark.parametrize("call", ["sum_counts_ids", "transform_ids"])
def test_ctrl_c_stops_a_call_over_token_ids(call: str) -> None:
    # As for texts: the binding works through the documents 2M ids at a time.
    featurizer = HashedNgrams(hash="dsir-sha256", num_threads=2)
    # 200 units of 400 documents of 500 ids, made beforehand: a unit is a prefix (a view).
    ids = np.tile(np.random.default_rng(0).integers(0, 50_000, size=200_000, dtype=np.uint32), 200)
    offsets = np.arange(0, len(ids) + 1, 500)

    def run(copies: int) -> object:
        return getattr(featurizer, call)(ids[: copies * 200_000], offsets[: copies * 400 + 1])

    run(1)  # builds the threads' n-gram caches, which would inflate the time of one unit
    assert_stops_early(run, 200)


def test_ctrl_c_ends_a_command_cleanly(pool_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "counts.npy"
    # The child installs Python's own SIGINT handler: one started from a background job
    # inherits SIGINT ignored, and Python then installs none.
    command_line = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = sys.argv[1:]; runpy.run_module('tokensieve.cli', run_name='__main__')"
    )
    inputs = [str(p) for p in pool_files * COPIES]
    args = [sys.executable, "-c", command_line, "tokensieve", "featurize", *inputs, "--out", str(out)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as command:
        try:
            time.sleep(5)  # imported and reading (the whole command takes about a minute here)
            command.send_signal(signal.SIGINT)
            _, err = command.communicate(timeout=30)
        finally:
            command.kill()
    assert command.returncode == 130 and err.strip().endswith("tokensieve: interrupted"), err
    assert not out.exists() and not list(tmp_path.iterdir())  # no output, no temporary file
