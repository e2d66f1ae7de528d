"""Compiles every Triton kernel of tokensieve for a GPU, on a machine without one.

CI has no GPU, and the interpreter (``TRITON_INTERPRET=1``) that runs the kernels there never
lowers them: it upcasts bf16 ``tl.dot`` and does not see registers, spills or shared memory. This
script drives the public entry points (``tokensieve.kernels``) exactly as on an H100, at the
benchmarks' shapes, with every tensor a fake CUDA tensor (``FakeTensorMode``: shapes and dtypes, no
memory). Triton is given a driver that only names the target (``sm_90``, 132 SMs), and launches
are turned into compilations (``warmup=True``), so each kernel specialisation the wrappers would
launch goes through Triton's CUDA backend and NVIDIA's ``ptxas``. ``cuobjdump -res-usage`` then
reads each cubin's registers, stack and local memory (spills).

It fails (exit status 1) when a kernel does not compile, spills to local memory, needs more
shared memory than an H100 block can have, multiplies 16-bit operands without Hopper's ``wgmma``
(the tensor-core instruction the fused LM head's speed depends on), or when a wrapper synchronises
with the host (reads a value, or copies a CUDA tensor to the CPU): the Triton path promises a
CUDA-graph capturable call. What it cannot see is speed, and results: those need a GPU.

    python tests/gpu_compile.py [--json PATH]

prints one row per compiled kernel. tests/test_gpu_compile.py runs it. TRITON_INTERPRET must not
be set (the kernels are decorated for the interpreter when it is): the script removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import SimpleNamespace

os.environ.pop("TRITON_INTERPRET", None)  # before triton and the kernels are imported

import torch
import triton
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.jit import JITFunction

#: The H100 SXM: compute capability 9.0, 132 SMs, 227 KiB of shared memory per block (opt-in).
TARGET = GPUTarget("cuda", 90, 32)
SMS = 132
MAX_SHARED_BYTES = 227 * 1024


class CompileOnlyDriver:
    """What ``JITFunction.run`` asks of Triton's active driver before it launches: the target to
    compile for, a device and a stream. Nothing here can launch a kernel."""

    def get_current_target(self) -> GPUTarget:
        return TARGET

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cuda", 0)


class HostSynchronisationError(RuntimeError):
    """A wrapper copied a CUDA tensor to the CPU."""


class NoHostTransfers(TorchDispatchMode):
    """Raises on any operation that turns a CUDA tensor into a CPU one. (Reading a value,
    ``.item()`` or ``.tolist()``, already raises under ``FakeTensorMode``.)"""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        outputs = out if isinstance(out, (tuple, list)) else [out]
        if any(a.device.type == "cuda" for a in inputs) and any(
            isinstance(o, torch.Tensor) and o.device.type == "cpu" for o in outputs
        ):
            raise HostSynchronisationError(f"{func} copies a CUDA tensor to the CPU")
        return out


@dataclass
class CompiledKernel:
    scenario: str
    kernel: str
    specialisation: str  # the constexpr arguments
    num_warps: int
    num_stages: int
    registers: int
    shared_bytes: int
    stack_bytes: int
    local_bytes: int
    matrix_instruction: str  # "wgmma" (Hopper's asynchronous tensor-core MMA), "mma", or "-"


def _resources(cubin: bytes) -> dict[str, int]:
    """REG, STACK, SHARED (static) and LOCAL of the one function in a cubin."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", text))
    if set(found) != {"REG", "STACK", "LOCAL"}:
        raise RuntimeError(f"unexpected cuobjdump output:\n{text}")
    return {k: int(v) for k, v in found.items()}


def _matrix_instruction(ptx: str) -> str:
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    return "mma" if re.search(r"\bmma\.sync\b", ptx) else "-"


def _specialisation(jit: JITFunction, kernel: object) -> str:
    """The constexpr arguments, and the pointee types of the pointer arguments."""
    names = [p.name for p in jit.params]
    src = kernel.src  # type: ignore[attr-defined]
    constants = [
        f"{names[path[0]]}={value}" for path, value in sorted(src.constants.items()) if len(path) == 1
    ]
    pointees = sorted({t.lstrip("*") for t in src.signature.values() if t.startswith("*")})
    return " ".join([*constants, "pointers=" + ",".join(pointees)])


def cuda(shape: tuple[int, ...], dtype: torch.dtype, requires_grad: bool = False) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="cuda", requires_grad=requires_grad)


