"""DSIR end to end, tokensieve against the ``data-selection`` reference, on the same corpus.

The raw pool is all of ``../shared/data/raw_pool`` and the target all of ``../shared/data/target``,
decompressed once to plain JSONL (what the reference reads). Each engine runs in its own process
(so peak RSS is its own) on 2 cores: fit, weights, resample of 10% of the eligible documents.
The reference runs once (it takes minutes); tokensieve ``--reps`` times, medians reported. The KL
reduction of every selection is measured with tokensieve's ``kl_reduction`` in the same feature
space (dsir-sha256, 10,000 buckets). Then each tokensieve family runs once on each of two pools
of short documents (8 words of the raw pool each, so that documents, not bytes, dominate), of 1
and 8 million documents (and fast-v1 once more drawing with replacement): the growth of its peak
RSS per extra document is the memory that scales with the number of documents (with the 1.4 KB
documents of the raw pool, RSS noise of a few MB would swamp it).

Usage: python benches/bench_dsir.py [--reps 3] [--limit DOCS_PER_FILE] [--memory-only]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard
from common import SHARED_DATA, median, write_result

#: The sizes of the two pools of short documents that measure the memory per document.
SHORT_POOLS = (1_000_000, 8_000_000)
#: Words per short document.
SHORT_WORDS = 8


def write_short_pool(raw: list[str], documents: int, dst: Path) -> None:
    """``documents`` JSONL documents of SHORT_WORDS consecutive words of the raw pool (cycled)."""
    words = []
    for p in raw:
        for line in Path(p).read_text(encoding="utf-8").split("\n")[:-1]:
            words.extend(json.loads(line)["text"].split())
            if len(words) >= documents * SHORT_WORDS:
                break
    with open(dst, "w", encoding="utf-8") as out:
        for start in range(0, documents * SHORT_WORDS, SHORT_WORDS):
            piece = [words[(start + i) % len(words)] for i in range(SHORT_WORDS)]
            out.write(json.dumps({"text": " ".join(piece)}) + "\n")


def decompress(src: Path, dst: Path, limit: int | None) -> int:
    with open(src, "rb") as f, open(dst, "w", encoding="utf-8") as out:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for n, line in enumerate(lines):
            if limit is not None and n >= limit:
                break
            out.write(line)
    return dst.stat().st_size


def run_reference(raw: list[str], target: list[str], work: Path, fraction: float) -> dict:
    from data_selection import HashedNgramDSIR

    timings = {}
    start = time.perf_counter()
    ref = HashedNgramDSIR(raw, target, cache_dir=str(work / "ref_cache"), num_proc=2)
    ref.fit_importance_estimator(num_tokens_to_fit="all")
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    ref.compute_importance_weights()
    timings["weights"] = time.perf_counter() - start
    lengths = np.concatenate(
        [np.load(p) for p in sorted((work / "ref_cache" / "perexample_metadata").glob("*.npy"))]
    )
    k = max(1, round(fraction * int((lengths >= 100).sum())))
    np.random.seed(0)
    start = time.perf_counter()
    ref.resample(out_dir=str(work / "ref_out"), num_to_sample=k, cache_dir=str(work / "ref_resample"))
    timings["resample"] = time.perf_counter() - start
    selected = sorted(
        line.strip()
        for f in (work / "ref_out").glob("*.jsonl")
        for line in f.read_text(encoding="utf-8").split("\n")
        if line.strip()
    )
    (work / "ref_selected.json").write_text(json.dumps(selected))
    return {"phases_s": timings, "k": k}


def run_tokensieve(
    raw: list[str],
    target: list[str],
    work: Path,
    fraction: float,
    family: str,
    reps: int,
    min_example_length: int = 100,
    method: str = "gumbel",
) -> dict:
    from tokensieve import DSIR
    from tokensieve.io import Files

    runs: dict[str, list[float]] = {"fit": [], "weights": [], "resample": []}
    draws: list[float] = []  # the selection alone, within "resample" (the rest is writing it)
    for rep in range(reps):
        dsir = DSIR(
            Files(raw), Files(target), hash=family, num_threads=2, min_example_length=min_example_length
        )
        start = time.perf_counter()
        dsir.fit()
        runs["fit"].append(time.perf_counter() - start)
        start = time.perf_counter()
        dsir.weights()
        runs["weights"].append(time.perf_counter() - start)
        start = time.perf_counter()
        # Plain JSONL out, as the reference writes.
        out = work / f"ts_{family}_{rep}"
        selection = dsir.resample(fraction=fraction, seed=0, method=method)
        draws.append(time.perf_counter() - start)
        selection = dsir.write(selection, out, output_format="jsonl")
        runs["resample"].append(time.perf_counter() - start)
    kl = dsir.kl_reduction(selection)
    phases = {k: median(v) for k, v in runs.items()}
    return {"phases_s": phases, "runs_s": runs, "select_s": median(draws), "k": selection.k, "kl": kl}


def reference_kl(raw: list[str], target: list[str], work: Path) -> dict:
    """KL reduction of the reference's selection, measured like ours (dsir-sha256 space)."""
    from tokensieve import DSIR
    from tokensieve.dsir import Selection
    from tokensieve.io import Files

    chosen = set(json.loads((work / "ref_selected.json").read_text()))
    lines = [
        line.strip() for p in raw for line in Path(p).read_text(encoding="utf-8").split("\n") if line.strip()
    ]
    copies = np.array([line in chosen for line in lines], dtype=np.uint32)
    dsir = DSIR(Files(raw), Files(target), num_threads=2).fit()
    return dsir.kl_reduction(Selection(copies, dsir.tokens, 100, "reference", 0, int(copies.sum())))


