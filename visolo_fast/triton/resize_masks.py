"""Triton kernel of :func:`visolo_fast.ops.resize_masks` (the math of
``kernels/resize_masks.cuh``). Imported on first use by :mod:`visolo_fast.ops.resize_masks`,
which checks the inputs."""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast.triton.bilinear import bilinear_taps
from visolo_fast.triton.launch import launch

BLOCK = 2048


@triton.jit
def _resize_masks_kernel(
    masks_ptr,  # [K, H, W] bool
    out_ptr,  # [K, Ho, Wo] bool
    numel,
    H,
    W,
    Ho,
    Wo,
    sy,  # H / Ho in float32
    sx,  # W / Wo in float32
    threshold,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < numel
    x = offs % Wo
    y = (offs // Wo) % Ho
    k = offs // (Wo * Ho)
    y0, y1, wy0, wy1 = bilinear_taps(y, H, sy)
    x0, x1, wx0, wx1 = bilinear_taps(x, W, sx)
    base = masks_ptr + k * H * W
    a = tl.load(base + y0 * W + x0, mask=inside, other=0).to(tl.float32)
    b = tl.load(base + y0 * W + x1, mask=inside, other=0).to(tl.float32)
    c = tl.load(base + y1 * W + x0, mask=inside, other=0).to(tl.float32)
    d = tl.load(base + y1 * W + x1, mask=inside, other=0).to(tl.float32)
    v = wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d)
    tl.store(out_ptr + offs, v >= threshold, mask=inside)


@triton_op("visolo_fast::resize_masks_triton", mutates_args=())
def resize_masks_triton(masks: torch.Tensor, size: list[int], threshold: float) -> torch.Tensor:
    """Triton resize_masks; see :func:`visolo_fast.ops.resize_masks`."""
    Ho, Wo = size
    masks = masks.contiguous()
    K, H, W = masks.shape
    out = torch.empty((K, Ho, Wo), dtype=torch.bool, device=masks.device)
    numel = out.numel()
    if numel:
        # NB: a float32 division, as PyTorch's upsample computes its scales.
        sy, sx = float(np.float32(H) / np.float32(Ho)), float(np.float32(W) / np.float32(Wo))
        launch(_resize_masks_kernel, (triton.cdiv(numel, BLOCK),), masks, out, numel, H, W, Ho, Wo, sy, sx, threshold,
               BLOCK=BLOCK)
    return out

