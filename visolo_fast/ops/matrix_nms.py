"""matrix_nms: SOLOv2's Matrix NMS on binary masks (spec section 5, step 5).

Instead of removing overlapping masks, every mask's score is decayed by its
largest overlap with a higher-scored mask of the same label, compensated by how
much that higher-scored mask was itself overlapped.
"""

from __future__ import annotations

import torch

from visolo_fast import backends
from visolo_fast._common import described, opmath_dtype
from visolo_fast.ops.mask_intersections import (
    check_intersection_matrix,
    mask_intersections,
    mask_intersections_reference,
)

OP = "matrix_nms_decay"  # the registered op that does the work after mask_intersections
# Compiled backends of the decay from the intersections, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")
KERNELS = ("gaussian", "linear")


def check_input(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, kernel: str) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        raise TypeError(f"matrix_nms: masks must be a bool Tensor[K, H, W], got {described(masks)}")
    _check_per_mask(masks.shape[0], masks.device, "masks", labels, scores, kernel)


def check_intersections(inter: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, kernel: str) -> None:
    check_intersection_matrix(inter, "matrix_nms")
    _check_per_mask(inter.shape[0], inter.device, "inter", labels, scores, kernel)


def _check_per_mask(K: int, device: torch.device, first: str, labels: torch.Tensor, scores: torch.Tensor,
                    kernel: str) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or tuple(labels.shape) != (K,):
        raise TypeError(f"matrix_nms: labels must be an int64 Tensor[{K}] (one per mask), got {described(labels)}")
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or tuple(scores.shape) != (K,):
        raise TypeError(f"matrix_nms: scores must be a floating-point Tensor[{K}] (one per mask), got {described(scores)}")
    if not (device == labels.device == scores.device):
        raise ValueError(f"matrix_nms: {first}, labels and scores must be on one device, got {device}, "
                         f"{labels.device}, {scores.device}")
    if kernel not in KERNELS:
        raise ValueError(f"matrix_nms: kernel must be one of {KERNELS}, got {kernel!r}")


def matrix_nms_from_intersections_reference(inter: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
                                            kernel: str = "gaussian", sigma: float = 2.0) -> torch.Tensor:
    """The official formulas, in the scores' precision (float32 at least)."""
    dtype = opmath_dtype(scores.dtype)
    if inter.shape[0] == 0:
        return scores.to(dtype)
    # NB: the counts are exact in float32 up to 2^24 pixels (a 352 x 624 mask has 219,648).
    inter = inter.to(dtype)
    areas = inter.diagonal()
    # NB: two empty masks give 0 / 0 = NaN, and NaN survives the label mask (NaN * 0) and
    # the column maxima below, as in the official code (spec section 8).
    iou = (inter / (areas[None, :] + areas[:, None] - inter)).triu(diagonal=1)
    same_label = (labels[:, None] == labels[None, :]).to(dtype).triu(diagonal=1)
    decay_iou = iou * same_label  # [i, j]: mask j's overlap with the higher-scored mask i
    compensate = decay_iou.max(dim=0).values[:, None]  # [i, 1]: how much mask i was itself overlapped
    if kernel == "gaussian":
        decay = torch.exp(-sigma * decay_iou**2) / torch.exp(-sigma * compensate**2)
    else:
        decay = (1 - decay_iou) / (1 - compensate)
    return scores.to(dtype) * decay.min(dim=0).values


def matrix_nms_reference(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, kernel: str = "gaussian",
                         sigma: float = 2.0) -> torch.Tensor:
    """Plain PyTorch, the official way: intersections by a float product of the masks."""
    return matrix_nms_from_intersections_reference(mask_intersections_reference(masks), labels, scores, kernel, sigma)


def matrix_nms_from_intersections(inter: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
                                  kernel: str = "gaussian", sigma: float = 2.0, backend: str = "auto") -> torch.Tensor:
    """Matrix NMS from the masks' pairwise intersections (:func:`mask_intersections`), for
    callers that also need them for :func:`mask_dedup_from_intersections`.

    Args:
        inter (int64 Tensor[K, K]): ``|M_i & M_j|``, areas on the diagonal, masks in score order.
        labels, scores, kernel, sigma, backend: as :func:`matrix_nms`.
    """
    check_intersections(inter, labels, scores, kernel)
    chosen = backends.resolve(backend, inter.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return matrix_nms_from_intersections_reference(inter, labels, scores, kernel, sigma)
    if chosen == "triton":
        from visolo_fast.triton.matrix_nms import matrix_nms_decay_triton  # inputs checked above

        return matrix_nms_decay_triton(inter, labels, scores, kernel, float(sigma))
    return torch.ops.visolo_fast.matrix_nms_decay(inter, labels, scores, kernel, float(sigma))


def matrix_nms(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, kernel: str = "gaussian",
               sigma: float = 2.0, backend: str = "auto") -> torch.Tensor:
    """Decayed scores of Matrix NMS.

    Args:
        masks (bool Tensor[K, H, W]): binary masks, sorted by ``scores`` descending.
        labels (int64 Tensor[K]): their labels; only masks of one label decay each other.
        scores (Tensor[K]): their scores, descending.
        kernel: ``"gaussian"`` (``exp(-sigma iou^2)``) or ``"linear"`` (``1 - iou``).
        sigma: the gaussian kernel's sigma.
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        Tensor[K], float32 (float64 for float64 scores): ``scores * decay``.
    """
    check_input(masks, labels, scores, kernel)
    if backends.resolve(backend, masks.device, OP, IMPLEMENTED) == "reference":
        return matrix_nms_reference(masks, labels, scores, kernel, sigma)
    return matrix_nms_from_intersections(mask_intersections(masks, backend), labels, scores, kernel, sigma, backend)


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::matrix_nms_decay")
    def _matrix_nms_decay_fake(inter, labels, scores, kernel, sigma):
        return scores.new_empty(scores.shape, dtype=opmath_dtype(scores.dtype))
