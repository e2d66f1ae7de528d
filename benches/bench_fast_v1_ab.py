"""`fast-v1` counting of two builds of the Rust core side by side: this checkout against a base
revision (by default the one before the AVX2 batch path, ``3e21c94``).

Both builds run ``rust/core/examples/featurize_pool.rs`` (the base gets this checkout's copy
of the example; it uses only APIs both have) over all of ``../shared/data/raw_pool``:
``CountAccumulator`` with ``fast-v1``, ngrams=2, 10,000 buckets, over the texts held in memory
(``--source memory``: wordpunct on 1 and 2 threads, whitespace on 1) or read from the
``.jsonl.zst`` files in every pass (``--source files``: decompression and JSON parsing
included, wordpunct on 1 and 2 threads). ``--corpus enormous-line`` reads instead one generated
``.jsonl.zst`` file whose middle record is a single 172 MB line (30 million random words, seed
0) between two small ones: the readers' worst case. The two binaries
alternate, round after round, so that the machine's drift falls on both alike; each run of a
binary times ``--reps`` passes. The counts' checksums must agree. Prints the medians and their
ratio per (tokenizer, threads) and writes JSON to ``benches/results/``.

Usage: python benches/bench_fast_v1_ab.py [--base REV] [--source memory|files]
    [--corpus raw_pool|enormous-line] [--rounds 5] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import zstandard
from common import SHARED_DATA, median, write_result

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "rust/core/examples/featurize_pool.rs"


def build(checkout: Path, target: Path) -> Path:
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "tokensieve-core", "--example", "featurize_pool"],
        cwd=checkout,
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
    )
    return target / "release" / "examples" / "featurize_pool"


CONFIGS = {  # (tokenizer, threads) per source
    "memory": (("wordpunct", 1), ("wordpunct", 2), ("whitespace", 1)),
    "files": (("wordpunct", 1), ("wordpunct", 2)),
}


def write_enormous_line(directory: Path) -> None:
    """One ``.jsonl.zst`` file: a small record, one of 30 million random words, a small one."""
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    big = " ".join(rng.choice(words) for _ in range(30_000_000))
    records = [{"text": "small one"}, {"text": big}, {"text": "small two"}]
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    (directory / "enormous.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(body))


def run(
    binary: Path, corpus: Path, threads: int, reps: int, tokenizer: str, source: str
) -> tuple[list[float], int, int]:
    out = subprocess.run(
        [str(binary), str(corpus), str(threads), str(reps), tokenizer, source],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields = dict(part.split("=", 1) for part in out.split())
    return [float(s) for s in fields["seconds"].split(",")], int(fields["bytes"]), int(fields["checksum"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="3e21c94")
    parser.add_argument("--source", choices=sorted(CONFIGS), default="memory")
    parser.add_argument("--corpus", choices=["raw_pool", "enormous-line"], default="raw_pool")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    base_rev = subprocess.run(
        ["git", "rev-parse", args.base], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = SHARED_DATA / "raw_pool"
        if args.corpus == "enormous-line":
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            write_enormous_line(corpus)
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(base), base_rev], cwd=ROOT, check=True
        )
        try:
            (base / EXAMPLE).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / EXAMPLE, base / EXAMPLE)
            # Target directories under target/ (git-ignored) are kept: later runs build incrementally.
            binaries = {
                "this": build(ROOT, ROOT / "target"),
                "base": build(base, ROOT / "target" / "ab-base"),
            }
            rows = []
            for tokenizer, threads in CONFIGS[args.source]:
                seconds: dict[str, list[float]] = {name: [] for name in binaries}
                checksums: dict[str, set[int]] = {name: set() for name in binaries}
                for _ in range(args.rounds):
                    for name, binary in binaries.items():
                        runs, nbytes, checksum = run(
                            binary, corpus, threads, args.reps, tokenizer, args.source
                        )
                        seconds[name] += runs
                        checksums[name].add(checksum)
                if len(checksums["this"] | checksums["base"]) != 1:
                    raise SystemExit(f"the builds count differently: {checksums}")
                this, old = median(seconds["this"]), median(seconds["base"])
                row = {
                    "tokenizer": tokenizer,
                    "threads": threads,
                    "this_median_s": this,
                    "base_median_s": old,
                    "this_mb_per_s": nbytes / 1e6 / this,
                    "base_mb_per_s": nbytes / 1e6 / old,
                    "speedup": old / this,
                    "this_runs_s": seconds["this"],
                    "base_runs_s": seconds["base"],
                }
                rows.append(row)
                print(
                    f"{tokenizer:10} {threads} thread(s): this {row['this_mb_per_s']:6.0f} MB/s, "
                    f"base {row['base_mb_per_s']:6.0f} MB/s, {row['speedup']:.2f}x"
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)
    path = write_result(
        "bench_fast_v1_ab",
        {
            "base": base_rev,
            "source": args.source,
            "corpus": args.corpus,
            "rounds": args.rounds,
            "reps": args.reps,
            "text_bytes": nbytes,
            "rows": rows,
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
