"""resize_masks: binary masks to the video's size, the official way (spec section 7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visolo_fast import backends
from visolo_fast._common import described

OP = "resize_masks"
# Compiled backends, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(masks: torch.Tensor, size) -> tuple[int, int]:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        raise TypeError(f"resize_masks: masks must be a bool Tensor[K, H, W], got {described(masks)}")
    if not (isinstance(size, (tuple, list, torch.Size)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise ValueError(f"resize_masks: size must be (height, width), positive integers, got {size!r}")
    if masks.shape[1] == 0 or masks.shape[2] == 0:
        raise ValueError(f"resize_masks: masks must have H, W >= 1, got {tuple(masks.shape)}")
    return int(size[0]), int(size[1])


def resize_masks_reference(masks: torch.Tensor, size: tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Plain PyTorch: bilinear on the 0/1 values in float32 (``align_corners=False``), kept where ``>= threshold``."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    return F.interpolate(masks[None].float(), size=size, mode="bilinear", align_corners=False)[0] >= threshold


def resize_masks(masks: torch.Tensor, size: tuple[int, int], threshold: float = 0.5, backend: str = "auto") -> torch.Tensor:
    """Resizes binary masks as the official code resizes its final masks.

    Args:
        masks (bool Tensor[K, H, W]): binary masks.
        size: the output (height, width).
        threshold: a pixel is set where the interpolated 0/1 value is ``>= threshold``
            (the official code uses its mask threshold, 0.5).
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        bool Tensor[K, height, width]. The compiled backends read the bool masks directly,
        without a float copy of them at either size.
    """
    size = check_input(masks, size)
    chosen = backends.resolve(backend, masks.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return resize_masks_reference(masks, size, threshold)
    if size == tuple(masks.shape[1:]) and 0 < threshold <= 1:
        # At scale 1 every output pixel reads exactly its source pixel (weights 1 and 0),
        # so 1 >= threshold > 0: the masks themselves (the network's own size is a common output size).
        return masks.clone(memory_format=torch.contiguous_format)
    if chosen == "triton":
        from visolo_fast.triton.resize_masks import resize_masks_triton  # inputs checked above

        return resize_masks_triton(masks, list(size), float(threshold))
    # cpp and cuda are the same dispatcher op; the device of the masks picks the kernel.
    return torch.ops.visolo_fast.resize_masks(masks, list(size), float(threshold))


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::resize_masks")
    def _resize_masks_fake(masks, size, threshold):
        return masks.new_empty((masks.shape[0], size[0], size[1]))
