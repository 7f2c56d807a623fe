"""Triton kernel of :func:`visolo_fast.ops.matrix_nms.matrix_nms_from_intersections`
(the math of ``kernels/matrix_nms.cuh``): one program per block of columns, walking
the rows in blocks, twice (compensations, then decays). Imported on first use by
:mod:`visolo_fast.ops.matrix_nms`, which checks the inputs."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast._common import opmath_dtype
from visolo_fast.triton.launch import launch

BLOCK = 32


@triton.jit
def _decay_iou(inter_ptr, labels_ptr, areas_ptr, K, rows, cols, dtype: tl.constexpr):
    """decay_iou[rows, cols] of kernels/matrix_nms.cuh (0 off the upper triangle)."""
    inside = (rows[:, None] < K) & (cols[None, :] < K)
    x = tl.load(inter_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], mask=inside, other=0).to(dtype)
    ai = tl.load(areas_ptr + rows, mask=rows < K, other=0).to(dtype)
    aj = tl.load(areas_ptr + cols, mask=cols < K, other=0).to(dtype)
    li = tl.load(labels_ptr + rows, mask=rows < K, other=-1)
    lj = tl.load(labels_ptr + cols, mask=cols < K, other=-2)
    iou = x / ((aj[None, :] + ai[:, None]) - x)  # NB: 0 / 0 = NaN for two empty masks, as official
    same = (li[:, None] == lj[None, :]).to(dtype)
    upper = (rows[:, None] < cols[None, :]) & inside
    return tl.where(upper, iou * same, 0.0)


@triton.jit
def _nan_reduce(x, axis: tl.constexpr, take_max: tl.constexpr):
    """torch's max / min reductions: NaN if any NaN."""
    nans = tl.sum((x != x).to(tl.int32), axis=axis)
    if take_max:
        r = tl.max(tl.where(x != x, float("-inf"), x), axis=axis)
    else:
        r = tl.min(tl.where(x != x, float("inf"), x), axis=axis)
    return tl.where(nans > 0, float("nan"), r)


@triton.jit
def _kernel_value(x, sigma, GAUSSIAN: tl.constexpr):
    if GAUSSIAN:
        return tl.exp(-sigma * (x * x))
    return 1.0 - x


@triton.jit
def _compensation_kernel(inter_ptr, labels_ptr, areas_ptr, comp_ptr, K, BLOCK: tl.constexpr):
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    dtype = comp_ptr.dtype.element_ty
    m = tl.zeros((BLOCK,), dtype=dtype)
    for start in range(0, K, BLOCK):
        rows = start + tl.arange(0, BLOCK)
        d = _decay_iou(inter_ptr, labels_ptr, areas_ptr, K, rows, cols, dtype)
        part = _nan_reduce(d, 0, True)
        m = tl.where(m != m, m, tl.where((part != part) | (part > m), part, m))  # NaN sticks
    tl.store(comp_ptr + cols, m, mask=cols < K)


@triton.jit
def _decay_kernel(inter_ptr, labels_ptr, areas_ptr, comp_ptr, scores_ptr, out_ptr, K, sigma, GAUSSIAN: tl.constexpr,
                  BLOCK: tl.constexpr):
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    dtype = out_ptr.dtype.element_ty
    m = tl.full((BLOCK,), float("inf"), dtype=dtype)
    for start in range(0, K, BLOCK):
        rows = start + tl.arange(0, BLOCK)
        d = _decay_iou(inter_ptr, labels_ptr, areas_ptr, K, rows, cols, dtype)
        comp = tl.load(comp_ptr + rows, mask=rows < K, other=0.0)
        ratio = _kernel_value(d, sigma, GAUSSIAN) / _kernel_value(comp, sigma, GAUSSIAN)[:, None]
        ratio = tl.where(rows[:, None] < K, ratio, float("inf"))
        part = _nan_reduce(ratio, 0, False)
        m = tl.where(m != m, m, tl.where((part != part) | (part < m), part, m))  # NaN sticks
    s = tl.load(scores_ptr + cols, mask=cols < K, other=0.0)
    tl.store(out_ptr + cols, s * m, mask=cols < K)


@triton_op("visolo_fast::matrix_nms_decay_triton", mutates_args=())
def matrix_nms_decay_triton(inter: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, kernel: str,
                            sigma: float) -> torch.Tensor:
    """Triton Matrix NMS from the intersections; see :func:`visolo_fast.ops.matrix_nms`."""
    dtype = opmath_dtype(scores.dtype)
    K = inter.shape[0]
    out = torch.empty(K, dtype=dtype, device=inter.device)
    if K:
        inter, labels = inter.contiguous(), labels.contiguous()
        areas = inter.diagonal().contiguous()
        comp = torch.empty(K, dtype=dtype, device=inter.device)
        grid = (triton.cdiv(K, BLOCK),)
        launch(_compensation_kernel, grid, inter, labels, areas, comp, K, BLOCK=BLOCK)
        launch(_decay_kernel, grid, inter, labels, areas, comp, scores.to(dtype).contiguous(), out, K, sigma,
               GAUSSIAN=kernel == "gaussian", BLOCK=BLOCK)
    return out

