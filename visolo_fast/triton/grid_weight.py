"""Triton kernel of :func:`visolo_fast.ops.grid_weight`: a program takes a block of query
grids, and for each earlier frame walks its grids in blocks keeping the best logit;
the sigmoid is taken of the maxima only (kernels/grid_weight.cuh). Imported on first use
by :mod:`visolo_fast.ops.grid_weight`, which checks the inputs."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast.ops._common import opmath_dtype
from visolo_fast.triton.launch import launch

BLOCK_S = 16
BLOCK_N = 64


@triton.jit
def _grid_weight_kernel(q_ptr, k_ptr, o_ptr, S, E, S2, D, BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_D: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    acc_t = o_ptr.dtype.element_ty  # the output is in the op's compute dtype
    q = tl.load(q_ptr + (b * S + rows[:, None]) * D + d[None, :], mask=(rows[:, None] < S) & (d[None, :] < D),
                other=0.0).to(acc_t)
    total = tl.zeros((BLOCK_S,), dtype=acc_t)
    for e in range(0, E):
        best = tl.full((BLOCK_S,), float("-inf"), dtype=acc_t)
        for start in range(0, S2, BLOCK_N):
            keys = start + tl.arange(0, BLOCK_N)
            k = tl.load(k_ptr + ((b * E + e) * S2 + keys[:, None]) * D + d[None, :],
                        mask=(keys[:, None] < S2) & (d[None, :] < D), other=0.0).to(acc_t)
            # NB: an exact float32/64 product (broadcast and sum), as small as this op is
            logits = tl.sum(q[:, None, :] * k[None, :, :], axis=2)
            logits = tl.where(keys[None, :] < S2, logits, float("-inf"))
            nans = tl.sum((logits != logits).to(tl.int32), axis=1)
            part = tl.where(nans > 0, float("nan"), tl.max(tl.where(logits != logits, float("-inf"), logits), axis=1))
            best = tl.where((best != best) | (part != part) | (part > best), tl.where(best != best, best, part), best)
        total += 1.0 / (1.0 + tl.exp(-best))
    tl.store(o_ptr + b * S + rows, total / E, mask=rows < S)


@triton_op("visolo_fast::grid_weight_triton", mutates_args=())
def grid_weight_triton(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Triton grid_weight; see :func:`visolo_fast.ops.grid_weight`."""
    B, S, D = query.shape
    E, S2 = keys.shape[1], keys.shape[2]
    out = torch.empty((B, S), dtype=opmath_dtype(query.dtype), device=query.device)
    if out.numel():
        launch(_grid_weight_kernel, (triton.cdiv(S, BLOCK_S), B), query.contiguous(), keys.contiguous(), out, S, E, S2, D,
               BLOCK_S=BLOCK_S, BLOCK_N=BLOCK_N, BLOCK_D=max(16, triton.next_power_of_2(D)))
    return out

