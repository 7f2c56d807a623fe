"""How the Triton launchers start their kernels (shared by visolo_fast/triton/*.py)."""

from __future__ import annotations

from torch._subclasses.fake_tensor import FakeTensor
from torch.library import wrap_triton


def launch(kernel, grid, *args, **meta) -> None:
    """``wrap_triton(kernel)[grid](*args, **meta)``, except on fake tensors.

    A launcher is its ``triton_op``'s fake as well (triton_op's default: the launcher run
    on fake tensors, which allocates the outputs), so the ops register no other fake.
    NB: under TRITON_INTERPRET=1 the interpreter would run the kernel on those fake
    tensors and fail; there is nothing to compute for a fake anyway. Only a plain
    FakeTensor is skipped: when torch.compile traces the launcher, the arguments are
    functional tensors and the launch is recorded as usual.
    """
    if any(isinstance(a, FakeTensor) for a in args):
        return
    wrap_triton(kernel)[grid](*args, **meta)
