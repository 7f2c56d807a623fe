#!/usr/bin/env bash
# What only a GPU can tell, in one command (for the `device` tool's machines):
#   bash bench/gpu_check.sh
# builds the extension for the local GPU, runs the whole test suite with compiled Triton
# kernels (TRITON_INTERPRET=0) and the CUDA kernels, runs compute-sanitizer over the op
# tests, and runs every op benchmark on the GPU. The report goes to
# ${OUT:-bench/results}/gpu_check-<date>.txt (commit it under bench/results/).
# Uses the machine's own torch (no network there): nothing is pip-installed but the package.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
report="$out/gpu_check-$(date -u +%Y%m%d-%H%M).txt"
status=0
step() { echo; echo "== $*"; }
run() { "$@" || { echo "!! failed ($?): $*"; status=1; }; }
{
  step "machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  git rev-parse --short HEAD
  step "build (local arch)"
  arch=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  run env TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=16 pip install -q --no-build-isolation --no-deps -e .
  step "tests, compiled Triton and CUDA"
  run env TRITON_INTERPRET=0 python -m pytest -q -p no:cacheprovider tests
  step "compute-sanitizer on the op tests (CUDA backend)"
  run env TRITON_INTERPRET=0 compute-sanitizer --tool memcheck --error-exitcode 9 \
      python -m pytest -q -p no:cacheprovider tests/ops -k cuda
  step "op benchmarks"
  for b in bench/bench_*.py; do run python "$b" --device cuda; done
  step "exit status $status"
} 2>&1 | tee "$report"
echo "report: $report"
exit $status
