"""One fastText model for the processes of a machine (``share_arrays_on_machine``) against a
model per process.

Two spawned processes, as ``datasets.map(num_proc=2)`` or datatrove's local executor run them,
each unpickle a :class:`FastTextScores`, load it and score half of the texts on one thread:
``own_models`` with a model each, ``machine_shared`` inside
:func:`tokensieve.integrations.machine.share_arrays_on_machine`, both mapping the one copy of the
input matrix in ``/dev/shm``. Per process: seconds to load, anonymous memory after loading (what
it allocated itself, ``Anonymous`` in ``/proc/self/smaps_rollup``), shared memory mapped on 2 MiB
pages (``ShmemPmdMapped``) and scoring microseconds per document; medians over ``--reps`` rounds
of both configurations (interleaved), with the ratio shared / own of the scoring time per round.
The scores of the two configurations are compared (they must be equal).

The model: ``--model PATH`` (e.g. the DCLM-sized dim-256, 2M-bucket classifier that
``bench_fasttext.py --keep-models DIR`` leaves), else a classifier with DCLM's shape but dim 100
(2M buckets, 800 MB) trained here on ``raw_pool`` against ``target`` in one epoch.

Usage: python benches/bench_machine_share.py [--model PATH] [--label L] [--reps 3] [--docs 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SHARED_DATA, median, write_result

from tokensieve.fasttext import load_model, train_supervised
from tokensieve.integrations.batch import FastTextScores
from tokensieve.integrations.machine import share_arrays_on_machine
from tokensieve.io import DocumentReader


def smaps_kb(field: str) -> int:
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def worker(pickled: bytes, texts: list[str]) -> dict[str, Any]:
    """In a spawned process: load the unpickled function, then score ``texts`` on one thread."""
    start = time.perf_counter()
    fn = pickle.loads(pickled)
    fn.place(num_threads=1, gpu=False)
    fn.load()
    loaded = time.perf_counter()
    out = {
        "load_s": loaded - start,
        "anonymous_mb": smaps_kb("Anonymous") / 1024,
        "shmem_pmd_mapped_mb": smaps_kb("ShmemPmdMapped") / 1024,
    }
    start = time.perf_counter()
    scores = fn.compute(texts).columns[fn.column].to_numpy(zero_copy_only=False)
    out["us_per_doc"] = (time.perf_counter() - start) / len(texts) * 1e6
    out["scores"] = scores
    return out


def run_pair(fn: FastTextScores, halves: list[list[str]]) -> list[dict[str, Any]]:
    pickled = pickle.dumps(fn)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.starmap(worker, [(pickled, half) for half in halves])


def texts_of(folder: Path, limit: int) -> list[str]:
    out: list[str] = []
    for batch in DocumentReader(sorted(folder.glob("*.jsonl.zst"))):
        out.extend(" ".join(r.text.split()) for r in batch)
    return out[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a fastText classifier (.bin); trained here if omitted")
    parser.add_argument("--label", help="the label scored (default: the model's first)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--docs", type=int, default=20_000)
    args = parser.parse_args()
    texts = texts_of(SHARED_DATA / "raw_pool", args.docs)
    with tempfile.TemporaryDirectory() as work:
        model_path = args.model
        hyper = None
        if model_path is None:
            target = texts_of(SHARED_DATA / "target", 5_000)
            hyper = {"dim": 100, "wordNgrams": 2, "bucket": 2_000_000, "lr": 0.1, "epoch": 1, "seed": 0}
            labels = ["cc"] * len(texts) + ["hq"] * len(target)
            model = train_supervised((texts + target, labels), thread=2, **hyper)
            model_path = Path(work) / "classifier.bin"
            model.save_model(model_path)
            del model
        label = args.label or load_model(model_path).labels[0]
        fn = FastTextScores(model_path, label)
        halves = [texts[: len(texts) // 2], texts[len(texts) // 2 :]]
        rounds: dict[str, list[list[dict[str, Any]]]] = {"own_models": [], "machine_shared": []}
        for _ in range(args.reps):
            rounds["own_models"].append(run_pair(fn, halves))
            # a fresh function: this process's own stays as it was for the next round
            with share_arrays_on_machine(pickle.loads(pickle.dumps(fn))) as shared:
                rounds["machine_shared"].append(run_pair(shared, halves))
        reference = np.concatenate([p["scores"] for p in rounds["own_models"][0]])
        for pairs in rounds.values():
            for pair in pairs:
                np.testing.assert_array_equal(np.concatenate([p["scores"] for p in pair]), reference)
    row: dict[str, Any] = {
        "model": str(args.model) if args.model else "trained here",
        "hyper_parameters": hyper,
        "model_file_mb": args.model.stat().st_size / 1e6 if args.model else None,
    }
    for kind, pairs in rounds.items():
        for key in ("load_s", "anonymous_mb", "shmem_pmd_mapped_mb", "us_per_doc"):
            row[f"{kind}_{key}"] = median([p[key] for pair in pairs for p in pair])
    by_round = [
        median([p["us_per_doc"] for p in s]) / median([p["us_per_doc"] for p in o])
        for s, o in zip(rounds["machine_shared"], rounds["own_models"], strict=True)
    ]
    row["shared_vs_own_us_per_doc_by_round"] = by_round
    row["shared_vs_own_us_per_doc"] = median(by_round)
    print(f"{'':16}{'load s':>8}{'anon MB':>10}{'2M-page shm MB':>16}{'us/doc':>9}")
    for kind in rounds:
        print(
            f"{kind:16}{row[f'{kind}_load_s']:8.2f}{row[f'{kind}_anonymous_mb']:10.0f}"
            f"{row[f'{kind}_shmem_pmd_mapped_mb']:16.0f}{row[f'{kind}_us_per_doc']:9.1f}"
        )
    ratio = row["shared_vs_own_us_per_doc"]
    print(f"shared / own scoring time per document: {ratio:.3f} (by round {np.round(by_round, 3).tolist()})")
    print("written", write_result("bench_machine_share", {"docs": len(texts), "reps": args.reps, **row}))


if __name__ == "__main__":
    main()
