"""The LM head fused with the per-token statistics and with the training loss, on a GPU:
tokensieve's kernels against torch (matmul + cross entropy), liger-kernel's fused linear cross
entropy and cut-cross-entropy, as a share of the bf16 matmul ceiling measured in the same run.

Per (V, data): the ceiling (torch.matmul of the same [N, D] x [D, V] product, bf16), then
* forward, no grad: per-token outputs (tokensieve: all seven statistics, and the loss alone);
* forward + backward of the summed loss (tokensieve: linear_weighted_nll).
Each row: median time of triton.testing.do_bench (L2 flushed), TFLOP/s (2NDV forward; 6NDV, the
useful work, for forward + backward whatever a method recomputes), % of the ceiling, extra GPU
memory (peak above the inputs; gradients included) and the error against float64: the largest
|nll| error on a sample of tokens (forward), the relative loss error and the largest gradient
errors relative to the largest gradient, on sampled tokens (hidden) and vocabulary rows (weight).

Peers are optional imports: liger-kernel (``liger_fused_linear_cross_entropy``, bf16 and fp32
weight-gradient accumulation) and cut-cross-entropy (``linear_cross_entropy``); a missing one is
skipped with the reason printed. Nothing is downloaded.

Usage: python benches/bench_linear_stats.py [--quick] [--tokens 16384] [--dim 4096]
       [--vocab 32000 128256 256000] [--data random peaked] [--sweep]
Without CUDA it says so and exits with status 0, writing nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from common import extra_memory, gpu, result_saver

VOCABS = [32000, 128256, 256000]
DEVICE = "cuda"
SAMPLE = 64  # tokens (and vocabulary rows) compared with float64
OURS = "tokensieve"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--vocab", type=int, nargs="+", default=None)
    parser.add_argument("--data", nargs="+", default=None, choices=["random", "peaked"])
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--rep-ms", type=int, default=None, help="do_bench time budget per provider")
    parser.add_argument("--quick", action="store_true", help="V=128256, random data, fewer repeats")
    parser.add_argument("--sweep", action="store_true", help="also time other tile/split/chunk settings")
    args = parser.parse_args()
    args.vocab = args.vocab or ([128256] if args.quick else VOCABS)
    args.data = args.data or (["random"] if args.quick else ["random", "peaked"])
    args.rep_ms = args.rep_ms or (300 if args.quick else 2000)
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to benchmark")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU: bench_linear_stats needs one; nothing written")
        return 0
    info = gpu(torch, ("liger-kernel", "cut-cross-entropy"))
    save = result_saver("bench_linear_stats", {"config": vars(args), "gpu": info})
    path = save(run(args, torch, save), True)
    print(f"\nwritten: {path}")
    return 0


def peers(torch) -> tuple[dict[str, Callable], dict[str, Callable]]:
    """(forward peers returning per-token nll, training peers returning the summed loss)."""
    functional = torch.nn.functional

    def torch_nll(h, w, t, reduction="none"):
        return functional.cross_entropy((h @ w.T).float(), t, reduction=reduction)

    forward = {"torch matmul + fp32 cross_entropy": torch_nll}
    train = {"torch matmul + fp32 cross_entropy": lambda h, w, t: torch_nll(h, w, t, "sum")}
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy as liger
    except Exception as e:  # not installed, or built for another torch/triton
        print(f"liger-kernel skipped: {e!r}")
    else:

        def liger_loss(h, w, t, reduction="none", **kwargs):
            loss = liger(h, w, t, reduction=reduction, **kwargs)
            return loss[0] if isinstance(loss, tuple) else loss

        forward["liger FLCE"] = liger_loss
        train["liger FLCE"] = lambda h, w, t: liger_loss(h, w, t, "sum")
        train["liger FLCE accum_dtype=fp32"] = lambda h, w, t: liger_loss(
            h, w, t, "sum", accum_dtype=torch.float32
        )
    try:
        from cut_cross_entropy import linear_cross_entropy as cce
    except Exception as e:
        print(f"cut-cross-entropy skipped: {e!r}")
    else:
        forward["cut-cross-entropy"] = lambda h, w, t: cce(h, w, t, reduction="none")
        train["cut-cross-entropy"] = lambda h, w, t: cce(h, w, t, reduction="sum")
    return forward, train


def inputs(torch, n: int, dim: int, vocab: int, data: str):
    """bf16 hidden [n, dim] and weight [vocab, dim] with logits of standard deviation ~2 ("random")
    or, in addition, one dominant token per row, a few nats above the rest ("peaked"); int64
    targets with 10% ignored."""
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    hidden = torch.randn(n, dim, device=DEVICE, generator=gen)
    weight = torch.randn(vocab, dim, device=DEVICE, generator=gen) * (2.0 / math.sqrt(dim))
    targets = torch.randint(0, vocab, (n,), device=DEVICE, generator=gen)
    if data == "peaked":
        for i in range(0, n, 4096):  # |weight rows| ~ 2: the target's logit rises by ~6
            w = weight[targets[i : i + 4096]]
            hidden[i : i + 4096] += 3.0 * w / w.norm(dim=1, keepdim=True)
    targets[torch.rand(n, device=DEVICE, generator=gen) < 0.1] = -100
    return hidden.bfloat16(), weight.bfloat16(), targets


class Float64Reference:
    """float64 lse of every token, then exact per-token nll, loss and sampled gradient rows of the
    summed loss, computed over vocabulary chunks so the [N, V] float64 logits never exist."""

    def __init__(self, torch, hidden, weight, targets, chunk: int = 8192) -> None:
        self.torch = torch
        self.h = hidden.double()
        self.w = weight
        self.t = targets
        self.chunk = chunk
        self.keep = targets != -100
        lse = torch.full((hidden.shape[0],), -math.inf, dtype=torch.float64, device=DEVICE)
        for v0 in range(0, weight.shape[0], chunk):
            lse = torch.logaddexp(lse, torch.logsumexp(self.h @ weight[v0 : v0 + chunk].double().T, dim=1))
        self.lse = lse
        safe = targets.clamp(min=0)
        target_logit = torch.zeros_like(lse)
        for i in range(0, hidden.shape[0], 4096):  # row-wise dot with each token's target row
            target_logit[i : i + 4096] = (self.h[i : i + 4096] * weight[safe[i : i + 4096]].double()).sum(1)
        self.nll = lse - target_logit
        self.loss = float(self.nll[self.keep].sum())
        gen = torch.Generator(device=DEVICE).manual_seed(1)
        self.rows = torch.randperm(hidden.shape[0], device=DEVICE, generator=gen)[:SAMPLE]
        self.vrows = torch.randperm(weight.shape[0], device=DEVICE, generator=gen)[:SAMPLE]

    def grad_hidden_rows(self):
        torch, rows = self.torch, self.rows
        out = torch.zeros(SAMPLE, self.h.shape[1], dtype=torch.float64, device=DEVICE)
        for v0 in range(0, self.w.shape[0], self.chunk):
            w = self.w[v0 : v0 + self.chunk].double()
            out += torch.exp(self.h[rows] @ w.T - self.lse[rows, None]) @ w
        safe = self.t[rows].clamp(min=0)
        return (out - self.w[safe].double()) * self.keep[rows, None]

    def grad_weight_rows(self):
        torch, vrows = self.torch, self.vrows
        z = self.h @ self.w[vrows].double().T  # [N, SAMPLE]
        dz = torch.exp(z - self.lse[:, None]) - (self.t[:, None] == vrows[None, :]).double()
        return (dz * self.keep[:, None]).T @ self.h


def run(args, torch, save: Callable[[list[dict[str, Any]], bool], Any]) -> list[dict[str, Any]]:
    """The rows of every (V, data) configuration, passed to `save(rows, False)` as each one (and
    its sweep) ends."""
    import triton.testing

    from tokensieve import kernels

    forward_peers, train_peers = peers(torch)
    n, dim = args.tokens, args.dim

    def bench(fn: Callable[[], Any], grads: list | None = None) -> tuple[float, float, float]:
        p50, p20, p80 = triton.testing.do_bench(
            fn, warmup=25, rep=args.rep_ms, quantiles=[0.5, 0.2, 0.8], grad_to_none=grads
        )
        return p50, p20, p80

    out: list[dict[str, Any]] = []
    for vocab in args.vocab:
        for data in args.data:
            hidden, weight, targets = inputs(torch, n, dim, vocab, data)
            flops = 2.0 * n * dim * vocab
            ceiling_ms = bench(lambda h=hidden, w=weight: torch.matmul(h, w.T))[0]
            ceiling_tflops = flops / ceiling_ms / 1e9
            print(
                f"\nV={vocab} {data}: bf16 matmul ceiling {ceiling_ms:.2f} ms = {ceiling_tflops:.0f} TFLOP/s"
            )
            torch.cuda.empty_cache()
            ref = Float64Reference(torch, hidden, weight, targets)
            base = {"tokens": n, "dim": dim, "vocab": vocab, "data": data, "dtype": "bfloat16"}
            base |= {"matmul_ceiling_ms": ceiling_ms, "matmul_ceiling_tflops": ceiling_tflops}
            found: dict[tuple[str, str], dict[str, Any]] = {}
            if "forward" in args.modes:
                candidates = {
                    f"{OURS} linear_token_stats (7 statistics)": lambda h, w, t: (
                        -kernels.linear_token_stats(h, w, t).logprob
                    ),
                    f"{OURS} linear_weighted_nll (loss only)": kernels.linear_weighted_nll,
                    **forward_peers,
                }
                for name, fn in candidates.items():
                    row = forward_row(torch, bench, name, fn, hidden, weight, targets, ref, flops, ceiling_ms)
                    if row:
                        out.append(base | row)
                        found["forward", name] = row
            if "train" in args.modes:
                candidates = {f"{OURS} linear_weighted_nll": kernels.linear_weighted_nll, **train_peers}
                for name, fn in candidates.items():
                    row = train_row(torch, bench, name, fn, hidden, weight, targets, ref, flops, ceiling_ms)
                    if row:
                        out.append(base | row)
                        found["train", name] = row
            print_ratios(found)
            save(out, False)
            if args.sweep:
                out += [base | r for r in sweep(torch, bench, hidden, weight, targets, flops, ceiling_ms)]
                save(out, False)
            del hidden, weight, targets, ref
            torch.cuda.empty_cache()
    return out


def forward_row(
    torch, bench, name, fn, hidden, weight, targets, ref, flops, ceiling_ms
) -> dict[str, Any] | None:
    def call():
        with torch.no_grad():
            return fn(hidden, weight, targets)

    try:
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        first_s = time.perf_counter() - start
        p50, p20, p80 = bench(call)
        mem = extra_memory(torch, call)
        nll = call()
        if nll.dim() == 0:  # the loss alone: compare the sum
            err = abs(float(nll) - ref.loss) / abs(ref.loss)
            what = "relative loss error"
        else:
            rows = ref.rows[ref.keep[ref.rows]]
            err = float((nll[rows].double() - ref.nll[rows]).abs().max())
            what = "max |nll error|"
        out_dtype = str(nll.dtype).removeprefix("torch.")
    except torch.OutOfMemoryError:
        print(f"  forward {name}: out of memory")
        return None
    except Exception as e:  # a peer that does not run on this torch/triton/GPU
        print(f"  forward {name}: failed: {e!r}"[:300])
        return None
    finally:
        torch.cuda.empty_cache()
    row = {
        "mode": "forward", "provider": name, "ms_p50": p50, "ms_p20": p20, "ms_p80": p80,
        "first_call_s": first_s, "tflops": flops / p50 / 1e9, "pct_of_ceiling": 100.0 * ceiling_ms / p50,
        "extra_memory_gib": mem / 2**30, "error": err, "error_kind": what, "output_dtype": out_dtype,
    }  # fmt: skip
    print(
        f"  forward {name:<44} {p50:8.2f} ms {row['tflops']:5.0f} TFLOP/s {row['pct_of_ceiling']:5.1f}% "
        f"+{row['extra_memory_gib']:6.2f} GiB  {what} {err:.2e} ({out_dtype})"
    )
    return row


def train_row(
    torch, bench, name, fn, hidden, weight, targets, ref, flops, ceiling_ms
) -> dict[str, Any] | None:
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()

    def call():
        loss = fn(h, w, targets)
        loss.backward()
        return loss

    try:
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        first_s = time.perf_counter() - start
        p50, p20, p80 = bench(call, grads=[h, w])
        h.grad = w.grad = None
        mem = extra_memory(torch, call)
        h.grad = w.grad = None
        loss = float(call())
        gh = ref.grad_hidden_rows()
        gw = ref.grad_weight_rows()
        errors = {
            "relative_loss_error": abs(loss - ref.loss) / abs(ref.loss),
            "grad_hidden_error": float((h.grad[ref.rows].double() - gh).abs().max() / gh.abs().max()),
            "grad_weight_error": float((w.grad[ref.vrows].double() - gw).abs().max() / gw.abs().max()),
        }
    except torch.OutOfMemoryError:
        print(f"  train   {name}: out of memory")
        return None
    except Exception as e:
        print(f"  train   {name}: failed: {e!r}"[:300])
        return None
    finally:
        h.grad = w.grad = None
        torch.cuda.empty_cache()
    row = {
        "mode": "forward+backward", "provider": name, "ms_p50": p50, "ms_p20": p20, "ms_p80": p80,
        "first_call_s": first_s, "tflops": 3 * flops / p50 / 1e9, "pct_of_ceiling": 300.0 * ceiling_ms / p50,
        "extra_memory_gib": mem / 2**30, **errors,
    }  # fmt: skip
    print(
        f"  train   {name:<44} {p50:8.2f} ms {row['tflops']:5.0f} TFLOP/s {row['pct_of_ceiling']:5.1f}% "
        f"+{row['extra_memory_gib']:6.2f} GiB  loss {errors['relative_loss_error']:.1e} "
        f"dH {errors['grad_hidden_error']:.1e} dW {errors['grad_weight_error']:.1e}"
    )
    return row


def print_ratios(found: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Each peer's time and memory over tokensieve's, per mode (> 1: tokensieve is faster/smaller)."""
    for mode in ("forward", "train"):
        ours = next((r for (m, name), r in found.items() if m == mode and name.startswith(OURS)), None)
        if ours is None:
            continue
        for (m, name), r in found.items():
            if m == mode and not name.startswith(OURS):
                memory = r["extra_memory_gib"] / max(ours["extra_memory_gib"], 1e-9)
                ratio = r["ms_p50"] / ours["ms_p50"]
                print(f"  {mode:<7} {name:<44} {ratio:5.2f}x the time, {memory:7.1f}x the memory")


