#!/usr/bin/env bash
# What only a GPU can tell, in one run of under 8 minutes on a GPU machine (H100 or H200),
# start to end, from the repository root (run where the tree is; nothing is installed):
#
#   bash bench/gpu_check.sh          build for the local GPU, op tests (CUDA + compiled Triton),
#                                    compute-sanitizer memcheck and racecheck, benchmarks
#   bash bench/gpu_check.sh bench    the benchmarks only (the build of an earlier call is there)
#   bash bench/gpu_check.sh cpu      on a machine without a GPU (CI): every step that needs no GPU,
#                                    against the torch/triton of the python it runs (CI: a venv
#                                    with the GPU image's torch 2.11.0 and triton 3.6.0)
#   bash bench/gpu_check.sh PART...  some of: machine build tests memcheck racecheck e2e latency package
#   bash bench/gpu_check.sh cpu PART...  some of: machine selftest imports collect options
#                                    bench-cpu cxx-syntax (cxx-syntax: ~5 minutes on 2 cores)
#   --out DIR                        (with any of the above) where the report goes, and on a GPU
#                                    a copy of the benchmark CSVs (default: bench/results on a
#                                    GPU, a new temporary folder in cpu mode; or $GPU_CHECK_OUT)
#
# The GPU machines' image is not our pins (Python 3.12, torch 2.11.0+cu130, triton 3.6.0,
# numpy 2.5, no pycocotools, no network): nothing is installed; the package is imported from
# the tree (PYTHONPATH) and the extension is built in place. It needs ninja, which the image
# may lack (the build then runs one compiler at a time and cannot finish in its limit): on
# PATH, else $NINJA, else the tree's .venv/bin/ninja (copy the tree with it).
#
# Each part runs under its own `timeout`, so a slow part cannot eat the time of the others;
# the limits add up to 480 s, the 8 minutes the whole run should take. A part that fails
# or times out makes the exit status 1; the others still run (a failed build still leaves the
# Triton tests and benchmarks worth their minutes). One report, everything the parts printed
# plus each one's duration and status, goes to <out>/gpu_check-<date>-<device>[-<parts>].txt;
# with --out elsewhere than bench/results, a GPU run copies the benchmark CSVs it appended to
# (bench/results/e2e.csv, latency.csv) there too: one folder holds all that the run produced.
#
# Environment: PYTHON (default: python, else python3), GPU_CHECK_COMMIT (the commit, where the
# tree has no .git, as a copy of it may not), GPU_CHECK_OUT (as --out), NINJA.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$(command -v python || command -v python3)}
# The package from this tree, built or not, for the bench scripts too (run as files, their
# sys.path[0] is bench/).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PY ROOT
# The commit, for the report and the benchmarks' rows (bench/common.py reads it where git cannot).
GPU_CHECK_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "${GPU_CHECK_COMMIT:-}")
export GPU_CHECK_COMMIT

# Seconds per part (sum 480). Expected on an H200 with 16 cores (estimates, not yet measured):
# build ~60-90 s (22 sources, the longest a .cu of ~30 s, one arch, 16 at a time); tests ~60 s
# (a Triton compile per kernel specialisation, ~1 s each, the op files in parallel); memcheck
# and racecheck ~30-50 s each (torch's start-up under the sanitizer is slow; in parallel too);
# e2e ~50 s (5 configurations, a process each, the first fast one compiling its Triton
# kernels); latency ~15 s; package ~45 s (a CUDA package exported: AOTInductor compiles its
# wrapper and Triton kernels; then 8 frames against the eager engine).
declare -A LIMIT=([machine]=15 [build]=140 [tests]=80 [memcheck]=60 [racecheck]=45 [e2e]=60 [latency]=25 [package]=55)
GPU_PARTS=(machine build tests memcheck racecheck e2e latency package)
# cpu mode: the same shell machinery; the limits are for a 2-core CI machine.
declare -A CPU_LIMIT=([machine]=60 [selftest]=60 [imports]=180 [collect]=300 [options]=120 [bench-cpu]=600 [cxx-syntax]=600)
CPU_PARTS=(machine selftest imports collect options bench-cpu cxx-syntax)

