"""ResNet-50 up to res4, detectron2 style (``STRIDE_IN_1X1: False``: the stride sits in
the 3x3 convolution, as torchvision), with FrozenBatchNorm and no convolution bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visolo_fast.model.layers import ConvNorm, FrozenBatchNorm2d


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = False) -> ConvNorm:
    return ConvNorm(in_channels, out_channels, kernel_size, stride=stride, bias=False,
                    norm=FrozenBatchNorm2d(out_channels), relu=relu)


class BasicStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = _conv_bn(3, 64, 7, stride=2, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.shortcut = _conv_bn(in_channels, out_channels, 1, stride) if in_channels != out_channels else None
        self.conv1 = _conv_bn(in_channels, mid_channels, 1, relu=True)
        self.conv2 = _conv_bn(mid_channels, mid_channels, 3, stride=stride, relu=True)
        self.conv3 = _conv_bn(mid_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + skip)


def _stage(blocks: int, in_channels: int, mid_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[
        Bottleneck(in_channels if i == 0 else out_channels, mid_channels, out_channels, stride if i == 0 else 1)
        for i in range(blocks)
    ])


class ResNet50Res4(nn.Module):
    """Returns the res2 (1/4, 256 ch), res3 (1/8, 512 ch) and res4 (1/16, 1024 ch) features."""

    def __init__(self):
        super().__init__()
        self.stem = BasicStem()
        self.res2 = _stage(3, 64, 64, 256, 1)
        self.res3 = _stage(4, 256, 128, 512, 2)
        self.res4 = _stage(6, 512, 256, 1024, 2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (Tensor[B, 3, H, W]) -> (res2 [B, 256, H/4, W/4], res3 [B, 512, H/8, W/8], res4 [B, 1024, H/16, W/16])."""
        r2 = self.res2(self.stem(images))
        r3 = self.res3(r2)
        return r2, r3, self.res4(r3)
