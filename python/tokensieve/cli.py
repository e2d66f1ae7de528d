"""The ``tokensieve`` command line.

``tokensieve demo`` featurises the bundled sample; ``tokensieve featurize`` counts hashed
n-grams over corpus files and can save the totals as ``.npy``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from tokensieve import __version__, resolve_num_threads
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


def run_demo(num_threads: int | None) -> int:
    files = demo_files()
    threads = resolve_num_threads(num_threads)
    print(f"tokensieve {__version__} demo: hashed n-gram features of the bundled sample ({threads} threads)")
    for name, path in files.items():
        print(f"  {name}: {path.name} ({path.stat().st_size / 1e6:.2f} MB compressed)")
    for hash_family in ("dsir-sha256", "fast-v1"):
        featurizer = HashedNgrams(ngrams=2, buckets=10000, hash=hash_family, num_threads=num_threads)
        print(f"\n{featurizer!r}")
        totals = {}
        for name, path in files.items():
            counts, report, seconds = _featurize(featurizer, path)
            totals[name] = counts
            print(_describe(name, counts, report, seconds))
            if report.skipped_total:
                print(f"          {report.summary()}")
        raw, target = (totals[k].astype(np.float64) for k in ("raw", "target"))
        cosine = float(raw @ target / (np.linalg.norm(raw) * np.linalg.norm(target)))
        print(f"  cosine similarity of the raw and target n-gram distributions: {cosine:.3f}")
    print("\nNext: `tokensieve featurize FILES... --out counts.npy` on your own corpus.")
    return 0


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

    demo = sub.add_parser("demo", help="featurise the bundled sample and print a summary")
    demo.add_argument("--num-threads", type=int, default=None)

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
            return run_demo(args.num_threads)
        return run_featurize(args)
    except TokensieveError as e:
        print(f"tokensieve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
