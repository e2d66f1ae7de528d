"""The Triton kernels compile for an H100 (sm_90) without spilling, on a machine without a GPU:
tests/gpu_compile.py drives the public kernel functions on fake CUDA tensors and compiles every
launch with Triton's CUDA backend and ptxas (its docstring says what it checks). It runs in a
subprocess because conftest.py sets TRITON_INTERPRET=1 for this one, and the kernels must be
decorated without it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
triton = pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]


def kernels_defined() -> set[str]:
    """The names of the ``@triton.jit`` kernels (not the device functions they call) in
    triton_kernels/."""
    names: set[str] = set()
    for source in (ROOT / "triton_kernels").glob("*.py"):
        names |= set(re.findall(r"@triton\.jit\s*\ndef (\w+_kernel)\(", source.read_text()))
    return names


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90_without_spills(tmp_path: Path) -> None:
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    if not (tools / "ptxas").is_file() or not (tools / "cuobjdump").is_file():
        pytest.skip("this triton build ships no ptxas/cuobjdump")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "gpu_compile.py"), "--json", str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-6000:]
    result = json.loads(report.read_text())
    assert result["problems"] == []
    compiled = {k["kernel"] for k in result["kernels"]}
    assert compiled == kernels_defined(), "a kernel without a scenario in tests/gpu_compile.py"
    # the fused LM head multiplies 16-bit operands on the tensor cores, fp32 ones in full fp32
    for k in result["kernels"]:
        if "DOT_PRECISION=" in k["specialisation"]:
            sixteen_bit = re.search(r"pointers=.*\b(bf16|fp16)\b", k["specialisation"]) is not None
            assert (k["matrix_instruction"] == "wgmma") == sixteen_bit, k
