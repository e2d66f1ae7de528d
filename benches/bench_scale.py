"""Ray Data integration: throughput on a local cluster with 1 and 2 workers against the
in-process API on the same cores, and the integration's overhead per document.

All of ``../shared/data/raw_pool`` (68,250 documents) is read into a local Ray cluster
(``ray.init(num_cpus=2)``) with :func:`tokensieve.integrations.ray.read_corpus` and
materialised; the in-process runs take the same documents as one Arrow array. Stages:

* ``dsir weights``: :class:`DSIRWeights` (estimator fitted on ``target``, ``dsir-sha256``,
  10,000 buckets) with ``apply`` on 1 actor x 1 thread and 2 actors x 1 thread, against
  ``DSIRWeights.compute`` in this process on 1 and 2 threads;
* ``fasttext score``: :class:`FastTextScores` of a softmax classifier (``wordNgrams=2``, dim 100,
  200,000 buckets, ``raw_pool`` against ``target``, trained here by tokensieve), the same way;
* ``dsir fit``: ``fit_dsir`` (per-batch count vectors and an aggregation) against ``DSIR(texts,
  target).fit()`` in this process;
* ``dsir end to end``: ``read_corpus`` + ``fit_dsir`` + ``select_dsir(fraction=0.1)`` from the
  files against ``DSIR(Files(...)).fit().resample(fraction=0.1)`` (both from the ``.jsonl.zst``
  files, selections compared).

Ray times are wall times of the whole job (``materialize()``), actor start-up included. Each
batch-function stage runs on the first quarter of the documents and on all of them: the time
per extra document (``*_us_per_doc``) and the fixed time (``*_fixed_s``, start-up) follow (with
``--repeat K``, "all" is the pool K times over: a longer lever against the fixed costs), and
the integration's overhead per document is Ray's time per document against the in-process
one on as many threads as the cluster has workers (1 worker against 1 thread, 2 against 2):
``*_overhead_per_doc`` from the medians of the times, ``*_overhead_per_doc_paired`` the median
over rounds of the overhead computed within each round (``*_by_round``).
The actors share the fastText model's input matrix through Ray's object store (``apply``'s
default); ``ray_2_workers_own_models`` (``share_arrays=False``) gives each actor a copy of its
own; ``*_anonymous_mb`` is the memory each of 2 such actors has allocated itself (not the
shared memory it maps) once its model is loaded. ``ray_1_actor_2_cpus`` is one actor with both
CPUs (two threads sharing one model) against 2 in-process threads. ``batched_2_threads`` is
the Arrow plumbing alone: ``fn(table)`` on batches
of ``BATCH_ROWS`` (16,384) rows in this process. Without Ray, ``two_processes_*_vs_threads``
times two forked processes computing half the texts each on one thread, with a model each
(``own_copies``, as one-CPU actors have) or on one model whose pages they share
(``shared_pages``), against the in-process call on 2 threads: what a model per process costs.
The Ray runs return the scores only (``keep_columns=[]``), as the in-process call does;
``ray_2_workers_keep_text`` also carries the text through. Medians of ``--reps`` rounds after a
warm-up round, each round running every configuration once (interleaved, so that the machine's
drift falls on all alike); no other load should run meanwhile.

Usage: python benches/bench_scale.py [--reps 3] [--limit DOCS] [--repeat K] [--stages S,...] [--runs R,...]
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from common import SHARED_DATA, forked_wall_seconds, median, timed, write_result

from tokensieve import DSIR
from tokensieve.dsir import source_identities
from tokensieve.fasttext import train_supervised
from tokensieve.integrations import ray as tsray
from tokensieve.integrations.batch import BatchFunction, DSIRWeights, FastTextScores
from tokensieve.io import Files

BATCH = tsray.BATCH_ROWS
STAGES = ("dsir weights", "fasttext score", "dsir fit", "dsir end to end")
#: The configurations of the batch-function stages; ``two_processes`` is the forked pair,
#: ``memory`` the anonymous memory of 2 actors sharing the model's arrays or not.
RUNS = (
    "in_process_1_thread",
    "in_process_2_threads",
    "batched_2_threads",
    "ray_1_worker",
    "ray_2_workers",
    "ray_2_workers_keep_text",
    "ray_1_actor_2_cpus",
    "ray_2_workers_own_models",
    "two_processes",
    "memory",
)


def texts_of(ds: ray.data.Dataset) -> pa.ChunkedArray:
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")
    return table.filter(table["skipped"].is_null())["text"]


def in_process(fn: BatchFunction, texts: pa.ChunkedArray, threads: int) -> None:
    """One compiled call per 10,000 texts (BatchFunction.compute), in this process."""
    fn.num_threads = threads
    fn.compute(texts)


def batched_call(fn: BatchFunction, texts: pa.ChunkedArray, threads: int) -> None:
    """fn(table) a batch of BATCH rows at a time, in this process: the Arrow plumbing included."""
    fn.num_threads = threads
    for batch in pa.table({"text": texts}).to_batches(BATCH):
        fn(batch)


def on_ray(
    ds: ray.data.Dataset,
    fn: BatchFunction,
    actors: int,
    keep_text: bool = False,
    cpus: int = 1,
    share_arrays: bool = True,
) -> None:
    """apply() on ``actors`` actors of ``cpus`` CPUs (threads) each, the whole job (actor start-up
    included). The output holds the scores only, as the in-process call returns them, unless
    ``keep_text``."""
    keep = None if keep_text else []
    tsray.apply(
        ds, fn, actors=actors, num_cpus=cpus, batch_size=BATCH, keep_columns=keep, share_arrays=share_arrays
    ).materialize()


def forked_halves(fn: BatchFunction, texts: pa.ChunkedArray, own_copies: bool) -> float:
    """Wall seconds of two forked processes computing half the texts each on one thread, as two
    one-CPU actors do: each with a model of its own (``own_copies``, loaded from the pickled
    function as an actor loads it) or both on this process's loaded model, whose pages a fork
    shares. Timed from a common start once both have loaded."""
    halves = [texts[: len(texts) // 2], texts[len(texts) // 2 :]]

    def prepare(i: int) -> Callable[[], object]:
        mine = pickle.loads(pickle.dumps(fn)) if own_copies else fn
        mine.place(num_threads=1, gpu=False)
        mine.load()
        return lambda: mine.compute(halves[i])

    return forked_wall_seconds(prepare, len(halves))


def anonymous_mb() -> float:
    """This process's anonymous memory in MB (``Anonymous`` in ``/proc/self/smaps_rollup``):
    what it allocated itself, not the shared memory it maps (whose pages count as private or
    shared depending on which processes touched them last)."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Anonymous:")) / 1024


