"""Triton kernel of :func:`visolo_fast.ops.mask_intersections`: 0/1 tiles multiplied
with float32 accumulation (tensor cores on a GPU; exact up to 2^24 pixels), the bool
masks converted in registers, never copied. Imported on first use by
:mod:`visolo_fast.ops.mask_intersections`, which checks the inputs."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast.triton.launch import launch

BLOCK_K = 32  # masks per tile side (tl.dot needs at least 16)
BLOCK_N = 256  # pixels per step


@triton.jit
def _mask_intersections_kernel(
    masks_ptr,  # [K, n] bool
    inter_ptr,  # [K, K] int64
    K,
    n,
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    bi = tl.program_id(0)
    bj = tl.program_id(1)
    rows = bi * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = bj * BLOCK_K + tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_K, BLOCK_K), dtype=tl.float32)
    for start in range(0, n, BLOCK_N):
        p = start + tl.arange(0, BLOCK_N)
        a = tl.load(masks_ptr + rows[:, None].to(tl.int64) * n + p[None, :], mask=(rows[:, None] < K) & (p[None, :] < n),
                    other=0)
        b = tl.load(masks_ptr + cols[:, None].to(tl.int64) * n + p[None, :], mask=(cols[:, None] < K) & (p[None, :] < n),
                    other=0)
        # NB: float16 0/1 operands (bfloat16 tl.dot is wrong in the interpreter); exact sums in float32.
        acc += tl.dot(a.to(tl.float16), tl.trans(b.to(tl.float16)), out_dtype=tl.float32)
    tl.store(inter_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], acc.to(tl.int64),
             mask=(rows[:, None] < K) & (cols[None, :] < K))


@triton_op("visolo_fast::mask_intersections_triton", mutates_args=())
def mask_intersections_triton(masks: torch.Tensor) -> torch.Tensor:
    """Triton mask_intersections; see :func:`visolo_fast.ops.mask_intersections`."""
    K = masks.shape[0]
    flat = masks.flatten(1).contiguous()
    n = flat.shape[1]
    inter = torch.zeros((K, K), dtype=torch.int64, device=masks.device)
    if K and n:
        if n >= 2**24:
            raise ValueError(f"mask_intersections: the Triton backend counts exactly up to 2^24 pixels per mask, got {n}")
        grid = (triton.cdiv(K, BLOCK_K), triton.cdiv(K, BLOCK_K))
        launch(_mask_intersections_kernel, grid, flat, inter, K, n, BLOCK_K=BLOCK_K, BLOCK_N=BLOCK_N)
    return inter