def sweep(torch, bench, hidden, weight, targets, flops, ceiling_ms) -> list[dict[str, Any]]:
    """Other tile, split and chunk settings of tokensieve's kernels (forward and training)."""
    from tokensieve.triton_kernels import linear_stats

    default = linear_stats.default_launch(hidden.dtype)
    rows = []
    # Settings that spill registers when compiled for sm_90 (256 x 128 forward tiles, 256-wide
    # grad_weight tiles: checked with tests/gpu_compile.py's compile-only driver) are left out.
    forward = [
        replace(default, block_n=bn, block_v=bv, block_d=bd, num_warps=nw, num_stages=ns)
        for bn, bv, bd, nw, ns in [
            (128, 128, 64, 8, 3), (128, 128, 64, 8, 4), (128, 128, 32, 8, 4), (64, 128, 64, 4, 3),
            (64, 256, 64, 8, 3), (128, 64, 64, 4, 4),
        ]
    ]  # fmt: skip
    for launch in forward:
        for splits in (None, 4, 8, 16):

            def call(launch=launch, splits=splits):
                with torch.no_grad():
                    linear_stats.linear_token_stats_triton(
                        hidden, weight, targets, launch=launch, splits=splits
                    )

            rows.append(sweep_row(bench, call, "forward", f"{launch} splits={splits}", flops, ceiling_ms))
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    train = [
        replace(default, dw_block_v=bv, dw_block_d=bd, dw_block_tokens=bk, dw_num_warps=nw, dw_num_stages=ns)
        for bv, bd, bk, nw, ns in [
            (128, 128, 64, 8, 3),
            (128, 128, 64, 8, 4),
            (128, 128, 32, 8, 4),
            (64, 128, 64, 4, 3),
        ]
    ]
    for launch in train:
        for chunk in (None, 4096, 8192):

            def call(launch=launch, chunk=chunk):
                linear_stats.linear_weighted_nll_triton(
                    h, w, targets, launch=launch, chunk_tokens=chunk
                ).backward()

            row = sweep_row(
                bench, call, "forward+backward", f"{launch} chunk={chunk}", 3 * flops, 3 * ceiling_ms, [h, w]
            )
            rows.append(row)
    rows = [r for r in rows if r]
    for mode in ("forward", "forward+backward"):
        best = min((r for r in rows if r["mode"] == mode), key=lambda r: r["ms_p50"], default=None)
        if best:
            print(f"  best {mode}: {best['ms_p50']:.2f} ms with {best['setting']}")
    return rows


def sweep_row(bench, call, mode, setting, flops, ceiling_ms, grads=None) -> dict[str, Any] | None:
    try:
        p50 = bench(call, grads)[0]
    except Exception as e:  # e.g. out of shared memory or registers for this setting
        print(f"  sweep {mode} {setting}: {e!r}"[:300])
        return None
    print(f"  sweep {mode} {p50:8.2f} ms {100.0 * ceiling_ms / p50:5.1f}%  {setting}")
    return {
        "mode": mode, "provider": "sweep", "setting": setting, "ms_p50": p50,
        "tflops": flops / p50 / 1e9, "pct_of_ceiling": 100.0 * ceiling_ms / p50,
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
