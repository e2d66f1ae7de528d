"""Helpers shared by the benchmark scripts: timing, the machine description, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: The shared corpora: ../shared/data beside the repository, or TOKENSIEVE_SHARED_DATA (a GPU
#: visit carries a copy, see benches/gpu/prepare.sh).
SHARED_DATA = Path(
    os.environ.get("TOKENSIEVE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def forked_wall_seconds(prepare: Callable[[int], Callable[[], object]], processes: int) -> float:
    """Wall seconds of ``processes`` forked children each running the work that ``prepare(i)``
    returns in child ``i``, timed from a common start once every child has prepared (untimed:
    loading a model, say) to the last child's end. Raises if a child fails."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for i in range(processes):
        pid = os.fork()
        if pid == 0:  # child: leave without running the parent's cleanup, failing loudly
            status = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                work = prepare(i)
                os.write(ready_w, b"r")
                os.close(ready_w)
                if os.read(go_r, 1):  # nothing: another child failed, the parent gave up
                    work()
                    status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        pids.append(pid)
    os.close(ready_w)  # so that the reads below end if a child dies before it is ready
    os.close(go_r)
    ready = sum(len(os.read(ready_r, 1)) for _ in pids)
    start = time.perf_counter()
    if ready == len(pids):
        os.write(go_w, b"g" * len(pids))
    os.close(go_w)  # a child still waiting for the start then reads EOF and ends
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    seconds = time.perf_counter() - start
    os.close(ready_r)
    if ready != len(pids) or any(statuses):
        raise RuntimeError(f"a forked child failed (exit statuses {statuses})")
    return seconds


def timed(fn: Callable[[], Any], reps: int, before_each: Callable[[int], None] | None = None) -> list[float]:
    """Wall-clock seconds of `reps` calls of `fn`, after one untimed warm-up call."""
    if before_each:
        before_each(-1)
    fn()
    times = []
    for i in range(reps):
        if before_each:
            before_each(i)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> dict[str, Any]:
    """CPU model, core count, memory, OS and the versions that matter for the numbers."""
    cpu = platform.processor()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not cpu.strip():
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = [x for x in line.split(":", 1)[1].split() if x in ("avx2", "avx512f", "sha_ni")]
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for dist in ("tokensieve", "numpy", "data-selection", "nltk", "regex"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def code_revision() -> dict[str, Any] | None:
    """The commit of this checkout and whether its tracked files differ from it (a run of
    uncommitted code says so); None outside a git checkout."""
    root = RESULTS.parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout

    try:
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(git("status", "--porcelain", "-uno").strip()),
        }
    except (OSError, subprocess.CalledProcessError):
        return None


def write_result(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    """Writes `payload` plus the machine, the code's revision and a timestamp to
    results/<name>-<UTC time>.json, or
    over `path`, a file an earlier call returned (a long run saves what it has as it goes, so a
    run stopped part-way still leaves its finished rows)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    payload = {
        "benchmark": name,
        "date": now.isoformat(timespec="seconds"),
        "machine": machine(),
        "revision": code_revision(),
        **payload,
    }
    RESULTS.mkdir(exist_ok=True)
    path = path or RESULTS / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def result_saver(name: str, header: dict[str, Any]) -> Callable[[list[dict[str, Any]], bool], Path]:
    """`save(rows, complete)`: writes `header`, the rows so far and whether the run finished to one
    result file, rewritten at each call (a run killed part-way keeps the rows it saved)."""
    path: Path | None = None

    def save(rows: list[dict[str, Any]], complete: bool) -> Path:
        nonlocal path
        path = write_result(name, {**header, "complete": complete, "rows": rows}, path)
        return path

    return save


def gpu(torch, dists: tuple[str, ...] = ()) -> dict[str, Any]:
    """The CUDA device the numbers were taken on, with torch's, triton's and `dists`' versions."""
    props = torch.cuda.get_device_properties(0)
    versions = {}
    for dist in ("torch", "triton", *dists):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "name": props.name,
        "sms": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "versions": versions,
    }


def extra_memory(torch, fn: Callable[[], Any]) -> int:
    """Bytes `fn` allocates on the GPU at its peak beyond what is allocated before the call."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base
