"""From RGB frames to the network's input (spec section 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from visolo_fast.config import VisoloConfig
from visolo_fast.transfer import to_device

_DEFAULT = VisoloConfig()


def _as_batch(frames) -> torch.Tensor:
    """Frames as one uint8 Tensor[N, H, W, 3]."""
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 3:
        frames = [frames]
    if isinstance(frames, Sequence) and not isinstance(frames, torch.Tensor):
        if len(frames) == 0:
            raise ValueError("preprocess: no frames given")
        tensors = [torch.as_tensor(np.ascontiguousarray(f)) if isinstance(f, np.ndarray) else f for f in frames]
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"preprocess: frame {i} must be a numpy array or a tensor, got {type(t).__name__}")
            if tuple(t.shape) != tuple(tensors[0].shape):
                raise ValueError(f"preprocess: all frames must have the same size, frame 0 is {tuple(tensors[0].shape)}, "
                                 f"frame {i} is {tuple(t.shape)}")
        frames = torch.stack(tensors)
    elif isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"preprocess: frames must be an H x W x 3 array, a sequence of them or an [N, H, W, 3] tensor, "
                        f"got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"preprocess: frames must be RGB, H x W x 3 each, got shape {tuple(frames.shape)} "
                         "(convert grayscale or RGBA frames to RGB first)")
    if frames.dtype != torch.uint8:
        raise TypeError(f"preprocess: frames must be uint8 RGB (0..255), got {frames.dtype}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"preprocess: empty frames, shape {tuple(frames.shape)}")
    return frames


def preprocess(frames, size: tuple[int, int] = _DEFAULT.input_size, device: str | torch.device | None = None,
               mean: Sequence[float] = _DEFAULT.pixel_mean, std: Sequence[float] = _DEFAULT.pixel_std) -> torch.Tensor:
    """Resizes and normalises RGB frames for :class:`visolo_fast.model.VisoloNet`.

    As the official test transform: the uint8 image is resized to exactly ``size`` (no
    aspect kept, no padding) with bilinear resampling and antialiasing as PIL's
    ``Image.resize(BILINEAR)``, then normalised per channel.

    Args:
        frames: one uint8 RGB array/tensor [H, W, 3], a sequence of them (same size), or a
            uint8 Tensor[N, H, W, 3].
        size: (height, width) of the network input.
        device: where the result goes (default: the frames' device, the CPU for numpy).

    Returns:
        Tensor[N, 3, size[0], size[1]], float32, ``(x - mean) / std``. Within one grey level
        of PIL before normalisation; identical to no resizing when the frames already have ``size``.
    """
    batch = _as_batch(frames)
    if device is not None:
        batch = to_device(batch, device)
    x = batch.permute(0, 3, 1, 2)
    if tuple(x.shape[2:]) != tuple(size):
        if x.device.type == "cpu":
            # NB: the uint8 path of antialiased bilinear follows PIL's fixed-point arithmetic:
            # it lands on PIL's grey level far more often than the float path (0.3% vs 15% of pixels off by one).
            x = F.interpolate(x.contiguous(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        else:
            x = F.interpolate(x.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)  # PIL hands the network uint8 values
    x = x.float()
    mean_t, std_t = to_device([list(mean), list(std)], x.device, torch.float32).view(2, 1, 3, 1, 1)
    return (x - mean_t) / std_t
