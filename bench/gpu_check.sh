#!/usr/bin/env bash
# What only a GPU can tell (for the `device` tool's machines):
#   bash bench/gpu_check.sh [build] [tests] [sanitizer] [bench]     (default: all four)
# builds the extension for the local GPU, runs the whole test suite with compiled Triton
# kernels (TRITON_INTERPRET=0) and the CUDA kernels, runs compute-sanitizer over the op
# tests, and runs every benchmark on the GPU (the op benchmarks, scripts and pytest-benchmark
# microbenchmarks; bench_e2e.py: the engines end to end, float32/bfloat16/float16, CUDA
# graphs, 8 streams; bench_latency.py; bench_precision.py).
# A device command may run 10 minutes at most: run the parts one call each, build first
# (the machine keeps the build between calls while it stays warm). The report goes to
# ${OUT:-bench/results}/gpu_check-<date>-<parts>.txt (commit it under bench/results/).
# Uses the machine's own torch (no network there): nothing is pip-installed but the package.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
parts=${*:-build tests sanitizer bench}
want() { [[ " $parts " == *" $1 "* ]]; }
report="$out/gpu_check-$(date -u +%Y%m%d-%H%M)-${parts// /-}.txt"
status=0
step() { echo; echo "== $*"; }
run() { "$@" || { echo "!! failed ($?): $*"; status=1; }; }
{
  step "machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  git rev-parse --short HEAD
  if want build; then
    step "build (local arch)"
    arch=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
    run env TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=16 pip install -q --no-build-isolation --no-deps -e .
  fi
  if want tests; then
    step "tests, compiled Triton and CUDA"
    run env TRITON_INTERPRET=0 python -m pytest -q -p no:cacheprovider tests
  fi
  if want sanitizer; then
    step "compute-sanitizer on the op tests (CUDA backend)"
    run env TRITON_INTERPRET=0 compute-sanitizer --tool memcheck --error-exitcode 9 \
        python -m pytest -q -p no:cacheprovider tests/ops -k cuda
  fi
  if want bench; then
    step "benchmarks"
    for b in bench/bench_*.py; do run python "$b" --device cuda; done
    run env TRITON_INTERPRET=0 python -m pytest -q -p no:cacheprovider bench/ --benchmark-only \
        --benchmark-json "$out/microbench-$(date -u +%Y%m%d-%H%M).json"
  fi
  step "exit status $status"
} 2>&1 | tee "$report"
echo "report: $report"
exit $status
