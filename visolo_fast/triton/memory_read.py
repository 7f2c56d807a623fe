"""Triton kernel of :func:`visolo_fast.ops.memory_read`, flash-attention style: a
program takes a block of query grids and a block of value channels (256: VISOLO's
category half or kernel half), walks the keys in blocks with an online softmax (the
S x N affinity never goes to memory), and adds the residual in its epilogue. With
``lengths``, batch element b walks its first lengths[b] keys only.
Imported on first use by :mod:`visolo_fast.ops.memory_read`, which checks the inputs.

NB: a [keys, 512] value tile in float32 would not fit one program's shared memory on
an H100 with pipelining; two programs per query block each take one half, at the cost
of computing the (cheaper, D = 128) logits twice. Not yet measured on a GPU."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast.triton.launch import launch

BLOCK_S = 16
BLOCK_N = 32
MAX_BLOCK_V = 256


@triton.jit
def _memory_read_kernel(
    q_ptr,  # [B, S, D] contiguous
    k_ptr,  # [B, N, D] contiguous
    v_ptr,  # [B, N, V] contiguous
    r_ptr,  # [B, S, V] contiguous
    len_ptr,  # [B] int64 (read if HAS_LENGTHS)
    o_ptr,  # [B, S, V] contiguous
    S,
    N,
    D,
    V,
    BLOCK_S: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_V: tl.constexpr,
    DOT_F32: tl.constexpr,  # cast the operands to float32 (float32/float64 inputs)
    F64: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
):
    b = tl.program_id(1).to(tl.int64)
    n = N
    if HAS_LENGTHS:
        n = tl.load(len_ptr + b)
        # NB: the assert runs in Triton's debug mode only (TRITON_DEBUG=1); otherwise the clamp
        # keeps a bad length from reading out of bounds.
        tl.device_assert((n >= 1) & (n <= N), "memory_read: lengths must lie in [1, N]")
        n = tl.minimum(tl.maximum(n, 1), N)
    rows = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    v = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    row_ok = rows < S
    acc_t = tl.float64 if F64 else tl.float32
    q = tl.load(q_ptr + (b * S + rows[:, None]) * D + d[None, :], mask=row_ok[:, None] & (d[None, :] < D), other=0.0)
    if DOT_F32:
        q = q.to(acc_t)
    m = tl.full((BLOCK_S,), float("-inf"), dtype=acc_t)
    l = tl.zeros((BLOCK_S,), dtype=acc_t)
    acc = tl.zeros((BLOCK_S, BLOCK_V), dtype=acc_t)
    for start in range(0, n, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_ok = keys < n
        k = tl.load(k_ptr + (b * N + keys[:, None]) * D + d[None, :], mask=key_ok[:, None] & (d[None, :] < D), other=0.0)
        if DOT_F32:
            k = k.to(acc_t)
        if F64:
            logits = tl.sum(q[:, None, :] * k[None, :, :], axis=2)  # NB: no float64 tl.dot
        else:
            # NB: "ieee" for float32: the GPU default, TF32, loses 3 digits
            logits = tl.dot(q, tl.trans(k), input_precision="ieee", out_dtype=tl.float32)
        logits = tl.where(key_ok[None, :], logits.to(acc_t), float("-inf"))
        new_m = tl.maximum(m, tl.max(logits, axis=1))
        rescale = tl.where(m == float("-inf"), 0.0, tl.exp(m - new_m))  # NB: no exp(-inf - -inf)
        p = tl.exp(logits - new_m[:, None])
        l = l * rescale + tl.sum(p, axis=1)
        vals = tl.load(v_ptr + (b * N + keys[:, None]) * V + v[None, :], mask=key_ok[:, None] & (v[None, :] < V),
                       other=0.0)
        if F64:
            acc = acc * rescale[:, None] + tl.sum(p[:, :, None] * vals.to(acc_t)[None, :, :], axis=1)
        elif DOT_F32:
            acc = acc * rescale[:, None] + tl.dot(p, vals.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * rescale[:, None] + tl.dot(p.to(vals.dtype), vals, out_dtype=tl.float32)
        m = new_m
    out_mask = row_ok[:, None] & (v[None, :] < V)
    res = tl.load(r_ptr + (b * S + rows[:, None]) * V + v[None, :], mask=out_mask, other=0.0)
    out = res.to(acc_t) + acc / l[:, None]
    tl.store(o_ptr + (b * S + rows[:, None]) * V + v[None, :], out.to(o_ptr.dtype.element_ty), mask=out_mask)


@triton_op("visolo_fast::memory_read_triton", mutates_args=())
def memory_read_triton(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, residual: torch.Tensor,
                       lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Triton memory_read; see :func:`visolo_fast.ops.memory_read`."""
    B, S, D = query.shape
    N, V = keys.shape[1], values.shape[2]
    if max(D, V) > 512:
        raise ValueError(f"memory_read: the Triton backend takes D, V <= 512, got D = {D}, V = {V}")
    out = torch.empty(residual.shape, dtype=residual.dtype, device=residual.device)
    if out.numel() == 0:
        return out
    if B > 65535:
        raise ValueError(f"memory_read: the Triton backend takes B <= 65535 (a grid axis), got {B}")
    f64 = query.dtype == torch.float64
    dot_f32 = query.dtype in (torch.float32, torch.float64)
    # NB: float64 has no tl.dot: its broadcast products take [BLOCK_S, BLOCK_N, BLOCK_V]
    # registers, so it gets narrow value blocks.
    block_v = min(32 if f64 else MAX_BLOCK_V, max(16, triton.next_power_of_2(V)))
    grid = (triton.cdiv(S, BLOCK_S), B, triton.cdiv(V, block_v))
    has_lengths = lengths is not None
    # NB: float32's "ieee" tl.dot runs on the FMA units with its operands in registers:
    # 32 keys and 4 warps took 178-255 registers on sm_80 and spilled with lengths (8 warps
    # still spilled 4 B on sm_90 under Triton 3.6); 16 keys and 8 warps take 66-80, no
    # spills, half the shared memory (bench/gpu_resources.py). Half-precision dots (tensor
    # cores) take 96-128 with 32 keys and 4 warps, no spills.
    # NB: without lengths the kernel never reads len_ptr; query stands in for it.
    launch(_memory_read_kernel, grid, query.contiguous(), keys.contiguous(), values.contiguous(), residual.contiguous(),
           lengths.contiguous() if has_lengths else query, out, S, N, D, V, BLOCK_S=BLOCK_S, BLOCK_N=16 if dot_f32 else BLOCK_N,
           BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_V=block_v,
           DOT_F32=dot_f32, F64=f64, HAS_LENGTHS=has_lengths, num_warps=8 if dot_f32 else 4)
    return out

