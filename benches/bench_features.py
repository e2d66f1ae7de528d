"""Hashed n-gram featurisation throughput over ../shared/data/raw_pool.

Measured in one process, medians over repeated runs:

* tokensieve ``sum_counts`` over the pool's texts held in memory (a Python list of str), for both
  hash families at 1 and 2 threads;
* the same from the compressed ``.jsonl.zst`` files (decompression and JSON parsing included);
* the reference, ``data_selection.hashed_ngram_dsir.get_ngram_counts`` (one core, per document,
  as the ``data-selection`` package calls it), on a slice of the same texts;
* a plain pass over the same bytes: ``bytes.count(b"\\n")``, i.e. memory speed.

The ``dsir-sha256`` n-gram cache is per thread and lives as long as the process: to time cold
caches, each repetition alternates the bucket count between 10000 and 10001, which rebuilds it.

Usage: python benches/bench_features.py [--reps 5] [--reference-docs 3000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import zstandard
from common import SHARED_DATA, median, timed, write_result

import tokensieve
from tokensieve.io import Files


def load_pool(pool_dir: Path) -> tuple[list[Path], list[str]]:
    files = sorted(pool_dir.glob("*.jsonl.zst"))
    texts: list[str] = []
    for path in files:
        with open(path, "rb") as f:
            for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
                texts.append(json.loads(line)["text"])
    return files, texts


def time_sum_counts(family: str, threads: int, source: object, reps: int) -> list[float]:
    """Seconds per `sum_counts(source)`. Alternating the bucket count rebuilds the dsir-sha256
    caches between repetitions, so every run starts cold."""
    featurizers = [
        tokensieve.HashedNgrams(hash=family, buckets=b, num_threads=threads) for b in (10000, 10001)
    ]
    current = featurizers[0]

    def pick(i: int) -> None:
        nonlocal current
        current = featurizers[(i + 1) % 2]

    return timed(lambda: current.sum_counts(source), reps, before_each=pick)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--reference-docs", type=int, default=3000)
    args = parser.parse_args()

    pool_dir = SHARED_DATA / "raw_pool"
    if not pool_dir.is_dir():
        print(f"skipped: {pool_dir} is absent", file=sys.stderr)
        return 0
    files, texts = load_pool(pool_dir)
    blob = "\n".join(texts).encode("utf-8")
    mb = len(blob) / 1e6
    print(f"raw_pool: {len(files)} files, {len(texts):,} documents, {mb:.1f} MB of text (UTF-8)")

    rows: list[dict] = []

    def record(name: str, threads: int | None, seconds: list[float], nbytes: float, ndocs: int) -> float:
        t = median(seconds)
        row = {
            "name": name,
            "threads": threads,
            "median_s": t,
            "runs_s": seconds,
            "mb_per_s": nbytes / 1e6 / t,
            "docs_per_s": ndocs / t,
        }
        rows.append(row)
        return row["mb_per_s"]

    plain_times = timed(lambda: blob.count(b"\n"), args.reps)
    plain = record("plain pass (bytes.count)", 1, plain_times, len(blob), len(texts))
    for family in ("fast-v1", "dsir-sha256"):
        for threads, source, label in (
            (1, texts, "texts in memory"),
            (2, texts, "texts in memory"),
            (2, Files(files), ".jsonl.zst files"),
        ):
            seconds = time_sum_counts(family, threads, source, args.reps)
            record(f"tokensieve {family} ({label})", threads, seconds, len(blob), len(texts))

    try:
        from data_selection.hashed_ngram_dsir import get_ngram_counts
    except ImportError:
        get_ngram_counts = None
    ref_speed = None
    if get_ngram_counts is not None:
        step = max(1, len(texts) // args.reference_docs)
        sample = texts[::step][: args.reference_docs]
        sample_bytes = sum(len(t.encode("utf-8")) for t in sample)

        def reference() -> None:
            for t in sample:
                get_ngram_counts(t, n=2, num_buckets=10000)

        ref_speed = record(
            "data-selection get_ngram_counts", 1, timed(reference, 3), sample_bytes, len(sample)
        )

    header = ("what", "threads", "median s", "MB/s", "docs/s", "vs ref/core", "% plain")
    print("\n{:<44} {:>7} {:>9} {:>9} {:>11} {:>11} {:>8}".format(*header))
    for row in rows:
        per_core = row["mb_per_s"] / (row["threads"] or 1)
        vs_ref = f"{per_core / ref_speed:.0f}x" if ref_speed else "-"
        print(
            f"{row['name']:<44} {row['threads']:>7} {row['median_s']:>9.3f} {row['mb_per_s']:>9.1f} "
            f"{row['docs_per_s']:>11,.0f} {vs_ref:>11} {100 * row['mb_per_s'] / plain:>7.1f}%"
        )
        row["vs_reference_per_core"] = per_core / ref_speed if ref_speed else None
        row["fraction_of_plain_pass"] = row["mb_per_s"] / plain
    path = write_result(
        "bench_features",
        {
            "corpus": {"files": [p.name for p in files], "documents": len(texts), "text_mb": mb},
            "reps": args.reps,
            "rows": rows,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
