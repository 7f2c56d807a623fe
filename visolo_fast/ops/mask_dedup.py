"""mask_dedup: VISOLO's IoU* duplicate removal (spec section 5, step 7).

After Matrix NMS, a mask mostly covered by a better-scored kept mask is a
duplicate (a part of the same object found by a neighbouring grid): it goes,
whatever its label.
"""

from __future__ import annotations

import numpy as np
import torch

from visolo_fast import backends
from visolo_fast._common import described
from visolo_fast.ops.mask_intersections import (
    check_intersection_matrix,
    mask_intersections,
    mask_intersections_reference,
)

OP = "mask_dedup_keep"  # the registered op that does the work after mask_intersections
# Compiled backends of the greedy pass over the intersections, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(masks: torch.Tensor) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        raise TypeError(f"mask_dedup: masks must be a bool Tensor[K, H, W], got {described(masks)}")


def mask_dedup_from_intersections_reference(inter: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The greedy pass on the host, in the official arithmetic: one transfer."""
    K = inter.shape[0]
    counts = inter.cpu().numpy().astype(np.float32)  # NB: exact up to 2^24 pixels
    areas = counts.diagonal().copy()
    keep = areas > 0
    for i in range(K):
        if not keep[i]:
            continue
        for j in range(i + 1, K):
            # NB: the official test, a float32 division compared with the threshold in
            # float32 (numpy keeps a Python float weak, as torch does).
            if keep[j] and counts[i, j] / areas[j] > np.float32(threshold):
                keep[j] = False
    return torch.from_numpy(keep).to(inter.device)


def mask_dedup_official(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The official structure, kept as the oracle of the tests and the benchmarks' baseline:
    float masks at full resolution, pair by pair, a removed mask zeroed, a host sync each."""
    m = masks.float().clone()
    for i in range(len(m) - 1):
        if m[i].sum() == 0:
            continue
        for j in range(i + 1, len(m)):
            if (m[i] * m[j]).sum() / m[j].sum() > threshold:
                m[j] = 0
    return m.flatten(1).sum(1) > 0


def mask_dedup_reference(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Plain PyTorch for the intersections (the official float product), then the greedy pass."""
    return mask_dedup_from_intersections_reference(mask_intersections_reference(masks), threshold)


def mask_dedup_from_intersections(inter: torch.Tensor, threshold: float = 0.5, backend: str = "auto") -> torch.Tensor:
    """The duplicate removal from the masks' pairwise intersections (:func:`mask_intersections`).

    Args:
        inter (int64 Tensor[K, K]): ``|M_i & M_j|``, areas on the diagonal, masks in score order.
        threshold, backend: as :func:`mask_dedup`.
    """
    check_intersection_matrix(inter, "mask_dedup")
    chosen = backends.resolve(backend, inter.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return mask_dedup_from_intersections_reference(inter, threshold)
    if chosen == "triton":
        from visolo_fast.triton.mask_dedup import mask_dedup_keep_triton  # inputs checked above

        return mask_dedup_keep_triton(inter, float(threshold))
    return torch.ops.visolo_fast.mask_dedup_keep(inter, float(threshold))


def mask_dedup(masks: torch.Tensor, threshold: float = 0.5, backend: str = "auto") -> torch.Tensor:
    """Which masks survive the greedy duplicate removal.

    Args:
        masks (bool Tensor[K, H, W]): binary masks in score order, best first.
        threshold: mask j goes when an earlier kept mask i covers more than this
            fraction of it, ``|M_i & M_j| / |M_j| > threshold``.
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        bool Tensor[K]: True for the masks kept; empty masks are never kept.
    """
    check_input(masks)
    if backends.resolve(backend, masks.device, OP, IMPLEMENTED) == "reference":
        return mask_dedup_reference(masks, threshold)
    return mask_dedup_from_intersections(mask_intersections(masks, backend), threshold, backend)


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::mask_dedup_keep")
    def _mask_dedup_keep_fake(inter, threshold):
        return inter.new_empty((inter.shape[0],), dtype=torch.bool)
