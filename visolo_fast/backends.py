"""The one place where a backend is chosen.

Every op and the model take ``backend="auto" | "reference" | "triton" | "cpp" | "cuda"``:

- ``reference``: plain PyTorch, always available, the oracle of the tests;
- ``cpp``: the C++ CPU implementation in the compiled extension ``visolo_fast._C``;
- ``cuda``: the CUDA C++ implementation in the same extension (built when the
  installed torch has CUDA and a CUDA toolkit was found at build time);
- ``triton``: the Triton kernels, on CUDA tensors, or on CPU tensors through
  Triton's interpreter when ``TRITON_INTERPRET=1`` was set before Triton was imported;
- ``auto``: the fastest backend the op has that is available for the tensors'
  device (``cuda`` then ``triton`` on a GPU, ``cpp`` on the CPU), else ``reference``.

Asking for a backend that cannot run raises :class:`BackendUnavailable`, which
says what is missing and how to get it. Nothing is swapped at import time.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import torch

BACKENDS = ("auto", "reference", "triton", "cpp", "cuda")
BUILD_HINT = "build it with `pip install --no-build-isolation -e .` in the repository (needs g++ and ninja)"


class BackendUnavailable(RuntimeError):
    """A backend was asked for that cannot run here; the message says why and how to fix it.

    Attributes:
        op: the op that asked for it.
        backend: the backend asked for (``cpp``, ``cuda``, ``triton``).
        reason: why it cannot run, and how to fix it: the message without the op's name.
        implemented: False when the op has no implementation for that backend at all (no
            build or device would help), True when it has one that cannot run here.
    """

    def __init__(self, op: str, backend: str, reason: str, implemented: bool = True):
        self.op, self.backend, self.reason, self.implemented = op, backend, reason, implemented
        state = "is unavailable: " if implemented else "is "
        super().__init__(f"{op}: backend {backend!r} {state}{reason}")

    def __reduce__(self):  # NB: pickled with its fields (Ray hands a worker's exceptions back), not the message
        return type(self), (self.op, self.backend, self.reason, self.implemented)


@functools.cache
def _extension_error() -> str | None:
    """Imports visolo_fast._C (which registers the C++/CUDA ops); returns why it failed, or None."""
    try:
        importlib.import_module("visolo_fast._C")
    except ImportError as exc:
        return f"the compiled extension visolo_fast._C is not importable ({exc})"
    return None


def extension_loaded() -> bool:
    return _extension_error() is None


def _has_kernel(op: str, dispatch_key: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"visolo_fast::{op}", dispatch_key)
    except RuntimeError:  # the op is not registered at all: an extension built before it existed
        return False


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def why_unavailable(backend: str, device: torch.device, op: str | None = None) -> str | None:
    """Why ``backend`` cannot run ``op`` (any op if None) on ``device``; None if it can."""
    if backend not in BACKENDS or backend == "auto":
        raise ValueError(f"backend must be one of {BACKENDS[1:]}, got {backend!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        return "no GPU is visible to torch"
    if backend == "reference":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"backend 'cpp' runs on CPU tensors, got tensors on {device}; use 'cuda' or 'triton' on a GPU"
        if _extension_error() is not None:
            return f"{_extension_error()}; {BUILD_HINT}"
        if op is not None and not _has_kernel(op, "CPU"):
            return f"visolo_fast._C has no CPU kernel for {op}: rebuild it ({BUILD_HINT})"
        return None
    if backend == "cuda":
        if device.type != "cuda":
            return f"backend 'cuda' runs on CUDA tensors, got tensors on {device}; use 'cpp' on the CPU"
        if _extension_error() is not None:
            return f"{_extension_error()}; {BUILD_HINT}"
        if op is not None and not _has_kernel(op, "CUDA"):
            return (
                f"visolo_fast._C was built without CUDA kernels (no CUDA toolkit found, a CPU-only torch, "
                f"or VISOLO_FAST_WITH_CUDA=0): install a CUDA build of torch, set CUDA_HOME and rebuild ({BUILD_HINT})"
            )
        return None
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed: `pip install triton` (it comes with CUDA builds of torch)"
        if device.type == "cpu" and not triton_interpreted():
            return (
                "backend 'triton' on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
                "in the environment before importing visolo_fast (it is slow: for tests)"
            )
        if device.type not in ("cpu", "cuda"):
            return f"backend 'triton' runs on CUDA tensors (or CPU tensors when interpreted), got {device}"
    return None


# NB: evaluated once while torch.compile traces (the answer only depends on the arguments
# and on this process's build), so ops stay traceable with fullgraph=True.
@torch.compiler.assume_constant_result
def resolve(backend: str, device: torch.device, op: str, implemented: tuple[str, ...]) -> str:
    """The concrete backend to run ``op`` with.

    Args:
        backend: what the caller asked for, one of :data:`BACKENDS`.
        device: the device of the op's tensors.
        op: the op's name, for messages and the extension's kernel lookup.
        implemented: the op's compiled backends, fastest first (``reference`` is implied).
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        for candidate in implemented:
            # The interpreter is a correctness tool, far slower than the reference: never chosen by auto.
            if candidate == "triton" and device.type != "cuda":
                continue
            if why_unavailable(candidate, device, op) is None:
                return candidate
        return "reference"
    if backend != "reference" and backend not in implemented:
        raise BackendUnavailable(op, backend, f"not implemented for this op (it has {('reference',) + implemented})",
                                 implemented=False)
    reason = why_unavailable(backend, device, op)
    if reason is not None:
        raise BackendUnavailable(op, backend, reason)
    return backend


def available_backends(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """For each concrete backend, None if it can run on ``device``, else why not."""
    device = torch.device(device)
    return {b: why_unavailable(b, device) for b in BACKENDS if b != "auto"}
