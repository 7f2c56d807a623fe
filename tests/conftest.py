import os

# NB: Triton reads TRITON_INTERPRET when a @triton.jit kernel is defined, so this must be
# set before any visolo_fast.triton module is imported; with it, backend="triton" runs
# on CPU tensors. On a GPU machine, run with TRITON_INTERPRET=0 to test compiled kernels.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from visolo_fast import backends  # noqa: E402

TRITON_DEVICE = "cpu" if backends.triton_interpreted() else "cuda"

# (backend, device) pairs every op test runs; each op's tests compare them with the
# float64 reference on the CPU.
BACKEND_DEVICES = [
    pytest.param("reference", "cpu", id="reference-cpu"),
    pytest.param("cpp", "cpu", id="cpp-cpu"),
    pytest.param("triton", TRITON_DEVICE, id=f"triton-{TRITON_DEVICE}"),
    pytest.param("cuda", "cuda", id="cuda-cuda"),
]


def require_backend(backend: str, device: str, op: str | None = None) -> None:
    """Skips, saying why, when there is no GPU for a GPU case: the only skip the tests
    allow. A backend that should run here but cannot (say, the extension is not built)
    fails the test: CI builds everything."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU on this machine")
    reason = backends.why_unavailable(backend, torch.device(device), op)
    if reason is not None:
        pytest.fail(f"backend {backend!r} should be available here: {reason}")


def run_with_cpu_capability(capability: str, code: str, tmp_path) -> dict:
    """Runs ``code`` in a fresh Python with ATEN_CPU_CAPABILITY=capability (the CPU
    implementations then take the vector paths ATen would, e.g. none for "default");
    ``code`` fills a dict ``out`` of tensors, which is returned."""
    import subprocess
    import sys

    path = tmp_path / f"out-{capability}.pt"
    script = f"import torch\nout = {{}}\n{code}\ntorch.save(out, {str(path)!r})\n"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return torch.load(path)


def require_cpu_flag(flag: str, capability: str = "AVX512") -> None:
    """Skips, saying why, a test of a vector path this CPU does not have (or that
    ATEN_CPU_CAPABILITY turned off: the ops take a path only within ATen's capability,
    DEFAULT < AVX2 < AVX512): it would compare the generic path with itself."""
    import platform

    flags = open("/proc/cpuinfo").read().split() if platform.system() == "Linux" else []
    order = ["DEFAULT", "AVX2", "AVX512"]
    if flag not in flags or order.index(torch.backends.cpu.get_cpu_capability()) < order.index(capability):
        pytest.skip(f"this CPU (or ATEN_CPU_CAPABILITY) has no {flag}: only the generic path runs here")