def child(args: argparse.Namespace) -> int:
    work = Path(args.work)
    spec = json.loads((work / args.spec).read_text())
    if args.engine == "reference":
        result = run_reference(spec["raw"], spec["target"], work, spec["fraction"])
        result["kl"] = reference_kl(spec["raw"], spec["target"], work)
    else:
        result = run_tokensieve(
            spec["raw"],
            spec["target"],
            work,
            spec["fraction"],
            args.engine,
            args.reps,
            spec.get("min_example_length", 100),
            spec.get("method", "gumbel"),
        )
    # VmHWM is this process's own peak: getrusage's ru_maxrss starts at the parent's peak, which
    # survives the exec that started this process.
    status = Path("/proc/self/status").read_text()
    own_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the reference's pool
    result["peak_rss_mb"] = max(own_kb, worker_kb) / 1024
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true", help="only the memory per document")
    parser.add_argument("--limit", type=int, default=None, help="documents per file (default: all)")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--spec", default="spec.json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        return child(args)
    if not (SHARED_DATA / "raw_pool").is_dir():
        print(f"skipped: {SHARED_DATA} is absent", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_dsir-") as tmp:
        work = Path(tmp)
        raw, target, size = [], [], {"raw": 0, "target": 0}
        for kind, names in (("raw", "raw_pool"), ("target", "target")):
            for src in sorted((SHARED_DATA / names).glob("*.jsonl.zst")):
                dst = work / f"{kind}_{src.name.removesuffix('.zst')}"
                size[kind] += decompress(src, dst, args.limit)
                (raw if kind == "raw" else target).append(str(dst))
        docs = sum(Path(p).read_bytes().count(b"\n") for p in raw)
        (work / "spec.json").write_text(json.dumps({"raw": raw, "target": target, "fraction": 0.1}))
        print(
            f"raw {docs:,} documents, {size['raw'] / 1e6:.1f} MB JSONL; target {size['target'] / 1e6:.1f} MB"
        )
        for documents in SHORT_POOLS:
            short = work / f"short_{documents}.jsonl"
            write_short_pool(raw, documents, short)
            for method in ("gumbel", "replacement"):
                spec = {"raw": [str(short)], "target": target, "fraction": 0.1, "min_example_length": 1}
                spec["method"] = method
                (work / f"spec_short_{documents}_{method}.json").write_text(json.dumps(spec))

        def child_run(engine: str, spec: str, reps: int) -> dict:
            cmd = [sys.executable, __file__, "--engine", engine, "--work", tmp, "--reps", str(reps)]
            out = subprocess.run([*cmd, "--spec", spec], check=True, stdout=subprocess.PIPE, text=True).stdout
            return json.loads(out.strip().splitlines()[-1])

        results, scaling = {}, {}
        for engine in () if args.memory_only else ("reference", "dsir-sha256", "fast-v1"):
            results[engine] = child_run(engine, "spec.json", args.reps)
            print(f"  {engine}: done")
        small, large = SHORT_POOLS
        # draws with replacement (opt-in) measured with fast-v1 only: the family does not matter
        for engine, method in (("dsir-sha256", "gumbel"), ("fast-v1", "gumbel"), ("fast-v1", "replacement")):
            spec_of = {n: f"spec_short_{n}_{method}.json" for n in SHORT_POOLS}
            runs = {n: child_run(engine, spec_of[n], 1) for n in SHORT_POOLS}
            rss = {n: run["peak_rss_mb"] for n, run in runs.items()}
            per_doc = (rss[large] - rss[small]) * 2**20 / (large - small)
            name = engine if method == "gumbel" else f"{engine} {method}"
            scaling[name] = {f"peak_rss_mb_{n}_documents": rss[n] for n in SHORT_POOLS}
            # the selection of 10% alone, and with the writing of its shard (one run each)
            for n in SHORT_POOLS:
                scaling[name][f"select_s_{n}_documents"] = runs[n]["select_s"]
                scaling[name][f"resample_s_{n}_documents"] = runs[n]["phases_s"]["resample"]
            scaling[name]["bytes_per_extra_document"] = per_doc
            print(
                f"  {name}: peak RSS {rss[small]:.0f} MB with {small:,} short documents, "
                f"{rss[large]:.0f} MB with {large:,}: {per_doc:.1f} bytes per extra document"
            )
    memory = {"short_pools": SHORT_POOLS, "words_per_document": SHORT_WORDS, **scaling}
    if args.memory_only:
        print(f"\nwrote {write_result('bench_dsir_memory', {'threads': 2, 'memory_scaling': memory})}")
        return 0
    total_mb = (size["raw"] * 2 + size["target"]) / 1e6  # the raw pool is read to fit and to weigh
    ref_total = sum(results["reference"]["phases_s"].values())
    header = ("engine", "phase", "seconds", "MB/s", "x ref", "peak RSS MB", "KL red.")
    print("\n{:<14} {:<9} {:>9} {:>8} {:>8} {:>12} {:>8}".format(*header))
    for engine, result in results.items():
        phases = {**result["phases_s"], "total": sum(result["phases_s"].values())}
        result["end_to_end_s"] = phases["total"]
        result["speedup_vs_reference"] = ref_total / phases["total"]
        for phase, seconds in phases.items():
            ref_seconds = results["reference"]["phases_s"].get(phase, ref_total)
            mb = {"fit": (size["raw"] + size["target"]) / 1e6, "weights": size["raw"] / 1e6}.get(
                phase, total_mb
            )
            extra = (
                f"{result['peak_rss_mb']:>12.0f} {result['kl']['kl_reduction']:>8.4f}"
                if phase == "total"
                else ""
            )
            print(
                f"{engine:<14} {phase:<9} {seconds:>9.2f} {mb / seconds:>8.1f} "
                f"{ref_seconds / seconds:>7.1f}x {extra}"
            )
    path = write_result(
        "bench_dsir",
        {
            "corpus": {
                "raw_documents": docs,
                "raw_jsonl_bytes": size["raw"],
                "target_jsonl_bytes": size["target"],
            },
            "limit_per_file": args.limit,
            "reps": args.reps,
            "threads": 2,
            "results": results,
            "memory_scaling": memory,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
