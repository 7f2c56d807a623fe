"""dynamic_masks: SOLOv2's dynamic 1x1 mask convolution as VISOLO runs it at inference
(spec section 5, steps 2-3): per instance, its kernel convolved with the mask
features, upsampled x4, a sigmoid, a threshold, and the two numbers the
mask-quality score needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visolo_fast import backends
from visolo_fast._common import opmath_dtype

OP = "dynamic_masks"
# Compiled backends, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(features: torch.Tensor, kernels: torch.Tensor) -> None:
    for name, t in (("features", features), ("kernels", kernels)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"dynamic_masks: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"dynamic_masks: {name} must be a floating-point tensor, got {t.dtype}")
    if features.dim() not in (3, 4) or kernels.dim() != features.dim() - 1:
        raise ValueError(f"dynamic_masks: features [E, h, w] need kernels [K, E], features [B, E, h, w] need kernels "
                         f"[B, K, E]; got features {tuple(features.shape)} and kernels {tuple(kernels.shape)}")
    if kernels.shape[-1] != features.shape[-3] or (features.dim() == 4 and kernels.shape[0] != features.shape[0]):
        raise ValueError(f"dynamic_masks: kernels {tuple(kernels.shape)} do not fit features {tuple(features.shape)} "
                         "(E, and B if batched, must agree)")
    if features.shape[-1] == 0 or features.shape[-2] == 0:
        raise ValueError(f"dynamic_masks: features must have h, w >= 1, got {tuple(features.shape)}")
    if kernels.device != features.device:
        raise ValueError(f"dynamic_masks: features and kernels must be on one device, got {features.device} and {kernels.device}")


def output_shapes(features: torch.Tensor, kernels: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(mask shape, shape of areas and quality) for these inputs."""
    lead = tuple(kernels.shape[:-1])
    return (*lead, 4 * features.shape[-2], 4 * features.shape[-1]), lead


def dynamic_masks_reference(features: torch.Tensor, kernels: torch.Tensor, threshold: float = 0.5):
    """Plain PyTorch, the official way (``getMaskMap`` and ``getSegMaskV5``); fp32, or fp64 for fp64 inputs.

    NB: this materialises the K full-resolution probability maps (K x 16 h w floats).
    """
    if features.dim() == 4:
        parts = [dynamic_masks_reference(f, k, threshold) for f, k in zip(features, kernels)]
        if not parts:
            h, w = features.shape[-2:]
            dtype = opmath_dtype(features.dtype, kernels.dtype)
            return (features.new_zeros((0, kernels.shape[1], 4 * h, 4 * w), dtype=torch.bool),
                    features.new_zeros((0, kernels.shape[1]), dtype=torch.int64),
                    features.new_zeros((0, kernels.shape[1]), dtype=dtype))
        return tuple(torch.stack(p) for p in zip(*parts))
    dtype = opmath_dtype(features.dtype, kernels.dtype)
    E, h, w = features.shape
    K = kernels.shape[0]
    if K == 0:
        return (features.new_zeros((0, 4 * h, 4 * w), dtype=torch.bool), features.new_zeros((0,), dtype=torch.int64),
                features.new_zeros((0,), dtype=dtype))
    logits = F.conv2d(features.to(dtype)[None], kernels.to(dtype).reshape(K, E, 1, 1))
    probs = torch.sigmoid(F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False))[0]
    masks = probs > threshold
    areas = masks.sum((1, 2))
    # NB: 0 / 0 = NaN for an empty mask, as the official code (spec section 8).
    quality = (probs * masks).sum((1, 2)) / areas.to(dtype)
    return masks, areas, quality


def dynamic_masks(features: torch.Tensor, kernels: torch.Tensor, threshold: float = 0.5, backend: str = "auto"):
    """Binary masks of K instances from their dynamic 1x1 kernels.

    Args:
        features (Tensor[E, h, w] or Tensor[B, E, h, w]): mask features.
        kernels (Tensor[K, E] or Tensor[B, K, E]): one 1x1 kernel per instance.
        threshold: binarisation threshold on the probability.
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        ``(masks, areas, quality)``: ``masks`` (bool Tensor[(B,) K, 4h, 4w]) =
        ``sigmoid(upsample_x4(kernels @ features)) > threshold``, upsampling bilinear with
        ``align_corners=False``; ``areas`` (int64 Tensor[(B,) K]) the pixels set;
        ``quality`` (float32 Tensor[(B,) K], float64 for float64 inputs) the mean
        probability over the mask's pixels, NaN where the area is 0.

    The compiled backends take the product with a library GEMM, then one fused pass: no
    full-resolution float map. They decide ``logit > logit(threshold)``, which agrees
    with the reference's ``sigmoid > threshold`` except within float rounding of it.
    """
    check_input(features, kernels)
    chosen = backends.resolve(backend, features.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return dynamic_masks_reference(features, kernels, threshold)
    if chosen == "triton":
        from visolo_fast.triton.dynamic_masks import dynamic_masks_triton  # inputs checked above

        return dynamic_masks_triton(features, kernels, float(threshold))
    # cpp and cuda are the same dispatcher op; the device of the tensors picks the kernel.
    return torch.ops.visolo_fast.dynamic_masks(features, kernels, float(threshold))


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::dynamic_masks")
    def _dynamic_masks_fake(features, kernels, threshold):
        mask_shape, lead = output_shapes(features, kernels)
        return (features.new_empty(mask_shape, dtype=torch.bool), features.new_empty(lead, dtype=torch.int64),
                features.new_empty(lead, dtype=opmath_dtype(features.dtype, kernels.dtype)))