class MemoryAfterLoad(BatchFunction):
    """``inner``'s columns, and per row the actor's pid and its anonymous memory just after
    ``inner`` loaded its model (before any batch)."""

    def __init__(self, inner: BatchFunction) -> None:
        super().__init__(inner.text_column, inner.num_threads)
        self.inner = inner
        self.loaded_mb = float("nan")

    @property
    def column_names(self) -> tuple[str, ...]:
        return (*self.inner.column_names, "pid", "anonymous_mb")

    def shareable_arrays(self) -> dict[str, np.ndarray]:
        return self.inner.shareable_arrays()

    def use_shared_arrays(self, arrays: Any) -> None:
        self.inner.use_shared_arrays(arrays)

    def place(self, *, num_threads: int, gpu: bool) -> None:
        self.inner.place(num_threads=num_threads, gpu=gpu)

    def load(self) -> None:
        self.inner.load()
        self.loaded_mb = anonymous_mb()

    def _compute(self, texts: Any) -> Any:
        computed = self.inner._compute(texts)
        computed.columns["pid"] = pa.array([os.getpid()] * len(texts))
        computed.columns["anonymous_mb"] = pa.array([self.loaded_mb] * len(texts))
        return computed


def anonymous_mb_per_actor(ds: ray.data.Dataset, fn: BatchFunction, share_arrays: bool) -> list[float]:
    """The anonymous memory of each of 2 one-CPU actors running ``fn`` on ``ds`` once its model
    is loaded: what one more actor costs a machine."""
    table = tsray.apply(ds, MemoryAfterLoad(fn), actors=2, batch_size=BATCH, share_arrays=share_arrays)
    largest: dict[int, float] = {}
    rows = table.select_columns(["pid", "anonymous_mb"]).to_pandas()
    for pid, mb in zip(rows["pid"], rows["anonymous_mb"], strict=True):
        largest[int(pid)] = max(float(mb), largest.get(int(pid), 0.0))
    return sorted(largest.values())


def marginal(small: float, large: float, n_small: int, n_large: int) -> tuple[float, float]:
    """Seconds per extra document and the fixed seconds, from the times at two sizes."""
    per_doc = (large - small) / (n_large - n_small)
    return per_doc, small - per_doc * n_small


