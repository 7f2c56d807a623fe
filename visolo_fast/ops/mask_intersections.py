"""mask_intersections: the pixel counts |M_i & M_j| of every pair of binary masks, the
one expensive product that Matrix NMS and the IoU* duplicate removal share."""

from __future__ import annotations

import torch

from visolo_fast import backends
from visolo_fast._common import described

OP = "mask_intersections"
# Compiled backends, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(masks: torch.Tensor) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        raise TypeError(f"mask_intersections: masks must be a bool Tensor[K, H, W], got {described(masks)}")


def check_intersection_matrix(inter: torch.Tensor, op: str) -> None:
    """For the ops that take this op's output: an int64 Tensor[K, K]."""
    if not isinstance(inter, torch.Tensor) or inter.dtype != torch.int64 or inter.dim() != 2 or inter.shape[0] != inter.shape[1]:
        raise TypeError(f"{op}: inter must be an int64 Tensor[K, K] (mask_intersections), got {described(inter)}")


def mask_intersections_reference(masks: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch, the official way: a float32 product of the 0/1 masks (exact counts
    up to 2^24 pixels per mask), returned as int64."""
    flat = masks.flatten(1).float()
    return (flat @ flat.T).long()


def mask_intersections(masks: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Pairwise intersections of binary masks.

    Args:
        masks (bool Tensor[K, H, W]): binary masks.
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        int64 Tensor[K, K]: ``[i, j] = |M_i & M_j|``; the diagonal holds the areas.
        The compiled backends pack 64 pixels a word and count by AND + popcount
        (C++, CUDA) or multiply 0/1 tiles with float32 accumulation (Triton).
    """
    check_input(masks)
    chosen = backends.resolve(backend, masks.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return mask_intersections_reference(masks)
    if chosen == "triton":
        from visolo_fast.triton.mask_intersections import mask_intersections_triton  # inputs checked above

        return mask_intersections_triton(masks)
    return torch.ops.visolo_fast.mask_intersections(masks)


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::mask_intersections")
    def _mask_intersections_fake(masks):
        return masks.new_empty((masks.shape[0], masks.shape[0]), dtype=torch.int64)
