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