def selected_ids(dsir: DSIR, selection) -> list[tuple[str, int]]:
    """(source identity, position) of a single-machine selection."""
    names = source_identities([s.name for s in dsir.report.sources])
    starts = np.cumsum([0] + [s.documents for s in dsir.report.sources])
    source_of = np.searchsorted(starts, selection.indices, side="right") - 1
    return sorted((names[s], int(i - starts[s])) for s, i in zip(source_of, selection.indices, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--limit", type=int, help="documents of the pool (default: all)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="the batch-function stages' large size is the pool this many times over (default 1): "
        "a longer lever against the fixed costs when estimating the time per document",
    )
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated stages to run (default: all of {', '.join(STAGES)})",
    )
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help="comma-separated configurations of the batch-function stages (default: all of "
        f"{', '.join(RUNS)}); overheads are computed where both sides ran",
    )
    args = parser.parse_args()
    stages_wanted, runs_wanted = args.stages.split(","), args.runs.split(",")
    for name in set(stages_wanted) - set(STAGES) | set(runs_wanted) - set(RUNS):
        parser.error(f"unknown stage or configuration {name!r}")

    ray.init(num_cpus=2, object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    raw_files = sorted((SHARED_DATA / "raw_pool").glob("*.jsonl.zst"))
    target_files = sorted((SHARED_DATA / "target").glob("*.jsonl.zst"))
    start = time.perf_counter()
    ds = tsray.read_corpus(Files(raw_files)).materialize()
    read_seconds = time.perf_counter() - start
    texts = texts_of(ds)
    if args.limit:
        texts = texts[: args.limit]
        ds = ds.limit(args.limit).materialize()
    docs = len(texts)
    text_ds = ds.select_columns(["text"]).materialize()
    target = Files(target_files)
    print(f"{docs:,} documents, {sum(len(t) for t in texts.to_pylist()) / 1e6:.1f} MB of text")

    single = DSIR(texts, target, num_threads=2).fit()
    # The classifier: every fourth pool document against the target (cc / hq), flattened.
    pool = texts.to_pylist()[::4]
    hq = texts_of(tsray.read_corpus(target).materialize()).to_pylist()
    training = ([" ".join(t.split()) for t in pool + hq], ["cc"] * len(pool) + ["hq"] * len(hq))
    model = train_supervised(training, wordNgrams=2, bucket=200_000, epoch=2, thread=2)

    with tempfile.TemporaryDirectory() as tmp:
        model.save_model(f"{tmp}/model.bin")
        stages = {
            name: fn
            for name, fn in {
                "dsir weights": DSIRWeights(single),
                "fasttext score": FastTextScores(f"{tmp}/model.bin", "hq"),
            }.items()
            if name in stages_wanted
        }
        results: dict[str, dict[str, Any]] = {}
        quarter = docs // 4
        many = pa.chunked_array(texts.chunks * args.repeat)
        many_ds = text_ds.union(*[text_ds] * (args.repeat - 1)).materialize() if args.repeat > 1 else text_ds
        sizes = {"quarter": (texts[:quarter], text_ds.limit(quarter).materialize()), "all": (many, many_ds)}
        runs = {
            "in_process_1_thread": lambda fn, t, d: in_process(fn, t, 1),
            "in_process_2_threads": lambda fn, t, d: in_process(fn, t, 2),
            "batched_2_threads": lambda fn, t, d: batched_call(fn, t, 2),
            "ray_1_worker": lambda fn, t, d: on_ray(d, fn, 1),
            "ray_2_workers": lambda fn, t, d: on_ray(d, fn, 2),
            "ray_2_workers_keep_text": lambda fn, t, d: on_ray(d, fn, 2, keep_text=True),
            "ray_1_actor_2_cpus": lambda fn, t, d: on_ray(d, fn, 1, cpus=2),
            "ray_2_workers_own_models": lambda fn, t, d: on_ray(d, fn, 2, share_arrays=False),
        }
        runs = {name: run for name, run in runs.items() if name in runs_wanted}
        for name, fn in stages.items():
            # Every configuration once per repetition, interleaved, so that the VM's drift over
            # minutes falls on all of them alike (after one untimed warm-up round).
            times: dict[tuple[str, str], list[float]] = {(run, size): [] for run in runs for size in sizes}
            for rep in range(args.reps + 1):
                for (run, size), measured in times.items():
                    size_texts, size_ds = sizes[size]
                    start = time.perf_counter()
                    runs[run](fn, size_texts, size_ds)
                    if rep > 0:
                        measured.append(time.perf_counter() - start)
            row: dict[str, Any] = {f"{run}_{size}_s": median(t) for (run, size), t in times.items()}
            for run in runs:
                per_doc, fixed = marginal(row[f"{run}_quarter_s"], row[f"{run}_all_s"], quarter, len(many))
                row[f"{run}_us_per_doc"], row[f"{run}_fixed_s"] = per_doc * 1e6, fixed
            # The same per round: each round's two sizes and the peer's were timed minutes apart
            # at most, so pairing them within the round cancels the drift between rounds.
            by_round = {
                run: [
                    marginal(small, large, quarter, len(many))[0]
                    for small, large in zip(times[(run, "quarter")], times[(run, "all")], strict=True)
                ]
                for run in runs
            }
            pairs = (
                ("1_worker", "1_thread"),
                ("2_workers", "2_threads"),
                ("1_actor_2_cpus", "2_threads"),
                ("2_workers_own_models", "2_threads"),
            )
            for workers, threads in pairs:
                if f"ray_{workers}" not in runs or f"in_process_{threads}" not in runs:
                    continue
                per_doc = row[f"ray_{workers}_us_per_doc"] / row[f"in_process_{threads}_us_per_doc"]
                row[f"ray_{workers}_overhead_per_doc"] = per_doc - 1
                ray_rounds, peer_rounds = by_round[f"ray_{workers}"], by_round[f"in_process_{threads}"]
                rounds = [r / p - 1 for r, p in zip(ray_rounds, peer_rounds, strict=True)]
                row[f"ray_{workers}_overhead_per_doc_by_round"] = rounds
                row[f"ray_{workers}_overhead_per_doc_paired"] = median(rounds)
                row[f"ray_{workers}_vs_in_process_all"] = (
                    row[f"ray_{workers}_all_s"] / row[f"in_process_{threads}_all_s"]
                )
            if "batched_2_threads" in runs and "in_process_2_threads" in runs:
                row["batch_function_overhead_per_doc"] = (
                    row["batched_2_threads_us_per_doc"] / row["in_process_2_threads_us_per_doc"] - 1
                )
            # Two processes against two threads, without Ray: a model per process (as two
            # one-CPU actors have) or one model whose pages both share.
            copies: dict[str, list[float]] = {"threads": [], "own_copies": [], "shared_pages": []}
            for _ in range(args.reps if "two_processes" in runs_wanted else 0):
                start = time.perf_counter()
                in_process(fn, many, 2)
                copies["threads"].append(time.perf_counter() - start)
                copies["own_copies"].append(forked_halves(fn, many, own_copies=True))
                copies["shared_pages"].append(forked_halves(fn, many, own_copies=False))
            for kind in ("own_copies", "shared_pages") if copies["threads"] else ():
                rounds = [p / t for p, t in zip(copies[kind], copies["threads"], strict=True)]
                row[f"two_processes_{kind}_vs_threads_by_round"] = rounds
                row[f"two_processes_{kind}_vs_threads"] = median(rounds)
            if "memory" in runs_wanted:
                for share in (True, False):
                    kind = "shared" if share else "own_models"
                    row[f"ray_2_workers_{kind}_anonymous_mb"] = anonymous_mb_per_actor(text_ds, fn, share)
            results[name] = row
            print(name, {k: np.round(v, 3).tolist() for k, v in row.items()})
        if "dsir fit" in stages_wanted:
            results["dsir fit"] = {
                "in_process_2_threads_all_s": median(
                    timed(lambda: DSIR(texts, target, num_threads=2).fit(), args.reps)
                ),
                "ray_2_workers_all_s": median(
                    timed(lambda: tsray.fit_dsir(text_ds, target, actors=2), args.reps)
                ),
            }

    def single_run():
        dsir = DSIR(Files(raw_files), target, num_threads=2).fit()
        return dsir, dsir.resample(fraction=0.1, seed=0)

    def ray_run():
        raw = tsray.read_corpus(Files(raw_files))
        return tsray.select_dsir(raw, tsray.fit_dsir(raw, target, actors=2), fraction=0.1, seed=0, actors=2)

    same = None
    if "dsir end to end" in stages_wanted:
        results["dsir end to end"] = {
            "in_process_2_threads_all_s": median(timed(single_run, args.reps)),
            "ray_2_workers_all_s": median(timed(ray_run, args.reps)),
        }
        same = selected_ids(*single_run()) == sorted(
            (source, int(p)) for source, positions in ray_run().positions.items() for p in positions
        )
    for name in ("dsir fit", "dsir end to end"):
        if name not in results:
            continue
        row = results[name]
        row["ray_2_workers_vs_in_process_all"] = (
            row["ray_2_workers_all_s"] / row["in_process_2_threads_all_s"]
        )
        print(name, {k: round(v, 3) for k, v in row.items()})
    path = write_result(
        "bench_scale",
        {
            "documents": docs,
            "repeat": args.repeat,
            "read_corpus_s": read_seconds,
            "ray": ray.__version__,
            "batch_rows": BATCH,
            "reps": args.reps,
            "same_selection_as_single_machine": same,
            "stages": results,
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