# The GPU cases of tests/ops (ids "<backend>-<device>": cuda-cuda, triton-cuda) and the opcheck /
# torch.compile tests, which run the Triton ops on the GPU when there is one. The CPU cases are
# CI's (all of tests/ops takes minutes of CPU: no time for it here).
TESTS_K="cuda or triton or opcheck or compile"
# The sanitizers run the CUDA backend's cases (Triton's kernels are not ours to sanitise, and
# its compiler under the sanitizer would take the time); racecheck without the official sizes,
# which it slows most (a race shows on small shapes as well: several tiles and loop steps).
MEMCHECK_K="cuda-cuda"
RACECHECK_K="cuda-cuda and not official"
PACKAGE_K="cuda"
# Any finding fails the part (exit 9). API errors are not reported: the CUDA runtime's and
# torch's own probes (cuGetProcAddress and the like) return errors by design, and a launch of
# ours that fails is already a test failure (every launch is checked). No launch timeout:
# under a busy CPU, Python's start-up can take longer than the default 10 s to connect.
SANITIZER_FLAGS="--error-exitcode 9 --print-limit 20 --report-api-errors no --launch-timeout 0"
# The benchmarks' options, kept few and plain (the scripts' options may change): float32 and
# bfloat16, CUDA graphs (bfloat16), 1 and 8 streams, on one video of 8 frames (3 of warm-up).
E2E_ARGS=(--videos crowd --frames 8 --dtypes float32,bfloat16 --streams 8)
LATENCY_ARGS=(--video crowd --frames 8)

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

