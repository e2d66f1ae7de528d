#!/usr/bin/env bash
# Before a GPU visit, on this (x86-64, PyPI-connected) machine: fills .whl/ at the repository root
# with what the device image lacks, for its Python 3.12 (torch 2.11, triton 3.6, no network):
#   * tokensieve, built here with `maturin build --release` (abi3: installs on any CPython >= 3.10);
#   * the benchmarks' peers liger-kernel and cut-cross-entropy (pure Python), and zstandard,
#     downloaded with --no-deps after checking that each unconditional requirement is already
#     in the image;
#   * shared-data/: a copy of ../shared/data (the corpora, 28 MB), for bench_scoring.py and the
#     tests that read them (visit.sh points TOKENSIEVE_SHARED_DATA at it);
#   * core-sources.sha256: the checksums of the Rust sources the wheel was built from, which
#     visit.sh compares against the checkout it runs in (the Python and Triton sources are
#     taken from the checkout there, so only a stale Rust core matters).
# .whl/ is git-excluded (added to .git/info/exclude here) and travels with `carry: [".whl"]`.
# Run it in the checkout the device tool sends (the session's own), again after changing rust/.
# Usage: bash benches/gpu/prepare.sh          (PYTHON=... picks the interpreter for pip)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHL=.whl
PEERS=(liger-kernel==0.8.5 cut-cross-entropy==25.1.1)
NEEDS=(zstandard==0.25.0) # not in the device image: the corpora are .jsonl.zst
SHARED_DATA=../shared/data # the corpora (28 MB), carried for the tests and bench_scoring.py
MAX_WHL_MIB=48 # the wheels (12 MiB) and the corpora (28 MiB)
MAX_TREE_MIB=60 # the device tool carries at most 64 MiB: tracked + untracked files + .whl

[ "$(uname -m)" = x86_64 ] || { echo "prepare.sh: the device is x86-64; this machine is $(uname -m)"; exit 1; }
command -v maturin >/dev/null || { echo "prepare.sh: maturin is needed (pip install 'maturin>=1.12,<2')"; exit 1; }

# git-exclude .whl/ (worktrees share the main repository's info/exclude)
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$WHL/" "$exclude" 2>/dev/null || echo "/$WHL/" >>"$exclude"

rm -rf "$WHL"
mkdir "$WHL"

echo "=== tokensieve wheel (maturin build --release)"
# manylinux_2_34: the newest glibc symbol versions the core links against here (maturin checks
# them). The device's Python 3.12.3 points to Ubuntu 24.04 (glibc 2.39); visit.sh prints its glibc.
nice maturin build --release --locked --strip --compatibility manylinux_2_34 -q -o "$WHL"

echo "=== peers: ${PEERS[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHL" "${PEERS[@]}"

echo "=== needed packages: ${NEEDS[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHL" "${NEEDS[@]}"

echo "=== the shared corpora ($SHARED_DATA -> $WHL/shared-data)"
if [ -d "$SHARED_DATA" ]; then
  cp -r "$SHARED_DATA" "$WHL/shared-data"
  chmod -R u+w "$WHL/shared-data" # the source may be read-only; .whl/ is rebuilt each time
else
  echo "  $SHARED_DATA is missing: the GPU visit runs without them (bench_scoring.py cannot)"
fi

echo "=== requirements against the device image"
# Versions as listed for the device image ('cuda': /opt/torch/.venv, Python 3.12.3); None: present,
# version not listed. A requirement of a carried wheel outside this table has to be carried too.
"$PY" - "$WHL" <<'PY'
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

DEVICE = {
    "torch": "2.11.0", "triton": "3.6.0", "numpy": "2.5.2", "transformers": "5.17.0",
    "scipy": None, "pyarrow": None, "packaging": None,
}  # fmt: skip
env = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3",
                               "platform_system": "Linux", "sys_platform": "linux",
                               "platform_machine": "x86_64", "implementation_name": "cpython"}
bad = []
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker and not req.marker.evaluate(env | {"extra": ""}):
            continue  # an extra, or another platform
        name = req.name.lower().replace("_", "-")
        if name not in DEVICE:
            bad.append(f"{wheel.name}: {req} is not in the device image")
        elif DEVICE[name] and not req.specifier.contains(DEVICE[name], prereleases=True):
            bad.append(f"{wheel.name}: {req} excludes the device's {name} {DEVICE[name]}")
        else:
            print(f"  {wheel.name}: {req} ok")
if bad:
    sys.exit("\n".join(bad))
PY

echo "=== Rust sources of the core"
git ls-files -z rust Cargo.toml Cargo.lock pyproject.toml | xargs -0 sha256sum >"$WHL/core-sources.sha256"
wc -l <"$WHL/core-sources.sha256" | xargs echo "  files:"

echo "=== sizes"
whl_kib=$(du -sk "$WHL" | cut -f1)
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
ls -l "$WHL"
echo "  .whl: $((whl_kib / 1024)) MiB; tracked + untracked (not ignored) files: $((tree_kib / 1024)) MiB"
[ "$whl_kib" -le $((MAX_WHL_MIB * 1024)) ] || { echo "prepare.sh: .whl is over $MAX_WHL_MIB MiB"; exit 1; }
[ $((whl_kib + tree_kib)) -le $((MAX_TREE_MIB * 1024)) ] || { echo "prepare.sh: over $MAX_TREE_MIB MiB in all"; exit 1; }
echo "ready: carry [\".whl\"] and run: bash benches/gpu/visit.sh"
