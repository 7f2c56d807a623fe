"""Building blocks with detectron2's parameter names, so official weights load as they are."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (all four are buffers, as
    detectron2's, so they are in the state dict and never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # As detectron2 at inference: batch_norm with the frozen statistics (one fused op).
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)


class ConvNorm(nn.Conv2d):
    """detectron2's ``Conv2d``: convolution, then an optional ``norm`` submodule, then an
    optional ReLU. ``padding`` defaults to "same" for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 bias: bool = True, norm: nn.Module | None = None, relu: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


def conv_gn(in_channels: int, out_channels: int, kernel_size: int, groups: int, relu: bool = False) -> ConvNorm:
    """A head convolution: bias, GroupNorm(groups), optional ReLU."""
    return ConvNorm(in_channels, out_channels, kernel_size, norm=nn.GroupNorm(groups, out_channels), relu=relu)


def conv_plain(in_channels: int, out_channels: int, kernel_size: int, relu: bool = False) -> ConvNorm:
    """A convolution with a bias and no norm (the mask branch's residual blocks, the class predictor)."""
    return ConvNorm(in_channels, out_channels, kernel_size, relu=relu)


def _coordinates(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # The official addCoord's linspaces, made on the CPU (in float32) as there.
    ys = torch.linspace(-1, 1, height, dtype=torch.float32)
    xs = torch.linspace(-1, 1, width, dtype=torch.float32)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None].to(device=device, dtype=dtype)


# Built once per size: a frame pays one concatenation, and no host-to-device copy (which a
# CUDA graph could not capture) after the first frame.
_cached_coordinates = functools.lru_cache(maxsize=32)(_coordinates)


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """x (Tensor[B, C, H, W]) -> Tensor[B, C + 2, H, W]: x, then the row coordinate and the
    column coordinate channels, each ``linspace(-1, 1)`` over the map's height and width
    (VISOLO's ``addCoord``, before the kernel and mask branches)."""
    B, _, H, W = x.shape
    # NB: torch.compile traces the grid's construction into its graph (a constant there).
    grid = (_coordinates if torch.compiler.is_compiling() else _cached_coordinates)(H, W, x.dtype, x.device)
    return torch.cat([x, grid.expand(B, 2, H, W)], dim=1)