out=${GPU_CHECK_OUT:-}
positional=()
while (($#)); do
  case $1 in
    --out) [[ $# -ge 2 && -n $2 ]] || { echo "gpu_check.sh: --out needs a folder" >&2; exit 2; }
           out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; [[ -n $out ]] || { echo "gpu_check.sh: --out needs a folder" >&2; exit 2; }; shift ;;
    *) positional+=("$1"); shift ;;
  esac
done
set -- "${positional[@]}"

mode=gpu
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") parts=("${GPU_PARTS[@]}") ;;
  bench) parts=(machine e2e latency) ;;
  cpu) mode=cpu; parts=("${@:2}"); ((${#parts[@]})) || parts=("${CPU_PARTS[@]}")
       for p in "${parts[@]}"; do
         [[ -n ${CPU_LIMIT[$p]:-} ]] || { echo "gpu_check.sh: unknown cpu part '$p' (cpu parts: ${CPU_PARTS[*]})" >&2; exit 2; }
       done ;;
  *) parts=("$@")
     for p in "${parts[@]}"; do
       [[ -n ${LIMIT[$p]:-} ]] || { echo "gpu_check.sh: unknown part '$p' (parts: ${GPU_PARTS[*]}; or bench, cpu; --help)" >&2; exit 2; }
     done ;;
esac
[[ $mode == gpu && ${1:-} == bench && $# -gt 1 ]] && { echo "gpu_check.sh: bench takes no other argument" >&2; exit 2; }
[[ -n $PY ]] || { echo "gpu_check.sh: no python on PATH (set PYTHON)" >&2; exit 2; }

# ---- the parts: each is a function run as `bash -c` under timeout (exported below) ----

machine() {
  date -u '+date: %Y-%m-%d %H:%M:%S UTC'
  echo "commit: ${GPU_CHECK_COMMIT:-unknown (no .git here: set GPU_CHECK_COMMIT)}$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes, or no .git to tell)')"
  echo "host: $(uname -srm), $(nproc) CPUs; ninja: $(command -v ninja || echo 'not on PATH')"
  "$PY" - <<'EOF'
import os, platform
import numpy, torch, triton
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"triton {triton.__version__}, numpy {numpy.__version__}")
for name in ("pycocotools", "PIL", "cv2", "hypothesis"):
    try:
        __import__(name)
        print(f"  {name}: yes")
    except ImportError:
        print(f"  {name}: no")
if os.environ["MODE"] == "gpu":
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no GPU")
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF
  (($? == 0)) || return 1
  [[ $MODE == gpu ]] || return 0
  { command -v nvcc >/dev/null && nvcc --version | tail -1; } || echo "nvcc: not on PATH"
  sanitizer --version | sed -n 2p
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
}

sanitizer() {
  local s
  for s in "$(command -v compute-sanitizer)" "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
           /usr/local/cuda/bin/compute-sanitizer; do
    [[ -n $s && -x $s ]] && { "$s" "$@"; return; }
  done
  echo "compute-sanitizer: not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)"
  return 127
}

build() {
  local arch jobs
  arch=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || return 1
  jobs=$(nproc)
  if ! command -v ninja >/dev/null; then
    for n in "${NINJA:-}" "$ROOT/.venv/bin/ninja"; do
      [[ -n $n && -x $n ]] && "$n" --version >/dev/null 2>&1 && { mkdir -p build/ninja-bin; ln -sf "$(realpath "$n")" build/ninja-bin/ninja; export PATH="$ROOT/build/ninja-bin:$PATH"; break; }
    done
  fi
  command -v ninja >/dev/null && echo "ninja $(ninja --version), $jobs jobs, TORCH_CUDA_ARCH_LIST=$arch" \
    || echo "NB: no ninja (not on PATH, \$NINJA or .venv/bin/ninja): setuptools compiles one file at a time, expect a timeout"
  # NB: in place rather than `pip install -e .`: nothing to install into the image's Python
  # (offline; a system Python 3.12 refuses pip without --break-system-packages; PEP 660 wants a
  # recent setuptools), and PYTHONPATH finds the tree. Objects land in build/temp (setup.py):
  # a second build on a warm machine compiles only what changed.
  TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$jobs" "$PY" setup.py build_ext --inplace || return 1
  "$PY" - <<'EOF'
import torch
from visolo_fast import backends
print("available backends on cuda:", backends.available_backends("cuda"))
missing = backends.why_unavailable("cuda", torch.device("cuda"))
if missing:
    raise SystemExit(f"the CUDA backend is not available after the build: {missing}")
EOF
}

# per_file K CMD...: `CMD tests/ops/<file> -k K` for every op test file, all at once (one
# process each: Triton's compiles and the sanitizer's start-up are per process and bound by
# one CPU core, and the machine has 16), then each file's output in turn. Fails when a file
# fails or when no file had a test selected (pytest's exit 5 alone is no failure: a file
# may have no GPU case). At the time limit, what each file printed so far is shown. Two CPU
# threads a process (OMP_NUM_THREADS), so that the processes together fit the cores.
per_file() {
  local k=$1 dir
  shift
  dir=$(mktemp -d)
  export PER_FILE_DIR=$dir PER_FILE_K=$k
  show() {
    local t f
    for t in tests/ops/test_*.py; do
      f="$dir/$(basename "$t" .py).log"
      [[ -e $f ]] || { echo "== $t: not started"; continue; }
      echo "== $t: $( [[ -e ${f%.log}.rc ]] && echo "exit $(cat "${f%.log}.rc")" || echo "STOPPED, output so far")"
      grep -v '^[.sxXFE]*\s*\[ *[0-9]*%\]$' "$f"  # not pytest's progress lines
    done
  }
  trap 'show; exit 124' TERM
  printf '%s\n' tests/ops/test_*.py | xargs -P "$(nproc)" -I{} bash -c '
      log="$PER_FILE_DIR/$(basename {} .py).log"
      OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$@" {} -k "$PER_FILE_K" > "$log" 2>&1
      echo $? > "${log%.log}.rc"' _ "$@"
  show
  local rc ok=0 bad=0
  for rc in $(cat "$dir"/*.rc); do
    case $rc in 0) ok=$((ok + 1)) ;; 5) ;; *) bad=$((bad + 1)) ;; esac
  done
  echo "files: $ok passed, $bad failed (-k \"$k\")"
  ((bad == 0 && ok > 0))
}

tests() {
  TRITON_INTERPRET=0 per_file "$TESTS_K" "$PY" -m pytest -q -p no:cacheprovider
}

memcheck() {
  # NB: without the caching allocator every tensor is its own cudaMalloc, so memcheck sees an
  # access past a tensor's end (inside a cached block it would be silent).
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 TRITON_INTERPRET=0 per_file "$MEMCHECK_K" \
    sanitizer --tool memcheck $SANITIZER_FLAGS "$PY" -m pytest -q -p no:cacheprovider
}

racecheck() {
  TRITON_INTERPRET=0 per_file "$RACECHECK_K" sanitizer --tool racecheck $SANITIZER_FLAGS "$PY" -m pytest -q -p no:cacheprovider
}

e2e() {
  local log
  log=$(mktemp)
  TRITON_INTERPRET=0 "$PY" bench/bench_e2e.py --device cuda "${E2E_ARGS[@]}" 2>&1 | tee "$log" || return 1
  # NB: bench_e2e reports a configuration that failed and goes on to the next, exiting 0.
  ! grep -q '}: failed$' "$log" || { echo "a configuration failed (above)"; return 1; }
}

latency() {
  TRITON_INTERPRET=0 "$PY" bench/bench_latency.py --device cuda "${LATENCY_ARGS[@]}"
}

# The frame function exported as a CUDA AOTInductor package and run (Engine.from_package),
# frame by frame against the eager fast engine.
package() {
  TRITON_INTERPRET=0 "$PY" -m pytest -q -p no:cacheprovider tests/engine/test_package.py -k "$PACKAGE_K"
}

# cpu mode: the shell machinery itself (a timeout, a failure, a success; the argument checks).
selftest() {
  local got
  got=$( (part t-timeout 1 sleep 5; part t-fail 5 false; part t-ok 5 true; printf '%s\n' "${SUMMARY[@]}"; echo "failed=$failed") 2>&1)
  grep -q '^t-timeout .*TIMED OUT after 1 s' <<<"$got" && grep -q '^t-fail .*FAILED (exit 1)' <<<"$got" \
    && grep -q '^t-ok .*ok' <<<"$got" && grep -q '^failed=1' <<<"$got" || { echo "$got"; echo "part(): wrong statuses"; return 1; }
  bash "$ROOT/bench/gpu_check.sh" nonsense >/dev/null 2>&1; [[ $? == 2 ]] || { echo "an unknown part must exit 2"; return 1; }
  bash "$ROOT/bench/gpu_check.sh" cpu nonsense >/dev/null 2>&1; [[ $? == 2 ]] || { echo "an unknown cpu part must exit 2"; return 1; }
  bash "$ROOT/bench/gpu_check.sh" --help | grep -q "bench/gpu_check.sh cpu" || { echo "--help"; return 1; }
  bash "$ROOT/bench/gpu_check.sh" cpu --out >/dev/null 2>&1; [[ $? == 2 ]] || { echo "--out without a folder must exit 2"; return 1; }
  echo "timeouts, statuses and arguments: ok"
}

# cpu mode: every module of the package and the bench scripts the GPU parts run, imported with
# TRITON_INTERPRET=0 as there. A module that needs what only the CLI needs (Pillow,
# pycocotools, Ray, OpenVINO), or the extension (not built here), is listed, not failed.
imports() {
  TRITON_INTERPRET=0 "$PY" - <<'EOF'
import importlib, pkgutil, sys
import visolo_fast
sys.path.insert(0, "bench")
optional = {"PIL", "pycocotools", "ray", "openvino", "visolo_fast._C"}
# NB: not __main__, whose import runs the CLI (and exits, which ended this check early)
names = [m.name for m in pkgutil.walk_packages(visolo_fast.__path__, "visolo_fast.")
         if m.name != "visolo_fast._C" and not m.name.endswith(".__main__")]
names += ["common", "bench_e2e", "bench_latency"]
bad, skipped = [], 0
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as e:
        if (e.name or "").split(".")[0] in optional or e.name in optional:
            print(f"  {name}: not imported here, needs {e.name} (the GPU parts do not import it)")
            skipped += 1
        else:
            bad.append(f"{name}: {e!r}")
    except Exception as e:  # noqa: BLE001 -- an API this torch/triton lacks raises anything at import
        bad.append(f"{name}: {e!r}")
print(f"{len(names) - len(bad) - skipped} of {len(names)} modules imported, {skipped} left out, {len(bad)} failed")
sys.exit("\n".join(bad) or None)
EOF
}

# cpu mode: every op test module imports, and each selection of the GPU parts collects tests
# (ids as on a GPU: with TRITON_INTERPRET=0 the Triton cases are "triton-cuda").
collect() {
  TRITON_INTERPRET=0 "$PY" -m pytest --collect-only -q -p no:cacheprovider tests/ops | tail -1 || return 1
  local k
  for k in "$TESTS_K" "$MEMCHECK_K" "$RACECHECK_K"; do
    echo -n "-k \"$k\": "
    TRITON_INTERPRET=0 "$PY" -m pytest --collect-only -q -p no:cacheprovider tests/ops -k "$k" | tail -1 || return 1
  done
  echo -n "package, -k \"$PACKAGE_K\": "
  TRITON_INTERPRET=0 "$PY" -m pytest --collect-only -q -p no:cacheprovider tests/engine/test_package.py -k "$PACKAGE_K" \
    | tail -1 || return 1
}

# cpu mode: every option the GPU parts pass is one the bench scripts have.
options() {
  local script opt help rc=0
  for script in bench_e2e bench_latency; do
    help=$("$PY" "bench/$script.py" --help) || { echo "$script --help failed"; return 1; }
    local -n args=$([[ $script == bench_e2e ]] && echo E2E_ARGS || echo LATENCY_ARGS)
    for opt in --device "${args[@]}"; do
      [[ $opt == --* ]] || continue
      grep -q -- "$opt\b" <<<"$help" || { echo "$script has no option $opt (bench/gpu_check.sh passes it)"; rc=1; }
    done
    echo "$script: options ok (${args[*]})"
  done
  return $rc
}

# cpu mode: the benchmarks' code paths, tiny, on the CPU, from a copy of bench/ so that their
# rows go to a temporary results folder, not to bench/results.
bench_cpu() {
  local tmp rc=0
  tmp=$(mktemp -d)
  cp bench/*.py "$tmp/"
  ( cd "$tmp" && TRITON_INTERPRET=0 "$PY" bench_e2e.py --device cpu --videos crowd --frames 4 --dtypes float32 --streams 0 2>&1 \
      | tee e2e.log ) || rc=1
  ! grep -q '}: failed$' "$tmp/e2e.log" || { echo "bench_e2e: a configuration failed (above)"; rc=1; }
  ( cd "$tmp" && TRITON_INTERPRET=0 "$PY" bench_latency.py --device cpu --video crowd --frames 2 ) || rc=1
  rm -rf "$tmp"
  return $rc
}

# cpu mode: the extension's C++ sources against this torch's headers (syntax and templates,
# no code generation), two at a time; the CUDA sources need nvcc and minutes: not here.
cxx_syntax() {
  local flags
  flags=$("$PY" - <<'EOF'
import sysconfig, torch
from torch.utils import cpp_extension
inc = cpp_extension.include_paths() + [sysconfig.get_paths()["include"], "."]
abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
print(" ".join([f"-I{p}" for p in inc] + ["-std=c++17", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
      "-DPy_LIMITED_API=0x030B0000", "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C"]))
EOF
) || return 1
  # shellcheck disable=SC2086
  ls csrc/*.cpp csrc/python/module.cpp | xargs -P 2 -I{} sh -c 'g++ -fsyntax-only '"$flags"' {} && echo "  {}: ok"'
}

# ---- the machinery ----

SUMMARY=()
failed=0
# part NAME LIMIT CMD...: runs CMD under timeout, prints and records its status and duration.
part() {
  local name=$1 limit=$2 start=$SECONDS rc status
  shift 2
  printf '\n==== %s (limit %s s)\n' "$name" "$limit"
  # NB: timeout signals the whole process group (no --foreground): the bench workers and the
  # sanitizer's target go too. -k: KILL 10 s after TERM, for what ignores TERM.
  timeout -k 10 "$limit" "$@"
  rc=$?
  if ((rc == 0)); then
    status=ok
  elif ((rc == 124 || rc == 137)); then
    status="TIMED OUT after $limit s"
  else
    status="FAILED (exit $rc)"
  fi
  ((rc == 0)) || failed=1
  printf -- '---- %s: %s, %d s\n' "$name" "$status" $((SECONDS - start))
  SUMMARY+=("$(printf '%-11s %-22s %4d s (limit %d s)' "$name" "$status" $((SECONDS - start)) "$limit")")
}

export MODE=$mode TESTS_K MEMCHECK_K RACECHECK_K PACKAGE_K SANITIZER_FLAGS
export -f machine sanitizer per_file build tests memcheck racecheck e2e latency package imports collect options bench_cpu \
  cxx_syntax
export E2E_ARGS_STR="${E2E_ARGS[*]}" LATENCY_ARGS_STR="${LATENCY_ARGS[*]}"

if [[ $mode == gpu ]]; then
  device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  report_dir=${out:-bench/results}
else
  device=cpu
  report_dir=${out:-$(mktemp -d)}
fi
slug=$(tr -c 'A-Za-z0-9.\n-' '_' <<<"${device:-no-gpu}" | tr -s _ | sed 's/_$//')
mkdir -p "$report_dir"
# Named by date and device, and by the parts when not all of them ran.
args="$*"
suffix=${args:+-${args// /-}}
[[ $mode == cpu ]] && suffix=${suffix#-cpu}
report="$report_dir/gpu_check-$(date -u +%Y%m%d-%H%M)-$slug$suffix.txt"

exec 3>&1 4>&2
exec > >(tee "$report") 2>&1
tee_pid=$!
echo "bash bench/gpu_check.sh ${*:-}  ($mode mode; python: $PY)"
started=$SECONDS
for p in "${parts[@]}"; do
  fn=${p//-/_}
  if [[ $mode == gpu ]]; then limit=${LIMIT[$p]}; else limit=${CPU_LIMIT[$p]}; fi
  if [[ $p == selftest ]]; then
    part "$p" "$limit" bash -c "$(declare -f part selftest); SUMMARY=(); failed=0; selftest"
  else
    # The arrays do not cross `bash -c`: rebuilt from their strings.
    part "$p" "$limit" bash -c 'set -o pipefail; E2E_ARGS=($E2E_ARGS_STR); LATENCY_ARGS=($LATENCY_ARGS_STR); '"$fn"
  fi
done
printf '\n==== summary: %s mode, %s, %d s in all\n' "$mode" "${device:-no GPU}" $((SECONDS - started))
printf '%s\n' "${SUMMARY[@]}"
echo "exit status $failed; report: $report"
if [[ $mode == gpu && $(realpath "$report_dir") != $(realpath bench/results) ]]; then
  # the benchmark rows next to the report, so that the --out folder holds the whole run
  for f in bench/results/e2e.csv bench/results/latency.csv; do
    [[ -e $f ]] && cp "$f" "$report_dir/" && echo "copied $f to $report_dir/"
  done
fi
exec 1>&3 2>&4 3>&- 4>&-
wait "$tee_pid"
exit $failed
