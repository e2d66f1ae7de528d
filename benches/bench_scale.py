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

Ray times are wall times of the whole job (``materialize()``), actor start-up included: the
overhead per document is ``(ray - in-process) / documents`` against the in-process run on as
many threads as the cluster has workers. The batch-function column is the cost of the Arrow
batch plumbing alone: ``fn(table)`` in batches of 4,096 rows in this process against one
compiled call over all texts. Medians of ``--reps`` runs after a warm-up.

Usage: python benches/bench_scale.py [--reps 3] [--limit DOCS]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pyarrow as pa
import ray
from common import SHARED_DATA, median, timed, write_result

from tokensieve import DSIR
from tokensieve.dsir import source_identities
from tokensieve.fasttext import train_supervised
from tokensieve.integrations import ray as tsray
from tokensieve.integrations.batch import BatchFunction, DSIRWeights, FastTextScores
from tokensieve.io import Files

BATCH = 4096


def texts_of(ds: ray.data.Dataset) -> pa.ChunkedArray:
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")
    return table.filter(table["skipped"].is_null())["text"]


def in_process(fn: BatchFunction, texts: pa.ChunkedArray, threads: int, reps: int) -> float:
    fn.num_threads = threads
    return median(timed(lambda: fn.compute(texts), reps))


def batched_call(fn: BatchFunction, table: pa.Table, threads: int, reps: int) -> float:
    """fn(table) a batch at a time, in this process: the batch functions' own cost included."""
    fn.num_threads = threads
    return median(timed(lambda: [fn(b) for b in table.to_batches(BATCH)], reps))


def on_ray(ds: ray.data.Dataset, fn: BatchFunction, actors: int, reps: int) -> float:
    return median(timed(lambda: tsray.apply(ds, fn, actors=actors, batch_size=BATCH).materialize(), reps))


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
    args = parser.parse_args()

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
    table = pa.table({"text": texts})
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
            "dsir weights": DSIRWeights(single),
            "fasttext score": FastTextScores(f"{tmp}/model.bin", "hq"),
        }
        results: dict[str, dict[str, float]] = {}
        for name, fn in stages.items():
            row = {
                "in_process_1_thread_s": in_process(fn, texts, 1, args.reps),
                "in_process_2_threads_s": in_process(fn, texts, 2, args.reps),
                "batched_2_threads_s": batched_call(fn, table, 2, args.reps),
                "ray_1_worker_s": on_ray(text_ds, fn, 1, args.reps),
                "ray_2_workers_s": on_ray(text_ds, fn, 2, args.reps),
            }
            results[name] = row
        results["dsir fit"] = {
            "in_process_2_threads_s": median(
                timed(lambda: DSIR(texts, target, num_threads=2).fit(), args.reps)
            ),
            "ray_2_workers_s": median(timed(lambda: tsray.fit_dsir(text_ds, target, actors=2), args.reps)),
        }

    def single_run():
        dsir = DSIR(Files(raw_files), target, num_threads=2).fit()
        return dsir, dsir.resample(fraction=0.1, seed=0)

    def ray_run():
        raw = tsray.read_corpus(Files(raw_files))
        return tsray.select_dsir(raw, tsray.fit_dsir(raw, target, actors=2), fraction=0.1, seed=0, actors=2)

    results["dsir end to end"] = {
        "in_process_2_threads_s": median(timed(single_run, args.reps)),
        "ray_2_workers_s": median(timed(ray_run, args.reps)),
    }
    same = selected_ids(*single_run()) == sorted(
        (source, int(p)) for source, positions in ray_run().positions.items() for p in positions
    )

    for name, row in results.items():
        base = row["in_process_2_threads_s"]
        row["docs_per_s_ray_2_workers"] = docs / row["ray_2_workers_s"]
        row["docs_per_s_in_process_2_threads"] = docs / base
        row["ray_2_workers_overhead_us_per_doc"] = (row["ray_2_workers_s"] - base) / docs * 1e6
        row["ray_2_workers_vs_in_process"] = row["ray_2_workers_s"] / base
        if "ray_1_worker_s" in row:
            row["ray_1_worker_vs_in_process"] = row["ray_1_worker_s"] / row["in_process_1_thread_s"]
            row["batch_function_overhead"] = row["batched_2_threads_s"] / base - 1
        print(name, {k: round(v, 4) for k, v in row.items()})
    path = write_result(
        "bench_scale",
        {
            "documents": docs,
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
