"""fastText classifiers: tokensieve against the real ``fasttext`` package, same models, same documents.

A DCLM-style quality classifier (softmax, ``wordNgrams=2``, ``bucket=2_000_000``, ``lr=0.1``,
``epoch=5``, ``thread=2``), ``__label__hq`` = ``../shared/data/target`` against ``__label__cc`` =
``../shared/data/raw_pool``, each document flattened as DCLM does (``" ".join(text.strip()
.splitlines())``). Every second document trains; all of them are the prediction set. For dim 100
and dim 256 the real package trains the model once (timed) and both engines then predict
``k=1`` on the same documents:

* fastText: one ``predict(str)`` call per document; ``predict(list)`` in batches of 1,000; two
  forked processes each predicting half with list calls (threads do not help: it holds the GIL);
* tokensieve: ``predict_batch`` on 1 and 2 threads (GIL released).

Labels and float32 probabilities are compared bit for bit on every document. Also timed:
loading each model file (warm page cache) and tokensieve training the same model (same
hyper-parameters, 2 threads) with both models' held-out accuracy (the odd documents).
Medians of ``--reps`` runs; ratios are against fastText measured in the same run, per core:
1-process fastText against 1-thread tokensieve.

Usage: python benches/bench_fasttext.py [--reps 3] [--dims 100 256] [--limit DOCS_PER_FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard
from common import SHARED_DATA, forked_wall_seconds, median, write_result


def read_texts(path: Path, limit: int | None) -> list[str]:
    texts = []
    with open(path, "rb") as f:
        for n, line in enumerate(
            io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        ):
            if limit is not None and n >= limit:
                break
            texts.append(json.loads(line)["text"])
    return texts


def dclm_flat(text: str) -> str:
    return " ".join(text.strip().splitlines())


def load_corpus(limit: int | None) -> tuple[list[str], list[str]]:
    """(texts, labels) of every document, flattened; fastText's separators other than the space
    are left as they are (its tokeniser splits on them)."""
    texts, labels = [], []
    for kind, label in (("raw_pool", "cc"), ("target", "hq")):
        for src in sorted((SHARED_DATA / kind).glob("*.jsonl.zst")):
            for text in read_texts(src, limit):
                texts.append(dclm_flat(text))
                labels.append(label)
    return texts, labels


def timed(fn, reps: int) -> tuple[float, float, list[float]]:
    """Median wall and CPU seconds of `reps` calls (after one warm-up call), and the walls."""
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return median(walls), median(cpus), walls


def fasttext_two_processes(model, texts: list[str]) -> float:
    """Wall seconds of two forked processes predicting half the texts each (list calls)."""
    halves = [texts[: len(texts) // 2], texts[len(texts) // 2 :]]

    def predict_half(i: int):
        def run() -> None:
            for start in range(0, len(halves[i]), 1000):
                model.predict(halves[i][start : start + 1000])

        return run

    return forked_wall_seconds(predict_half, len(halves))


def bench_dim(dim: int, train_path: Path, texts: list[str], held_out: tuple, reps: int, work: Path) -> dict:
    import fasttext

    from tokensieve import fasttext as tsft

    hyper = {"dim": dim, "wordNgrams": 2, "bucket": 2_000_000, "lr": 0.1, "epoch": 5, "thread": 2, "seed": 0}
    out: dict = {"hyper_parameters": hyper}
    start = time.perf_counter()
    reference = fasttext.train_supervised(str(train_path), verbose=0, **hyper)
    out["train_s"] = {"fasttext": time.perf_counter() - start}
    model_path = work / f"dim{dim}.bin"
    reference.save_model(str(model_path))
    out["model_bytes"] = model_path.stat().st_size
    del reference
    start = time.perf_counter()
    trained = tsft.train_supervised(train_path, **hyper)
    out["train_s"]["tokensieve"] = time.perf_counter() - start
    out["load_s"] = {
        "fasttext": timed(lambda: fasttext.load_model(str(model_path)), reps)[0],
        "tokensieve": timed(lambda: tsft.load_model(model_path), reps)[0],
    }
    ft = fasttext.load_model(str(model_path))
    ts = tsft.load_model(model_path)
    held_texts, held_labels = held_out
    out["held_out_accuracy"] = {
        "fasttext": float(
            np.mean([p[0] == g for p, g in zip(ft.predict(held_texts)[0], held_labels, strict=True)])
        ),
        "tokensieve_trained": float(
            np.mean([p[0] == g for p, g in zip(trained.predict(held_texts)[0], held_labels, strict=True)])
        ),
    }
    del trained

    # Bit-exactness on every document (k=1).
    ref_labels, ref_probs = ft.predict(texts)
    batch = ts.predict_batch(texts, k=1)
    our_labels = [batch.labels[i] for i in batch.label_ids[:, 0]]
    ref_p = np.array([p[0] for p in ref_probs], dtype=np.float32)
    exact = (np.array([lab[0] for lab in ref_labels]) == np.array(our_labels)) & (
        ref_p.view(np.uint32) == batch.probs[:, 0].view(np.uint32)
    )
    out["bit_exact_fraction"] = float(exact.mean())

    def per_doc() -> None:
        for t in texts:
            ft.predict(t)

    def lists() -> None:
        for i in range(0, len(texts), 1000):
            ft.predict(texts[i : i + 1000])

    modes = {}
    for name, fn in (("fasttext per-doc", per_doc), ("fasttext list", lists)):
        wall, cpu, walls = timed(fn, reps)
        modes[name] = {"wall_s": wall, "cpu_s": cpu, "walls_s": walls, "processes": 1}
    walls = [fasttext_two_processes(ft, texts) for _ in range(reps)]
    modes["fasttext 2 processes"] = {"wall_s": median(walls), "walls_s": walls, "processes": 2}
    for threads in (1, 2):
        ts.num_threads = threads
        wall, cpu, walls = timed(lambda: ts.predict_batch(texts, k=1), reps)
        modes[f"tokensieve {threads} thread{'s' if threads > 1 else ''}"] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "walls_s": walls,
            "threads": threads,
        }
    out["predict"] = modes
    return out


def _fasttext_version() -> str | None:
    from importlib import metadata

    for dist in ("fasttext-numpy2-wheel", "fasttext", "fasttext-wheel"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            pass
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 256])
    parser.add_argument("--limit", type=int, default=None, help="documents per file (default: all)")
    parser.add_argument(
        "--keep-models",
        type=Path,
        help="a directory to copy the models trained by fastText to (dim<D>.bin), e.g. for "
        "rust/core/examples/fasttext_rows.rs",
    )
    args = parser.parse_args()
    if not (SHARED_DATA / "raw_pool").is_dir():
        print(f"skipped: {SHARED_DATA} is absent", file=sys.stderr)
        return 0
    texts, labels = load_corpus(args.limit)
    size_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"{len(texts):,} documents, {size_mb:.1f} MB flattened ({labels.count('hq'):,} hq)")
    held_out = (texts[1::2], ["__label__" + label for label in labels[1::2]])
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_fasttext-") as tmp:
        work = Path(tmp)
        train_path = work / "train.txt"
        with open(train_path, "w", encoding="utf-8") as f:
            for text, label in zip(texts[0::2], labels[0::2], strict=True):
                f.write(f"__label__{label} {text}\n")
        for dim in args.dims:
            results[f"dim{dim}"] = bench_dim(dim, train_path, texts, held_out, args.reps, work)
            if args.keep_models:
                args.keep_models.mkdir(parents=True, exist_ok=True)
                shutil.copy(work / f"dim{dim}.bin", args.keep_models)
            print(f"  dim {dim}: done")
    print(f"\n{'model':<8} {'mode':<22} {'docs/s':>9} {'MB/s':>7} {'docs/CPU-s':>11} {'x fastText':>11}")
    for model, result in results.items():
        modes = result["predict"]
        base = len(texts) / modes["fasttext list"]["wall_s"]
        base_cpu = len(texts) / modes["fasttext list"]["cpu_s"]
        for mode, m in modes.items():
            m["docs_per_s"] = len(texts) / m["wall_s"]
            m["docs_per_cpu_s"] = len(texts) / m["cpu_s"] if "cpu_s" in m else None
            m["ratio_vs_fasttext_list"] = m["docs_per_s"] / base
            per_cpu = f"{m['docs_per_cpu_s']:>11,.0f}" if m["docs_per_cpu_s"] else f"{'':>11}"
            print(
                f"{model:<8} {mode:<22} {m['docs_per_s']:>9,.0f} {size_mb / m['wall_s']:>7.1f} "
                f"{per_cpu} {m['ratio_vs_fasttext_list']:>10.2f}x"
            )
        one = modes["tokensieve 1 thread"]
        result["per_core_ratio"] = one["docs_per_s"] / base
        result["per_cpu_second_ratio"] = one["docs_per_cpu_s"] / base_cpu
        result["two_thread_ratio_vs_fasttext_1_process"] = modes["tokensieve 2 threads"]["docs_per_s"] / base
        result["two_thread_ratio_vs_fasttext_2_processes"] = (
            modes["fasttext 2 processes"]["wall_s"] / modes["tokensieve 2 threads"]["wall_s"]
        )
        print(
            f"{model:<8} bit-exact {100 * result['bit_exact_fraction']:.2f}% of documents; "
            f"load fastText {result['load_s']['fasttext']:.2f} s, "
            f"tokensieve {result['load_s']['tokensieve']:.2f} s; "
            f"train fastText {result['train_s']['fasttext']:.1f} s, "
            f"tokensieve {result['train_s']['tokensieve']:.1f} s; "
            f"held-out accuracy fastText {100 * result['held_out_accuracy']['fasttext']:.2f}%, "
            f"tokensieve-trained {100 * result['held_out_accuracy']['tokensieve_trained']:.2f}%"
        )
    path = write_result(
        "bench_fasttext",
        {
            "corpus": {"documents": len(texts), "flattened_mb": size_mb, "hq_documents": labels.count("hq")},
            "fasttext_package": _fasttext_version(),
            "limit_per_file": args.limit,
            "reps": args.reps,
            "results": results,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
