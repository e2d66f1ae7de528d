"""Per-token statistics from materialised logits on a GPU: tokensieve's Triton kernel against its
peers, as a share of the read-bandwidth ceiling measured in the same run.

Rows per (V, data): time (median of triton.testing.do_bench, L2 flushed), % of one read of the
logits at the measured ceiling, extra memory (peak allocated above the inputs) and the largest
error against float64 on a sample of rows. Peers: torch bf16 cross-entropy, the fp32-upcast
log-softmax statistics, the same statistics under torch.compile, and liger-kernel's cross-entropy
(reduction="none") when it is installed. "ours" includes the per-document sums (segment_reduce).

Usage: python benches/bench_token_stats.py [--tokens 16384] [--vocab 32000 128256 ...]
Without CUDA it says so and exits with status 0, writing nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from common import extra_memory, gpu, result_saver

VOCABS = [32000, 128256, 151936, 256000]
SAMPLE_ROWS = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--vocab", type=int, nargs="+", default=VOCABS)
    parser.add_argument("--data", nargs="+", default=["random", "peaked"], choices=["random", "peaked"])
    parser.add_argument("--sweep", action="store_true", help="also time block/warp/stage/split settings")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to benchmark")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU: bench_token_stats needs one; nothing written")
        return 0
    save = result_saver("bench_token_stats", {"config": vars(args), "gpu": gpu(torch, ("liger-kernel",))})
    with torch.inference_mode():
        path = save(run(args, torch, save), True)
    print(f"\nwritten: {path}")
    return 0


def run(args, torch, save: Callable[[list[dict[str, Any]], bool], Any]) -> list[dict[str, Any]]:
    """The rows of every (V, data) configuration, passed to `save(rows, False)` as each one (and
    its sweep) ends."""
    import triton
    import triton.testing

    from tokensieve import kernels
    from tokensieve.triton_kernels import token_stats as token_module

    def bench(fn: Callable[[], Any]) -> tuple[float, float, float]:
        p50, p20, p80 = triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
        return p50, p20, p80

    def stats_fp32(logits, targets):
        logp = torch.log_softmax(logits.float(), dim=-1)
        p = logp.exp()
        entropy = -(p * logp).sum(-1)
        centred = logp + entropy[:, None]
        return (
            logp.gather(1, targets[:, None])[:, 0],
            torch.logsumexp(logits.float(), -1),
            entropy,
            (p * p).sum(-1),
            (p * centred * centred).sum(-1),
            logp.max(-1).values,
            logp.argmax(-1),
        )

    compiled = torch.compile(stats_fp32, dynamic=False)
    ce = torch.nn.functional.cross_entropy
    # name -> (timed call, its log p(target) for the error column)
    peers: dict[str, tuple[Callable, Callable]] = {
        "torch bf16 cross_entropy": (
            lambda x, t: ce(x, t, reduction="none"),
            lambda x, t: -ce(x, t, reduction="none"),
        ),
        "torch fp32 statistics": (stats_fp32, lambda x, t: stats_fp32(x, t)[0]),
        "torch.compile statistics": (compiled, lambda x, t: compiled(x, t)[0]),
    }
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy

        def liger(x, t):
            loss = liger_cross_entropy(x, t, ignore_index=-100, reduction="none")
            return loss[0] if isinstance(loss, tuple) else loss

        peers["liger cross_entropy"] = (liger, lambda x, t: -liger(x, t))
    except Exception as e:  # not installed, or built for another torch/triton
        print(f"liger-kernel skipped: {e!r}")

    out = []
    n = args.tokens
    for vocab in args.vocab:
        for data in args.data:
            torch.manual_seed(0)
            logits = torch.randn(n, vocab, device="cuda", dtype=torch.bfloat16)
            if data == "peaked":  # entropy of a few nats, large common offset
                logits.mul_(2.0).add_(100.0)
                hot = torch.randint(0, vocab, (n, 4), device="cuda")
                logits.scatter_(1, hot, 112.0)
            targets = torch.randint(0, vocab, (n,), device="cuda")
            targets[torch.rand(n, device="cuda") < 0.2] = -100
            cu = torch.linspace(0, n, 33, device="cuda").long()  # 32 packed documents

            # the read ceiling of this machine, measured now: torch's sum over the same bytes
            flat = logits.view(-1)
            ceiling_ms = bench(lambda flat=flat: flat.sum(dtype=torch.float32))[0]
            one_read_bytes = logits.numel() * logits.element_size()
            ceiling_tbs = one_read_bytes / ceiling_ms / 1e9

            sample = torch.randperm(n, device="cuda")[:SAMPLE_ROWS]
            safe = targets.clamp(min=0)
            want = token_module.token_stats_reference(
                logits[sample], safe[sample], compute_dtype=torch.float64
            )

            def ours(x, t, cu=cu):
                s = kernels.token_stats(x, t)
                return s, kernels.segment_reduce(s.logprob, cu_seqlens=cu, mask=t != -100)

            candidates = {
                "tokensieve token_stats + segment sums": (
                    ours,
                    lambda x, t: kernels.token_stats(x, t).logprob,
                ),
                **peers,
            }
            for name, (fn, logprob_of) in candidates.items():
                t_in = targets if fn is ours else targets.clamp(min=0)

                def call(fn=fn, t_in=t_in, logits=logits):
                    return fn(logits, t_in)

                try:
                    p50, p20, p80 = bench(call)
                    mem = extra_memory(torch, call)
                    got = logprob_of(logits[sample], safe[sample])
                    err = float((got.double() - want.logprob).abs().max())
                except torch.OutOfMemoryError:
                    print(f"{name}: out of memory at V={vocab}")
                    continue
                except Exception as e:  # a peer that does not run on this torch/triton/GPU
                    print(f"{name}: failed at V={vocab}: {e!r}"[:300])
                    continue
                finally:
                    torch.cuda.empty_cache()
                row = {
                    "provider": name, "tokens": n, "vocab": vocab, "data": data, "dtype": "bfloat16",
                    "ms_p50": p50, "ms_p20": p20, "ms_p80": p80,
                    "read_ceiling_ms": ceiling_ms, "read_ceiling_tb_s": ceiling_tbs,
                    "pct_of_read_ceiling": 100.0 * ceiling_ms / p50,
                    "extra_memory_mib": mem / 2**20, "max_abs_logprob_error_vs_float64": err,
                }  # fmt: skip
                out.append(row)
                print(
                    f"V={vocab:>6} {data:<6} {name:<40} {p50:8.3f} ms  "
                    f"{row['pct_of_read_ceiling']:5.1f}% of read ({ceiling_tbs:.2f} TB/s)  "
                    f"+{row['extra_memory_mib']:9.1f} MiB  err {err:.2e}"
                )
            save(out, False)
            if args.sweep:
                out += sweep(bench, token_module, logits, targets, ceiling_ms, vocab, data)
                save(out, False)
            del logits
            torch.cuda.empty_cache()
    return out


def sweep(bench, token_module, logits, targets, ceiling_ms, vocab, data) -> list[dict[str, Any]]:
    rows = []
    for block_v in (2048, 4096, 8192):
        # 8192 logits on 4 warps spill registers when compiled for sm_90 (tests/gpu_compile.py)
        for num_warps in (4, 8, 16) if block_v < 8192 else (8, 16):
            for num_stages in (1, 2, 3, 4):
                for splits in (1, 2, 4):

                    def call(b=block_v, w=num_warps, st=num_stages, sp=splits):
                        return token_module.token_stats_triton(
                            logits, targets, block_v=b, num_warps=w, num_stages=st, splits=sp
                        )

                    try:
                        p50 = bench(call)[0]
                    except Exception as e:  # e.g. out of shared memory or registers for this setting
                        print(f"sweep block_v={block_v} warps={num_warps} stages={num_stages}: {e!r}"[:200])
                        continue
                    rows.append({
                        "provider": "sweep", "vocab": vocab, "data": data, "block_v": block_v,
                        "num_warps": num_warps, "num_stages": num_stages, "splits": splits, "ms_p50": p50,
                        "pct_of_read_ceiling": 100.0 * ceiling_ms / p50,
                    })  # fmt: skip
    best = min(rows, key=lambda r: r["ms_p50"], default=None)
    if best:
        print(f"  best setting at V={vocab} {data}: {best}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
