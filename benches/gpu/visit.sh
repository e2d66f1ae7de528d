#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .whl/ carried (benches/gpu/prepare.sh):
#   bash benches/gpu/visit.sh [first | second | STEP...]
# installs the carried wheels into /tmp/site, puts the checkout's Python package (with the
# Triton kernels and the wheel's compiled core) first on PYTHONPATH, describes the machine, then
# runs the steps in order, each under a timeout cut to what is left of VISIT_BUDGET_S (default
# 540 s, inside the device tool's 600 s per command). A failing or timed-out step is recorded and
# the next one runs; a step with too little time left is skipped.
#
# Steps: tests          pytest -m gpu over the test files with GPU-marked tests
#        token          bench_token_stats.py (4 vocabulary sizes x 2 data kinds)
#        linear-quick   bench_linear_stats.py --quick (V=128256, random data)
#        scoring        bench_scoring.py --device cuda (TokenScorer against the bare forward, issue 7)
#        linear-V       bench_linear_stats.py --vocab V (random and peaked data, 1 s per provider)
#        token-sweep    bench_token_stats.py --sweep at V=128256, random data
#        linear-sweep-V bench_linear_stats.py --sweep --vocab V (random data, 0.5 s per setting)
# "linear" and "linear-sweep" stand for V = 32000 128256 256000, one run (and JSON file) each;
# first (the default) = tests token linear-quick scoring linear; second = linear-sweep-128256 token-sweep
# linear-sweep-32000 linear-sweep-256000; names combine (`visit.sh linear-256000 second`).
#
# What comes back in $OUT (the tool returns at most 8 files): visit.log (everything printed),
# steps.tsv (step, exit status (124: timed out), seconds), results.tgz (every result JSON the
# steps wrote) and the first 5 of those JSON files themselves. The benchmarks rewrite their JSON
# after each configuration, so a step stopped by its timeout keeps its finished rows. The last
# line of visit.log gives the next call's command: the steps skipped or timed out, then the sweeps.
#
# VISIT_DRY_RUN=1 runs it anywhere (no GPU: the GPU tests skip and the benchmarks exit 0):
# $OUT and the install directory are temporary directories unless set, and one result file is
# written through benches/common.py and removed again to exercise the copying.
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$SECONDS
BUDGET=${VISIT_BUDGET_S:-540}
RESERVE=15 # seconds kept for copying results after the last step
PY=${PYTHON:-python3}
DRY=${VISIT_DRY_RUN:-}
VOCABS=(32000 128256 256000)
[ $# -gt 0 ] || set -- first
STEPS=()
for name in "$@"; do
  case "$name" in
    first) STEPS+=(tests token linear-quick scoring "${VOCABS[@]/#/linear-}") ;;
    second) STEPS+=(linear-sweep-128256 token-sweep linear-sweep-32000 linear-sweep-256000) ;;
    linear) STEPS+=("${VOCABS[@]/#/linear-}") ;;
    linear-sweep) STEPS+=("${VOCABS[@]/#/linear-sweep-}") ;;
    tests | token | linear-quick | scoring | token-sweep | linear-[0-9]* | linear-sweep-[0-9]*) STEPS+=("$name") ;;
    *) echo "visit.sh: unknown step $name (the head of benches/gpu/visit.sh lists them)" && exit 2 ;;
  esac
done
if [ -n "$DRY" ]; then
  OUT=${OUT:-$(mktemp -d)}
  SITE=${VISIT_SITE:-$(mktemp -d)}
else
  SITE=${VISIT_SITE:-/tmp/site}
fi
[ -n "${OUT:-}" ] || { echo "visit.sh: OUT is not set (set VISIT_DRY_RUN=1 to try it off the device)"; exit 2; }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/visit.log") 2>&1
TEE=$!
export PYTHONUNBUFFERED=1

MARK=$(mktemp)              # result files newer than this one are this visit's
RESULTS=benches/results
STAGE=$(mktemp -d)          # results.tgz is packed from here
LEFT=()                     # steps skipped or timed out: the second call's

