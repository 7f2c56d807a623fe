"""Triton kernel of :func:`visolo_fast.ops.dynamic_masks`: the low-resolution product by
``torch.matmul`` (cuBLAS), then one kernel for the x4 upsample, the sigmoid, the
threshold and the per-block reductions (the math of ``kernels/dynamic_masks.cuh``).

Imported on first use (by :mod:`visolo_fast.ops.dynamic_masks`, which checks the
inputs), so that ``TRITON_INTERPRET`` is read when the caller asks for the Triton
backend, not when visolo_fast is imported.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast._common import opmath_dtype
from visolo_fast.triton.bilinear import bilinear_taps
from visolo_fast.triton.launch import launch

BLOCK = 2048


@triton.jit
def _dynamic_masks_kernel(
    logits_ptr,  # [M, h, w] contiguous, float32 or float64
    masks_ptr,  # [M, 4h, 4w] bool
    part_area_ptr,  # [M, NB] int64
    part_sum_ptr,  # [M, NB] float64
    h,
    w,
    cut,  # logit(threshold)
    NB,
    BLOCK: tl.constexpr,
):
    m = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    W = 4 * w
    pixels = 4 * h * W
    offs = b * BLOCK + tl.arange(0, BLOCK)
    inside = offs < pixels
    y = offs // W
    x = offs % W
    y0, y1, wy0, wy1 = bilinear_taps(y, h, 0.25)
    x0, x1, wx0, wx1 = bilinear_taps(x, w, 0.25)
    base = logits_ptr + m * h * w
    # NB: every access masked: an unmasked load past the map is not caught by the interpreter.
    a = tl.load(base + y0 * w + x0, mask=inside, other=0.0)
    bb = tl.load(base + y0 * w + x1, mask=inside, other=0.0)
    c = tl.load(base + y1 * w + x0, mask=inside, other=0.0)
    d = tl.load(base + y1 * w + x1, mask=inside, other=0.0)
    dt = a.dtype
    v = wy0.to(dt) * (wx0.to(dt) * a + wx1.to(dt) * bb) + wy1.to(dt) * (wx0.to(dt) * c + wx1.to(dt) * d)
    on = (v > cut) & inside
    p = tl.where(on, 1.0 / (1.0 + tl.exp(-v)), 0.0)
    tl.store(masks_ptr + m * pixels + offs, on, mask=inside)
    tl.store(part_area_ptr + m * NB + b, tl.sum(on.to(tl.int64), axis=0))
    tl.store(part_sum_ptr + m * NB + b, tl.sum(p.to(tl.float64), axis=0))


def _cut_for(threshold: float) -> float:
    """logit(threshold), as kernels/dynamic_masks.cuh's cut_for: a mask bit is ``logit > cut``,
    and the sigmoid is only taken inside the mask."""
    if not threshold > 0:
        return -math.inf
    if not threshold < 1:
        return math.inf
    return math.log(threshold / (1 - threshold))


@triton_op("visolo_fast::dynamic_masks_triton", mutates_args=())
def dynamic_masks_triton(features: torch.Tensor, kernels: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton dynamic_masks; see :func:`visolo_fast.ops.dynamic_masks`."""
    h, w = features.shape[-2:]
    # The low-resolution logits by a library GEMM (cuBLAS), in the op's compute dtype: [M, h, w].
    dtype = opmath_dtype(features.dtype, kernels.dtype)
    logits = torch.matmul(kernels.to(dtype), features.to(dtype).flatten(-2)).reshape(-1, h, w).contiguous()
    lead = tuple(kernels.shape[:-1])
    M = logits.shape[0]
    masks = torch.empty((*lead, 4 * h, 4 * w), dtype=torch.bool, device=logits.device)
    if M == 0:
        return masks, torch.zeros(lead, dtype=torch.int64, device=logits.device), logits.new_zeros(lead)
    NB = triton.cdiv(16 * h * w, BLOCK)
    part_area = torch.empty((M, NB), dtype=torch.int64, device=logits.device)
    part_sum = torch.empty((M, NB), dtype=torch.float64, device=logits.device)
    launch(_dynamic_masks_kernel, (M, NB), logits, masks, part_area, part_sum, h, w, _cut_for(threshold), NB, BLOCK=BLOCK)
    areas = part_area.sum(1)
    # NB: 0 / 0 = NaN for an empty mask, as the official code.
    quality = (part_sum.sum(1) / areas.double()).to(logits.dtype)
    return masks, areas.reshape(lead), quality.reshape(lead)

