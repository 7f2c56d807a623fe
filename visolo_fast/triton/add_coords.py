"""Triton kernel of :func:`visolo_fast.ops.add_coords`.

Imported on first use, so that ``TRITON_INTERPRET`` is read when the caller
asks for the Triton backend, not when visolo_fast is imported.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from visolo_fast.ops.add_coords import check_input

BLOCK = 1024


@triton.jit
def _add_coords_kernel(
    x_ptr,  # [B, C, H, W] contiguous
    out_ptr,  # [B, C + 2, H, W] contiguous
    numel,
    C,
    H,
    W,
    denom_h,  # max(H - 1, 1)
    denom_w,  # max(W - 1, 1)
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = offs < numel
    w = offs % W
    rest = offs // W
    h = rest % H
    rest = rest // H
    c = rest % (C + 2)
    b = rest // (C + 2)
    is_x = c < C
    # NB: masked on both conditions: an unmasked load past x is not caught by the interpreter.
    xv = tl.load(x_ptr + ((b * C + c) * H + h) * W + w, mask=in_range & is_x, other=0.0)
    # Same double-precision formula as kernels/add_coords.cuh, so Triton and C++ agree bit for bit.
    cy = tl.where(H > 1, -1.0 + (2.0 * h.to(tl.float64)) / denom_h, -1.0)
    cx = tl.where(W > 1, -1.0 + (2.0 * w.to(tl.float64)) / denom_w, -1.0)
    coord = tl.where(c == C, cy, cx)
    if out_ptr.dtype.element_ty != tl.float64:
        coord = coord.to(tl.float32)  # rounded once to float32, as the C++ to_output
    tl.store(out_ptr + offs, tl.where(is_x, xv, coord.to(xv.dtype)), mask=in_range)


@triton_op("visolo_fast::add_coords_triton", mutates_args=())
def add_coords_triton(x: torch.Tensor) -> torch.Tensor:
    """Triton add_coords: x (Tensor[B, C, H, W]) -> Tensor[B, C + 2, H, W]."""
    check_input(x)
    B, C, H, W = x.shape
    x = x.contiguous()
    out = torch.empty((B, C + 2, H, W), dtype=x.dtype, device=x.device)
    numel = out.numel()
    if numel > 0:
        grid = (triton.cdiv(numel, BLOCK),)
        wrap_triton(_add_coords_kernel)[grid](x, out, numel, C, H, W, max(H - 1, 1), max(W - 1, 1), BLOCK=BLOCK)
    return out


@add_coords_triton.register_fake
def _add_coords_triton_fake(x: torch.Tensor) -> torch.Tensor:
    # NB: explicit, although triton_op could trace the launcher: under TRITON_INTERPRET=1
    # that trace runs the interpreter on fake tensors, which fails.
    B, C, H, W = x.shape
    return x.new_empty((B, C + 2, H, W))
