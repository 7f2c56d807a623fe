"""How the Triton launchers start their kernels (shared by visolo_fast/triton/*.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.library import wrap_triton
from triton.runtime.interpreter import InterpretedFunction

_recorded: list[Launch] | None = None


@dataclass(frozen=True)
class TensorArg:
    """What Triton's specialization reads of a tensor argument: its dtype and its address
    (pointers divisible by 16 compile to other code), without the tensor's memory."""

    dtype: torch.dtype
    address: int  # data_ptr() modulo 16

    def data_ptr(self) -> int:
        return self.address


@dataclass(frozen=True)
class Launch:
    """One recorded launch: ``kernel[grid](*args, **meta)``, tensors as :class:`TensorArg`."""

    kernel: Any  # the @triton.jit function
    args: tuple
    meta: dict


@contextlib.contextmanager
def recording() -> Iterator[list[Launch]]:
    """Within the block, :func:`launch` appends each launch to the yielded list and runs
    nothing; for compiling the kernels the ops launch ahead of time, without a GPU
    (bench/gpu_resources.py): the launchers run as usual on CPU tensors up to the launch.
    The launches are those a GPU would get: no launcher decides anything by whether Triton
    is interpreted (see :func:`launch`)."""
    global _recorded
    outer, _recorded = _recorded, []
    try:
        yield _recorded
    finally:
        _recorded = outer


def launch(kernel, grid, *args, **meta) -> None:
    """``wrap_triton(kernel)[grid](*args, **meta)``, except on fake tensors and while :func:`recording`.

    A launcher is its ``triton_op``'s fake as well (triton_op's default: the launcher run
    on fake tensors, which allocates the outputs), so the ops register no other fake.
    NB: under TRITON_INTERPRET=1 the interpreter would run the kernel on those fake
    tensors and fail; there is nothing to compute for a fake anyway. Only a plain
    FakeTensor is skipped: when torch.compile traces the launcher, the arguments are
    functional tensors and the launch is recorded as usual.
    """
    if any(isinstance(a, FakeTensor) for a in args):
        return
    if _recorded is not None:
        _recorded.append(Launch(kernel, tuple(TensorArg(a.dtype, a.data_ptr() % 16) if isinstance(a, torch.Tensor) else a
                                              for a in args), dict(meta)))
        return
    if isinstance(kernel, InterpretedFunction) and any(_is_plain_bfloat16(a) for a in args):
        # NB: the interpreter's bfloat16 tl.dot returns garbage: it runs the kernel (the very
        # variant a GPU compiles) on float32 copies of the bfloat16 tensors, which hold their
        # values exactly, and copies them back (bfloat16 outputs rounded once, to nearest even).
        wide = tuple(torch.empty_strided(a.shape, a.stride(), dtype=torch.float32, device=a.device).copy_(a)
                     if _is_plain_bfloat16(a) else a for a in args)
        wrap_triton(kernel)[grid](*wide, **meta)
        for a, w in zip(args, wide):
            if w is not a:
                a.copy_(w)
        return
    wrap_triton(kernel)[grid](*args, **meta)


def _is_plain_bfloat16(a: Any) -> bool:
    """A bfloat16 tensor of its own (not one that torch.compile traces), contiguous (as the
    launchers pass them): its float32 copy takes the same strides."""
    return type(a) is torch.Tensor and a.dtype == torch.bfloat16 and a.is_contiguous()
