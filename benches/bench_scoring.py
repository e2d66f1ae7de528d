"""Scoring throughput: TokenScorer end to end against the bare model forward on the same batches.

Model: a randomly initialised LLaMA-style causal LM of a preset size (weights do not change the
cost); tokenizer: byte-level BPE trained by ``tokensieve.training`` on the first documents (its
vocabulary may be smaller than the model's, like a padded vocabulary: softmax runs over all the
model's rows). Corpus: the first ``--docs`` documents of ``../shared/data/raw_pool``, taken from
its files in turn. Timed, each the median of ``--repeats`` runs after one warm-up run:

* ``pipeline``: ``TokenScorer.score(texts)`` from the texts in memory: tokenising (on its
  background thread), the layout of the forward passes, the trunk, the chunked LM head with the
  per-token statistics, the per-document reductions and the Arrow table;
* ``bare_forward``: ``model(**inputs).logits`` over the inputs of the same forward passes
  (``TokenScorer.forward_inputs``, built before the timer starts), host-to-device copies
  included: what a plain forward costs, logits of every position included;
* ``trunk_only``: ``model.base_model(**inputs)`` on the same passes, no LM head: a floor no
  scorer goes below.

``overhead = pipeline / bare_forward - 1`` (the median of the per-repeat ratios; the three runs
of a repeat are interleaved). Throughput counts scored tokens (the targets).

``--memory`` instead checks that memory stays bounded: ``score_to_parquet`` over JSONL files of
N and 4N documents (raw-pool texts cut to 200 characters, repeated as needed) with a micro model,
each run in a fresh process; the peak RSS of the two should be the same.

Usage: python benches/bench_scoring.py [--device cpu|cuda] [--preset NAME] [--docs N] [--repeats 3]
       python benches/bench_scoring.py --memory [--docs N]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import time
from typing import Any

import zstandard
from common import SHARED_DATA, write_result

PRESETS: dict[str, dict[str, Any]] = {
    # about 0.9M parameters, head-heavy like the small open models: minutes on two shared CPU cores
    "cpu-small": {"hidden": 128, "layers": 2, "heads": 4, "vocab": 4096, "max_length": 256, "batch_size": 8},
    # GPT-2-small-like widths, about 120M parameters
    "gpu-120m": {
        "hidden": 768,
        "layers": 12,
        "heads": 12,
        "vocab": 32000,
        "max_length": 1024,
        "batch_size": 16,
    },
    # TinyLlama-like widths with 16 layers, about 0.9B parameters
    "gpu-1b": {
        "hidden": 2048,
        "layers": 16,
        "heads": 16,
        "intermediate": 5632,
        "vocab": 32000,
        "max_length": 2048,
        "batch_size": 8,
    },
}


def read_corpus(docs: int) -> list[str]:
    """The first ``docs`` documents of the raw pool, one file after the other in turn."""
    readers = []
    for path in sorted((SHARED_DATA / "raw_pool").glob("*.jsonl.zst")):
        raw = open(path, "rb")  # noqa: SIM115 (lives as long as the benchmark)
        readers.append(io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8"))
    texts: list[str] = []
    while len(texts) < docs and readers:
        for reader in list(readers):
            line = reader.readline()
            if not line:
                readers.remove(reader)
            elif text := json.loads(line)["text"]:
                texts.append(text)
    return texts[:docs]


def score_file(model_dir: str, corpus: str, out: str, results: Any) -> None:
    """Scores ``corpus`` into ``out`` in this (fresh) process and reports its peak RSS."""
    import torch

    from tokensieve.scoring import TokenScorer

    torch.set_num_threads(1)
    start = time.perf_counter()
    report = TokenScorer.from_pretrained(model_dir, device="cpu").score_to_parquet(
        corpus, out, max_length=128
    )
    seconds = time.perf_counter() - start
    results.put((report.scored, report.tokens, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def memory_check(docs: int) -> int:
    """Peak RSS of scoring N and 4N documents from files, each in a fresh process."""
    import multiprocessing
    import tempfile
    from pathlib import Path

    from tokensieve.training import train_causal_lm, train_tokenizer

    texts = [t[:200] for t in read_corpus(2000)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        root = Path(tmp)
        tokenizer = train_tokenizer(texts, vocab_size=512)
        train_causal_lm(
            texts, tokenizer, hidden_size=32, num_layers=1, num_heads=2, steps=5, out_dir=root / "lm"
        )
        context = multiprocessing.get_context("spawn")
        for n in (docs, 4 * docs):
            corpus = root / f"corpus-{n}.jsonl"
            with open(corpus, "w", encoding="utf-8") as f:
                for i in range(n):
                    f.write(json.dumps({"text": texts[i % len(texts)], "id": str(i)}) + "\n")
            results = context.Queue()
            child = context.Process(
                target=score_file, args=(str(root / "lm"), str(corpus), str(root / "s.parquet"), results)
            )
            child.start()
            scored, tokens, seconds, rss_kib = results.get()
            child.join()
            rows.append(
                {"documents": scored, "tokens": tokens, "seconds": seconds, "peak_rss_mib": rss_kib / 1024}
            )
            print(
                f"  {scored:>8,} documents  {tokens:>11,} tokens  {seconds:7.1f} s  "
                f"peak RSS {rss_kib / 1024:7.1f} MiB"
            )
    growth = (
        (rows[1]["peak_rss_mib"] - rows[0]["peak_rss_mib"])
        * 2**20
        / (rows[1]["documents"] - rows[0]["documents"])
    )
    print(f"peak RSS growth: {growth:.1f} bytes per extra document")
    path = write_result(
        "bench_scoring_memory",
        {"config": {"docs": docs, "max_length": 128}, "runs": rows, "rss_bytes_per_extra_document": growth},
    )
    print(f"written: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: cpu-small on cpu, gpu-1b on cuda")
    parser.add_argument("--docs", type=int, help="default: 64 on cpu, 4000 on cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--memory", action="store_true", help="check the memory bound instead (see above)")
    args = parser.parse_args()
    if args.memory:
        return memory_check(args.docs or 4000)

    import torch
    import transformers

    from tokensieve.scoring import TokenScorer, windows
    from tokensieve.training import tiny_llama_config, train_tokenizer

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: run with --device cpu; nothing written")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    preset_name = args.preset or ("cpu-small" if args.device == "cpu" else "gpu-1b")
    preset = PRESETS[preset_name]
    docs = args.docs or (64 if args.device == "cpu" else 4000)
    texts = read_corpus(docs)
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts[:2000], vocab_size=4096)
    print(
        f"{len(texts):,} documents, {sum(map(len, texts)) / 1e6:.1f} M characters; "
        f"tokenizer trained in {time.perf_counter() - start:.1f} s"
    )

    config = tiny_llama_config(
        preset["vocab"],
        hidden_size=preset["hidden"],
        num_layers=preset["layers"],
        num_heads=preset["heads"],
        intermediate_size=preset.get("intermediate"),
        max_position_embeddings=preset["max_length"],
    )
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).to(args.device).eval()
    scorer = TokenScorer(model, tokenizer)
    options = {"max_length": preset["max_length"], "batch_size": preset["batch_size"]}
    inputs = list(scorer.forward_inputs(texts, **options))
    slots = sum(x["input_ids"].numel() for x in inputs)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"] if len(ids) > 1]
    window_tokens = sum(
        e - s for n in lengths for s, e, _ in windows(n, preset["max_length"], preset["max_length"] - 1)
    )
    table = scorer.score(texts, **options)
    tokens = int(table.column("tokens").to_numpy().sum())
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{preset_name}: {parameters / 1e6:.1f} M parameters, {args.device} {str(dtype)[6:]}, "
        f"packing {scorer.packing}, "
        f"{len(inputs)} forward passes of <= {preset['batch_size']} x {preset['max_length']} slots, "
        f"{tokens:,} scored tokens"
    )

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    def to_device(x: dict[str, Any]) -> dict[str, Any]:
        return {k: None if v is None else v.to(args.device, non_blocking=True) for k, v in x.items()}

    @torch.inference_mode()
    def bare_forward() -> None:
        for x in inputs:
            model(**to_device(x), use_cache=False).logits  # noqa: B018 (the work is the forward)
        sync()

    @torch.inference_mode()
    def trunk_only() -> None:
        for x in inputs:
            model.base_model(**to_device(x), use_cache=False)
        sync()

    def pipeline() -> None:
        scorer.score(texts, **options)
        sync()

    runs = {"bare_forward": bare_forward, "trunk_only": trunk_only, "pipeline": pipeline}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():  # warm-up
        fn()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # interleaved, in a rotating order, so that a shared machine's load falls on all three alike
    for repeat in range(args.repeats):
        names = list(runs)[repeat % 3 :] + list(runs)[: repeat % 3]
        for name in names:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    results: dict[str, Any] = {}
    for name, seconds_list in times.items():
        seconds = statistics.median(seconds_list)
        results[name] = {"seconds": seconds, "all_seconds": seconds_list, "tokens_per_s": tokens / seconds}
        print(
            f"  {name:<13} {seconds:8.3f} s  {tokens / seconds:12,.0f} tokens/s  "
            f"(runs: {', '.join(f'{t:.3f}' for t in seconds_list)})"
        )
    # the ratio within each repeat is steadier than the ratio of medians under a varying load
    ratios = [p / b for p, b in zip(times["pipeline"], times["bare_forward"], strict=True)]
    overhead = statistics.median(ratios) - 1
    of_medians = results["pipeline"]["seconds"] / results["bare_forward"]["seconds"] - 1
    print(
        f"pipeline overhead over the bare forward: {100 * overhead:+.1f}% (median of the per-repeat ratios; "
        f"ratio of the medians {100 * of_medians:+.1f}%)"
    )
    path = write_result(
        "bench_scoring",
        {
            "config": {
                **vars(args),
                "preset": preset_name,
                **preset,
                "docs": len(texts),
                "dtype": str(dtype)[6:],
                "packing": scorer.packing,
                "torch_threads": torch.get_num_threads(),
            },
            "model": {"parameters": parameters, "class": type(model).__name__},
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "workload": {
                "documents": table.num_rows,
                "scored_tokens": tokens,
                "forward_passes": len(inputs),
                "token_slots": slots,
                "window_tokens": window_tokens,
            },
            "results": results,
            "overhead": overhead,
            "overhead_per_repeat": [r - 1 for r in ratios],
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30
            if args.device == "cuda"
            else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