collect() {
  find "$RESULTS" -maxdepth 1 -name '*.json' -newer "$MARK" -exec cp -p {} "$STAGE/" \; 2>/dev/null
  local files=("$STAGE"/*.json)
  [ -e "${files[0]}" ] || return 0
  tar -czf "$OUT/results.tgz.tmp" -C "$STAGE" . && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"
  local f
  for f in "${files[@]:0:5}"; do cp -p "$f" "$OUT/"; done
}

CHILD= CURRENT= T0=0 # the step running, if any
SRC=$(mktemp -d)      # the package that runs: the checkout's sources with the wheel's core
finish() {
  if [ -n "$CHILD" ]; then # stopped from outside during a step
    kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD"
    printf '%s\tinterrupted\t%s\n' "$CURRENT" "$((SECONDS - T0))" >>"$OUT/steps.tsv"
    LEFT+=("$CURRENT")
  fi
  collect
  [ -n "$DRY" ] && find "$RESULTS" -maxdepth 1 -name 'visit_dry_run-*.json' -newer "$MARK" -delete
  rm -rf "$STAGE" "$MARK" "$SRC"
  [ -n "$DRY" ] && [ -z "${VISIT_SITE:-}" ] && rm -rf "$SITE"
  echo "=== done in $((SECONDS - START)) s; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
  local next=("${LEFT[@]}")
  [[ " ${STEPS[*]}" == *" linear-sweep-"* ]] || next+=(second) # this call ran no sweeps
  [ ${#next[@]} -eq 0 ] || echo "=== next call: bash benches/gpu/visit.sh ${next[*]}"
  exec >&- 2>&-
  wait "$TEE" 2>/dev/null # visit.log complete before the command returns
}
trap finish EXIT
trap 'exit 143' TERM INT

# step NAME CAP_S MIN_S COMMAND...: runs COMMAND under min(CAP_S, time left); skipped below MIN_S
step() {
  local name=$1 cap=$2 min=$3
  shift 3
  local left=$((BUDGET - (SECONDS - START) - RESERVE))
  if [ "$left" -lt "$min" ]; then
    echo "=== $name: skipped, ${left} s left (needs ${min} s)"
    printf '%s\tskipped\t0\n' "$name" >>"$OUT/steps.tsv"
    LEFT+=("$name")
    return
  fi
  local limit=$((cap < left ? cap : left)) rc
  CURRENT=$name T0=$SECONDS
  echo "=== $name (timeout ${limit} s, $(date -u +%H:%M:%S)): $*"
  timeout -k 10 "$limit" "$@" &
  CHILD=$! # waited for in the background, so that a TERM sent to this script is handled at once
  wait "$CHILD"
  rc=$?
  CHILD=
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - T0))" >>"$OUT/steps.tsv"
  echo "=== $name: exit $rc after $((SECONDS - T0)) s"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && LEFT+=("$name")
  collect
}

echo "=== install the carried wheels into $SITE"
ls .whl/*.whl || { echo "visit.sh: no .whl/*.whl (run benches/gpu/prepare.sh here, carry [\".whl\"])"; exit 2; }
install() {
  "$PY" -m pip install -q --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$@"
}
if [ -z "$DRY" ]; then
  install .whl/*.whl || exit 2
else # this machine's Python may not take the device's CPython 3.12 binary wheels
  for wheel in .whl/*.whl; do
    install "$wheel" 2>/dev/null || echo "  (dry run) $wheel does not install here: skipped"
  done
fi
# The checkout's Python package and Triton kernels, with the wheel's compiled core: edits made
# since prepare.sh are what runs; only the Rust core comes from the wheel.
cp -r python/tokensieve "$SRC/"
rm -rf "$SRC/tokensieve/triton_kernels"
cp -r triton_kernels "$SRC/tokensieve/triton_kernels"
cp "$SITE"/tokensieve/_core*.so "$SRC/tokensieve/" || exit 2
export PYTHONPATH="$SRC:$SITE${PYTHONPATH:+:$PYTHONPATH}"
[ -d .whl/shared-data ] && export TOKENSIEVE_SHARED_DATA="$PWD/.whl/shared-data"
if ! sha256sum --quiet -c .whl/core-sources.sha256; then
  echo "WARNING: rust/ or Cargo files differ from those the carried core was built from: rerun prepare.sh"
fi

echo "=== machine"
if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "(no nvidia-smi)"; fi
ldd --version 2>&1 | head -n 1
"$PY" - <<'PY' || { echo "visit.sh: tokensieve does not import: nothing to run"; exit 2; }
import platform
from importlib import metadata

import torch
import triton

import tokensieve
import tokensieve.kernels

print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "triton", triton.__version__, "tokensieve", tokensieve.__version__, tokensieve.__file__)
for dist in ("liger-kernel", "cut-cross-entropy", "transformers", "numpy"):
    try:
        print(dist, metadata.version(dist))
    except metadata.PackageNotFoundError:
        print(dist, "not installed")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, p.multi_processor_count, "SMs", round(p.total_memory / 2**30, 1), "GiB", f"sm_{p.major}{p.minor}")
else:
    print("no CUDA device")
PY
if [ -n "$DRY" ]; then # one result written the benchmarks' way, for collect() to find
  (cd benches && "$PY" -c 'from common import result_saver; print(result_saver("visit_dry_run", {})([], True))')
fi

for name in "${STEPS[@]}"; do
  case "$name" in
    tests)
      mapfile -t files < <(grep -l 'pytest.mark.gpu' tests/test_*.py)
      step tests 180 30 "$PY" -m pytest -m gpu -q -p no:cacheprovider "${files[@]}"
      ;;
    token) step token 150 60 "$PY" benches/bench_token_stats.py ;;
    linear-quick) step linear-quick 150 40 "$PY" benches/bench_linear_stats.py --quick ;;
    scoring) step scoring 200 90 "$PY" benches/bench_scoring.py --device cuda ;;
    token-sweep) step token-sweep 240 60 "$PY" benches/bench_token_stats.py --sweep --vocab 128256 --data random ;;
    linear-sweep-[0-9]*)
      step "$name" 300 120 "$PY" benches/bench_linear_stats.py --sweep --vocab "${name#linear-sweep-}" \
        --data random --rep-ms 500
      ;;
    linear-[0-9]*) step "$name" 240 60 "$PY" benches/bench_linear_stats.py --vocab "${name#linear-}" --rep-ms 1000 ;;
  esac
done
