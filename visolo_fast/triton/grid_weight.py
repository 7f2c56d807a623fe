"""Triton kernel of :func:`visolo_fast.ops.grid_weight`: a program takes a block of query
grids, and for each earlier frame walks its grids in blocks keeping the best logit;
the sigmoid is taken of the maxima only (kernels/grid_weight.cuh). Imported on first use
by :mod:`visolo_fast.ops.grid_weight`, which checks the inputs.

NB: the logits of a block are summed over D in chunks of BLOCK_D, so that a program holds
[BLOCK_S, BLOCK_D] and [BLOCK_N, BLOCK_D] operands, never [.., D] rows: a [16, 64, 128]
broadcast product per program spilled 55 KB a thread and kept ptxas busy for minutes
(bench/gpu_resources.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast._common import opmath_dtype
from visolo_fast.triton.launch import launch

BLOCK_S = 16
BLOCK_N = 64
BLOCK_D = 16


@triton.jit
def _grid_weight_kernel(
    q_ptr,  # [B, S, D] contiguous
    k_ptr,  # [B, E, S2, D] contiguous
    o_ptr,  # [B, S] contiguous, float32 (float64 for float64 inputs)
    S,
    E,
    S2,
    D,
    BLOCK_S: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_F32: tl.constexpr,  # float32 tl.dot operands (float32 inputs)
    F64: tl.constexpr,
):
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    acc_t = o_ptr.dtype.element_ty
    total = tl.zeros((BLOCK_S,), dtype=acc_t)
    for e in range(0, E):
        best = tl.full((BLOCK_S,), float("-inf"), dtype=acc_t)
        for start in range(0, S2, BLOCK_N):
            keys = start + tl.arange(0, BLOCK_N)
            logits = tl.zeros((BLOCK_S, BLOCK_N), dtype=acc_t)
            for d0 in range(0, D, BLOCK_D):
                d = d0 + tl.arange(0, BLOCK_D)
                q = tl.load(q_ptr + (b * S + rows[:, None]) * D + d[None, :], mask=(rows[:, None] < S) & (d[None, :] < D),
                            other=0.0)
                k = tl.load(k_ptr + ((b * E + e) * S2 + keys[:, None]) * D + d[None, :],
                            mask=(keys[:, None] < S2) & (d[None, :] < D), other=0.0)
                if F64:
                    # NB: no float64 tl.dot: a broadcast product, in narrow blocks (see the launcher)
                    logits += tl.sum(q.to(acc_t)[:, None, :] * k.to(acc_t)[None, :, :], axis=2)
                elif DOT_F32:
                    # NB: "ieee": the GPU default for float32, TF32, loses 3 digits
                    logits = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), logits, input_precision="ieee")
                else:
                    logits = tl.dot(q, tl.trans(k), logits)  # exact half products, float32 sums
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
        f64 = query.dtype == torch.float64
        dot_f32 = query.dtype == torch.float32
        # NB: float64's broadcast product takes [BLOCK_S, BLOCK_N, BLOCK_D] registers: narrower key blocks.
        launch(_grid_weight_kernel, (triton.cdiv(S, BLOCK_S), B), query.contiguous(), keys.contiguous(), out, S, E, S2, D,
               BLOCK_S=BLOCK_S, BLOCK_N=16 if f64 else BLOCK_N, BLOCK_D=min(BLOCK_D, max(16, triton.next_power_of_2(D))),
               DOT_F32=dot_f32, F64=f64)
    return out
