"""The ``tokensieve`` command line.

``tokensieve demo`` runs DSIR on the bundled sample; ``tokensieve dsir`` selects from corpus
files towards a target; ``tokensieve featurize`` counts hashed n-grams over corpus files and can
save the totals as ``.npy``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from tokensieve import __version__, resolve_num_threads
from tokensieve.dsir import DSIR
from tokensieve.exceptions import TokensieveError
from tokensieve.features import HashedNgrams
from tokensieve.io import Files, ReadReport, corpus_files

__all__ = ["main"]


def demo_files() -> dict[str, Path]:
    """Paths of the bundled demo sample: ``raw`` and ``target`` (see data/ATTRIBUTION.md)."""
    data = resources.files("tokensieve") / "data"
    return {name: Path(str(data / f"demo_{name}.jsonl.zst")) for name in ("raw", "target")}


def _featurize(featurizer: HashedNgrams, path: Path) -> tuple[np.ndarray, ReadReport, float]:
    start = time.perf_counter()
    counts, report = featurizer.sum_counts(path, return_report=True)
    return counts, report, time.perf_counter() - start


def _describe(name: str, counts: np.ndarray, report: ReadReport, seconds: float) -> str:
    nonzero = int(np.count_nonzero(counts))
    return (
        f"  {name:<7} {report.documents:>6,} docs  {report.text_bytes / 1e6:5.2f} MB of text  "
        f"{int(counts.sum()):>10,} n-grams  {nonzero:>6,}/{counts.size:,} buckets used  "
        f"{seconds * 1e3:7.1f} ms  {report.text_bytes / max(seconds, 1e-9) / 1e6:6.1f} MB/s"
    )


def run_dsir(args: argparse.Namespace) -> int:
    """Fits, weighs, resamples and writes, printing each phase and a closing summary."""
    num_threads, min_example_length, seed, out = (
        args.num_threads,
        args.min_example_length,
        args.seed,
        args.out,
    )
    dsir = DSIR(
        Files(args.raw),
        Files(args.target),
        ngrams=args.ngrams,
        buckets=args.buckets,
        hash=args.hash,
        min_example_length=min_example_length,
        chunk_words=args.chunk_words,
        text_field=args.text_field,
        on_error=args.on_error,
        num_threads=num_threads,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )
    print(f"DSIR in {dsir.featurizer!r}, {resolve_num_threads(num_threads)} threads")
    timings = {}
    start = time.perf_counter()
    dsir.fit()
    timings["fit"] = time.perf_counter() - start
    print(
        f"  fit       {timings['fit']:7.2f} s  {int(dsir.raw_counts.sum()):,} raw and "
        f"{int(dsir.target_counts.sum()):,} target n-grams"
    )
    start = time.perf_counter()
    weights = dsir.weights()
    timings["weights"] = time.perf_counter() - start
    report = dsir.report
    mb = report.text_bytes / 1e6
    print(
        f"  weights   {timings['weights']:7.2f} s  {report.documents:,} documents, {mb:.1f} MB of text "
        f"({mb / max(timings['weights'], 1e-9):.1f} MB/s); {report.summary()}"
    )
    start = time.perf_counter()
    selection = dsir.resample(args.k, fraction=args.fraction, seed=seed, method=args.method, kl=True)
    timings["resample"] = time.perf_counter() - start
    start = time.perf_counter()
    selection = dsir.write(selection, out, output_format=args.format)
    timings["write"] = time.perf_counter() - start
    print(
        f"  resample  {timings['resample']:7.2f} s  {selection.method}, seed {seed}, k = {selection.k:,} "
        f"of {int(selection.eligible.sum()):,} eligible (>= {min_example_length} tokens); KL measured"
    )
    print(f"  write     {timings['write']:7.2f} s  {len(selection.shards)} shard(s) + manifest in {out}")
    kl = selection.kl
    chosen = selection.copies > 0
    unit = "documents" if args.chunk_words is None else f"chunks of {args.chunk_words} words"
    not_selected = int((~chosen & selection.eligible).sum())
    print(
        f"\n{unit}: selected {int(chosen.sum()):,} / not selected {not_selected:,} / "
        f"too short {int((~selection.eligible).sum()):,}; records skipped {report.skipped_total:,} "
        f"(of {report.records:,} records)"
    )
    print(
        f"KL(target || random sample) {kl['kl_random']:.4f}  "
        f"KL(target || selection) {kl['kl_selected']:.4f}  KL reduction {kl['kl_reduction']:+.4f}"
    )
    print(
        f"mean log-weight: selected {weights[chosen].mean():.1f}, pool {weights.mean():.1f}; "
        f"total {sum(timings.values()):.2f} s ({mb / max(sum(timings.values()), 1e-9):.1f} MB/s end to end)"
    )
    return 0


def run_demo(num_threads: int | None, out: str | None) -> int:
    """``tokensieve dsir`` on the bundled sample, selecting 10%."""
    files = demo_files()
    print(f"tokensieve {__version__} demo: DSIR selects 10% of the bundled raw sample towards the target")
    for name, path in files.items():
        print(f"  {name}: {path.name} ({path.stat().st_size / 1e6:.2f} MB compressed)")
    with tempfile.TemporaryDirectory(prefix="tokensieve-demo-") as tmp:
        argv = ["dsir", "--raw", str(files["raw"]), "--target", str(files["target"]), "--fraction", "0.1"]
        argv += ["--out", out or tmp] + ([] if num_threads is None else ["--num-threads", str(num_threads)])
        return run_dsir(build_parser().parse_args(argv))


def run_featurize(args: argparse.Namespace) -> int:
    featurizer = HashedNgrams(
        ngrams=args.ngrams,
        buckets=args.buckets,
        tokenizer=args.tokenizer,
        hash=args.hash,
        num_threads=args.num_threads,
    )
    files = corpus_files(Files(args.inputs))
    start = time.perf_counter()
    counts, report = featurizer.sum_counts(
        Files(files), text_field=args.text_field, on_error=args.on_error, return_report=True
    )
    seconds = time.perf_counter() - start
    size = sum(s.bytes for s in report.sources)
    print(f"{featurizer!r}")
    print(
        f"{len(files)} files, {size / 1e6:.1f} MB on disk, {report.text_bytes / 1e6:.1f} MB of text, "
        f"{seconds:.2f} s ({report.text_bytes / max(seconds, 1e-9) / 1e6:.1f} MB/s)"
    )
    print(report.summary())
    print(f"{int(counts.sum()):,} n-grams in {int(np.count_nonzero(counts)):,} of {counts.size:,} buckets")
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, counts)
        os.replace(tmp, out)
        print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokensieve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tokensieve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run DSIR on the bundled sample and print a summary")
    demo.add_argument("--num-threads", type=int, default=None)
    demo.add_argument("--out", help="keep the selection here (default: a temporary directory)")

    dsir = sub.add_parser("dsir", help="select raw documents that look like the target (DSIR)")
    dsir.add_argument("--raw", nargs="+", required=True, help="raw pool: files, directories or globs")
    dsir.add_argument("--target", nargs="+", required=True, help="target: files, directories or globs")
    size = dsir.add_mutually_exclusive_group(required=True)
    size.add_argument("--k", type=int, help="number of documents to select")
    size.add_argument("--fraction", type=float, help="fraction of the eligible documents to select")
    dsir.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    dsir.add_argument("--seed", type=int, default=0)
    dsir.add_argument("--method", choices=["gumbel", "topk", "replacement"], default="gumbel")
    dsir.add_argument("--hash", choices=["dsir-sha256", "fast-v1"], default="dsir-sha256")
    dsir.add_argument("--ngrams", type=int, default=2)
    dsir.add_argument("--buckets", type=int, default=10000)
    dsir.add_argument("--min-example-length", type=int, default=100)
    dsir.add_argument(
        "--chunk-words", type=int, default=None, help="cut documents into pieces of N words (the paper: 128)"
    )
    dsir.add_argument("--text-field", default="text")
    dsir.add_argument("--on-error", choices=["skip", "raise"], default="skip")
    dsir.add_argument("--format", choices=["jsonl", "jsonl.zst", "parquet"], default="jsonl.zst")
    dsir.add_argument("--num-threads", type=int, default=None)
    dsir.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )

    feat = sub.add_parser("featurize", help="count hashed n-grams over corpus files")
    feat.add_argument("inputs", nargs="+", help="files, directories or glob patterns")
    feat.add_argument("--ngrams", type=int, default=2)
    feat.add_argument("--buckets", type=int, default=10000)
    feat.add_argument("--tokenizer", choices=["wordpunct", "whitespace"], default="wordpunct")
    feat.add_argument("--hash", choices=["dsir-sha256", "fast-v1"], default="dsir-sha256")
    feat.add_argument("--text-field", default="text")
    feat.add_argument("--on-error", choices=["skip", "raise"], default="skip")
    feat.add_argument("--num-threads", type=int, default=None)
    feat.add_argument("--out", help="write the total counts here as .npy (atomically)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokensieve`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return run_demo(args.num_threads, args.out)
        if args.command == "dsir":
            return run_dsir(args)
        return run_featurize(args)
    except TokensieveError as e:
        print(f"tokensieve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