def scenarios() -> dict[str, Callable[[], object]]:
    """Every public entry point of the Triton path, at the benchmarks' shapes. (The order
    statistics, ``bottom_k_mean`` and the like, are torch only and documented to synchronise.)"""
    from tokensieve import kernels

    n, d = 16384, 4096
    long_ = torch.int64
    out: dict[str, Callable[[], object]] = {}
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        name = str(dtype).removeprefix("torch.")
        out[f"token_stats {name} V=128256"] = lambda dt=dtype: kernels.token_stats(
            cuda((n, 128256), dt), cuda((n,), long_)
        )
        out[f"linear_token_stats {name} V=128256"] = lambda dt=dtype: kernels.linear_token_stats(
            cuda((n, d), dt), cuda((128256, d), dt), cuda((n,), long_)
        )
    out["token_stats bf16 softcap, temperature, 8 rows V=256000 (split-V)"] = lambda: kernels.token_stats(
        cuda((8, 256000), torch.bfloat16), cuda((8,), long_), softcap=30.0, temperature=0.7
    )
    out["linear_token_stats bf16 bias, softcap, shift [4, 4096, D]"] = lambda: kernels.linear_token_stats(
        cuda((4, 4096, d), torch.bfloat16),
        cuda((128256, d), torch.bfloat16),
        cuda((4, 4096), long_),
        bias=cuda((128256,), torch.bfloat16),
        softcap=30.0,
        shift=True,
    )
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        name = str(dtype).removeprefix("torch.")

        def loss_with_gradients(dt: torch.dtype = dtype) -> None:
            # the gradients are formed in the forward; backward only scales them (no kernel)
            kernels.linear_weighted_nll(
                cuda((n, d), dt, requires_grad=True),
                cuda((128256, d), dt, requires_grad=True),
                cuda((n,), long_),
                weights=cuda((n,), torch.float32),
                z_loss=1e-4,
            )

        out[f"linear_weighted_nll {name} with gradients V=128256"] = loss_with_gradients
    out["linear_token_stats bf16 8 rows (split-V)"] = lambda: kernels.linear_token_stats(
        cuda((8, d), torch.bfloat16), cuda((128256, d), torch.bfloat16), cuda((8,), long_)
    )

    def segments() -> tuple[torch.Tensor, ...]:  # values, cu_seqlens (64 documents), mask, doc_ids
        return cuda((n,), torch.float32), cuda((65,), torch.int32), cuda((n,), torch.bool), cuda((n,), long_)

    out["segment_reduce cu_seqlens, mask"] = lambda: kernels.segment_reduce(
        segments()[0], cu_seqlens=segments()[1], mask=segments()[2]
    )
    out["segment_reduce doc_ids"] = lambda: kernels.segment_reduce(
        segments()[0], doc_ids=segments()[3], num_docs=64
    )
    return out


def compile_all() -> tuple[list[CompiledKernel], list[str]]:
    """Runs every scenario; returns the kernels compiled and the problems found."""
    driver.set_active(CompileOnlyDriver())
    torch.cuda.get_device_properties = lambda device=None: SimpleNamespace(multi_processor_count=SMS)
    launched: list[tuple[JITFunction, object]] = []
    run = JITFunction.run

    def compile_instead_of_launch(
        self: JITFunction, *args: object, grid: object, warmup: bool, **kwargs: object
    ):  # type: ignore[no-untyped-def]
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        launched.append((self, kernel))
        return kernel

    JITFunction.run = compile_instead_of_launch  # type: ignore[method-assign]
    rows: list[CompiledKernel] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for scenario, call in scenarios().items():
        launched.clear()
        try:
            with warnings.catch_warnings(), FakeTensorMode(), NoHostTransfers():
                warnings.simplefilter("ignore")  # FakeTensor.data_ptr(), read by Triton's binder
                call()
        except Exception as exc:  # reported, and the other scenarios still run
            problems.append(f"{scenario}: {type(exc).__name__}: {exc}")
            continue
        if not launched:
            problems.append(f"{scenario}: launched no Triton kernel")
        for jit, kernel in launched:
            spec = _specialisation(jit, kernel)
            if (jit.fn.__name__, spec) in seen:
                continue
            seen.add((jit.fn.__name__, spec))
            usage = _resources(kernel.asm["cubin"])  # type: ignore[attr-defined]
            meta = kernel.metadata  # type: ignore[attr-defined]
            row = CompiledKernel(
                scenario, jit.fn.__name__, spec, meta.num_warps, meta.num_stages,
                usage["REG"], meta.shared, usage["STACK"], usage["LOCAL"],
                _matrix_instruction(kernel.asm["ptx"]),  # type: ignore[attr-defined]
            )  # fmt: skip
            rows.append(row)
            if row.local_bytes or row.stack_bytes:
                problems.append(f"{scenario}: {row.kernel} ({spec}) spills: {row}")
            sixteen_bit_dot = "DOT_PRECISION=" in spec and re.search(r"\bpointers=.*\b(bf16|fp16)\b", spec)
            if sixteen_bit_dot and row.matrix_instruction != "wgmma":  # the tensor cores or nothing
                problems.append(f"{scenario}: {row.kernel} ({spec}) does not use wgmma")
            if row.shared_bytes > MAX_SHARED_BYTES:
                problems.append(
                    f"{scenario}: {row.kernel} ({spec}) needs {row.shared_bytes} bytes of shared memory"
                )
    return rows, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the compiled kernels and the problems found here")
    args = parser.parse_args()
    rows, problems = compile_all()
    header = ("kernel", "warps", "stages", "regs", "shared KiB", "spill B", "mma")
    print(f"{header[0]:30}", *(f"{h:>{max(5, len(h))}}" for h in header[1:]), " scenario")
    for r in rows:
        numbers = (r.num_warps, r.num_stages, r.registers, f"{r.shared_bytes / 1024:.1f}")
        print(
            f"{r.kernel:30}",
            *(f"{v:>{max(5, len(h))}}" for v, h in zip(numbers, header[1:5], strict=True)),
            f"{r.local_bytes + r.stack_bytes:>7} {r.matrix_instruction:>5}  {r.scenario}",
        )
        print(f"{'':32}{r.specialisation}")
    for p in problems:
        print("PROBLEM:", p)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"target": str(TARGET), "kernels": [asdict(r) for r in rows], "problems": problems},
                f,
                indent=1,
            )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
