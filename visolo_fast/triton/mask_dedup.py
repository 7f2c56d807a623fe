"""Triton kernel of :func:`visolo_fast.ops.mask_dedup.mask_dedup_from_intersections`
(the math of ``kernels/mask_dedup.cuh``): one program holds the keep flags of all
masks and walks the masks in score order. Imported on first use by
:mod:`visolo_fast.ops.mask_dedup`, which checks the inputs."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from visolo_fast.triton.launch import launch


@triton.jit
def _mask_dedup_kernel(inter_ptr, keep_ptr, K, threshold, BLOCK: tl.constexpr):
    j = tl.arange(0, BLOCK)
    inside = j < K
    areas = tl.load(inter_ptr + j.to(tl.int64) * K + j, mask=inside, other=0)
    keep = (areas > 0) & inside
    for i in range(0, K):
        keep_i = tl.sum(tl.where(j == i, keep.to(tl.int32), 0), axis=0) > 0
        row = tl.load(inter_ptr + i * K + j, mask=inside, other=0)
        # NB: the official test in float32, the threshold rounded to float32 (passed as one);
        # div_rn: compiled "/" may be 2 ulp off, and 1/5 against 0.2 must come out exact.
        covered = tl.div_rn(row.to(tl.float32), areas.to(tl.float32)) > threshold
        keep = keep & ~(covered & (j > i) & keep_i)
    tl.store(keep_ptr + j, keep, mask=inside)


@triton_op("visolo_fast::mask_dedup_keep_triton", mutates_args=())
def mask_dedup_keep_triton(inter: torch.Tensor, threshold: float) -> torch.Tensor:
    """Triton duplicate removal from the intersections; see :func:`visolo_fast.ops.mask_dedup`."""
    K = inter.shape[0]
    keep = torch.empty(K, dtype=torch.bool, device=inter.device)
    if K:
        block = max(16, triton.next_power_of_2(K))
        launch(_mask_dedup_kernel, (1,), inter.contiguous(), keep, K, threshold, BLOCK=block)
    return keep

