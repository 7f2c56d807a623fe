"""mask_dedup: VISOLO's IoU* duplicate removal (spec section 5, step 7).

After Matrix NMS, a mask mostly covered by a better-scored kept mask is a
duplicate (a part of the same object found by a neighbouring grid): it goes,
whatever its label.
"""

from __future__ import annotations

import numpy as np
import torch

from visolo_fast import backends

OP = "mask_dedup"
# Compiled backends, fastest first, for backend="auto" (none yet: the fused kernel is issue [D]).
IMPLEMENTED: tuple[str, ...] = ()


def check_input(masks: torch.Tensor) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        got = f"{masks.dtype} {tuple(masks.shape)}" if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise TypeError(f"mask_dedup: masks must be a bool Tensor[K, H, W], got {got}")


def mask_dedup_reference(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Plain PyTorch for the intersections, then the greedy pass on the host: one transfer."""
    K = masks.shape[0]
    flat = masks.flatten(1).float()  # NB: exact pixel counts up to 2^24 per mask
    inter = (flat @ flat.T).cpu().numpy()
    areas = inter.diagonal().copy()
    keep = areas > 0
    for i in range(K):
        if not keep[i]:
            continue
        for j in range(i + 1, K):
            # NB: the official test, a float32 division compared with the threshold.
            if keep[j] and np.float32(inter[i, j]) / np.float32(areas[j]) > threshold:
                keep[j] = False
    return torch.from_numpy(keep).to(masks.device)


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
    backends.resolve(backend, masks.device, OP, IMPLEMENTED)
    return mask_dedup_reference(masks, threshold)
