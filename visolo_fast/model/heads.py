"""VISOLO's heads (spec section 2), with the official module and parameter names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visolo_fast.model.layers import add_coords, conv_gn, conv_plain


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CategoryPreBranch(nn.Module):
    def __init__(self, grid: tuple[int, int], in_dim: int, dim: int, groups: int):
        super().__init__()
        self.grid = grid
        self.cat_pre_conv1 = conv_gn(in_dim, dim, 3, groups)
        self.conv_layers = nn.Sequential()
        self.conv_layers.add_module("cat_pre_conv2", conv_gn(dim, dim, 3, groups, relu=True))
        self.conv_layers.add_module("cat_pre_conv3", conv_gn(dim, dim, 3, groups, relu=True))
        self.cat_pre_conv4 = conv_gn(dim, dim, 1, groups)

    def forward(self, res4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """res4 (Tensor[B, in_dim, h, w]) -> (cat_f, frame_f), both Tensor[B, dim, S1, S2]."""
        frame_f = self.cat_pre_conv1(_resize(res4, self.grid))
        cat_f = self.cat_pre_conv4(self.conv_layers(F.relu(frame_f)))
        return cat_f, frame_f


class CategoryPostBranch(nn.Module):
    def __init__(self, num_classes: int, dim: int, groups: int):
        super().__init__()
        self.conv_layers = nn.Sequential()
        for k in range(1, 4):
            self.conv_layers.add_module(f"cat_post_conv{k}", conv_gn(dim, dim, 3, groups, relu=True))
        self.pred = conv_plain(dim, num_classes, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[B, dim, S1, S2]) -> category logits Tensor[B, C, S1, S2]."""
        return self.pred(self.conv_layers(x))


class KernelBranch(nn.Module):
    def __init__(self, grid: tuple[int, int], in_dim: int, dim: int, groups: int):
        super().__init__()
        self.grid = grid
        self.conv_layers = nn.Sequential()
        for k in range(1, 4):
            self.conv_layers.add_module(f"kernel_conv{k}", conv_gn(in_dim + 2 if k == 1 else dim, dim, 3, groups, relu=True))
        self.conv_layers_post = nn.Sequential()
        for k in range(4, 6):
            self.conv_layers_post.add_module(f"kernel_conv{k}", conv_gn(dim, dim, 3, groups, relu=True))
        self.pred = conv_gn(dim, dim, 1, groups)

    def pre(self, res4: torch.Tensor) -> torch.Tensor:
        """res4 (Tensor[B, in_dim, h, w]) -> kernel_f Tensor[B, dim, S1, S2] (coordinates appended before the resize)."""
        return self.conv_layers(_resize(add_coords(res4), self.grid))

    def post(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[B, dim, S1, S2]) -> one 1x1 mask kernel per grid, Tensor[B, dim, S1, S2]."""
        return self.pred(self.conv_layers_post(x))


class ResBlock(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))``, convolutions with bias and no norm."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = conv_plain(dim, dim, 3, relu=True)
        self.conv2 = conv_plain(dim, dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(F.relu(x)))


class Refine(nn.Module):
    def __init__(self, skip_dim: int, dim: int):
        super().__init__()
        self.convSCF = conv_plain(skip_dim, dim, 3)
        self.ResSCF = ResBlock(dim)
        self.ResF = ResBlock(dim)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        s = self.ResSCF(self.convSCF(skip))
        return self.ResF(s + F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False))


class MaskBranch(nn.Module):
    def __init__(self, in_dim: int, dim: int, groups: int):
        super().__init__()
        self.convR4 = conv_gn(in_dim + 2, dim, 3, groups)
        self.ResR4 = ResBlock(dim)
        self.RefR3 = Refine(in_dim // 2, dim)
        self.RefR2 = Refine(in_dim // 4, dim)
        self.convR1 = conv_gn(dim, dim, 3, groups, relu=True)
        self.pred = conv_gn(dim, dim, 1, groups)

    def forward(self, res2: torch.Tensor, res3: torch.Tensor, res4: torch.Tensor) -> torch.Tensor:
        """-> mask features F, Tensor[B, dim, H/4, W/4]."""
        p = self.ResR4(self.convR4(add_coords(res4)))
        p = self.RefR2(res2, self.RefR3(res3, p))
        return self.pred(self.convR1(F.relu(p)))


class TrackingBranch(nn.Module):
    """The tracking embeddings: grid-to-grid similarity logits[i, j] = query(f1)[i] . reference(f2)[j]
    (raw dot products, no scaling; the tracker takes them for its instances only); the query
    and the reference share two convolutions."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.conv_layers_share = nn.Sequential()
        for k in range(1, 3):
            self.conv_layers_share.add_module(f"track_S_conv{k}", conv_gn(dim, dim, 3, groups, relu=True))
        self.track_Q_conv1 = conv_gn(dim, dim, 3, groups)
        self.track_Q_conv2 = conv_gn(dim, dim // 2, 1, groups)
        self.track_R_conv1 = conv_gn(dim, dim, 3, groups)
        self.track_R_conv2 = conv_gn(dim, dim // 2, 1, groups)

    @staticmethod
    def _grids(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)  # [B, D, S1, S2] -> [B, S, D]

    def query(self, frame_f: torch.Tensor) -> torch.Tensor:
        """frame_f (Tensor[B, dim, S1, S2]) -> query embeddings Tensor[B, S, dim / 2]."""
        return self._grids(self.track_Q_conv2(self.track_Q_conv1(self.conv_layers_share(F.relu(frame_f)))))

    def reference(self, frame_f: torch.Tensor) -> torch.Tensor:
        """frame_f (Tensor[B, dim, S1, S2]) -> reference embeddings Tensor[B, S, dim / 2]."""
        return self._grids(self.track_R_conv2(self.track_R_conv1(self.conv_layers_share(F.relu(frame_f)))))

    def embeddings(self, frame_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame_f (Tensor[B, dim, S1, S2]) -> (query, reference) embeddings, each Tensor[B, S, dim / 2]:
        :meth:`query` and :meth:`reference` with the shared convolutions run once."""
        shared = self.conv_layers_share(F.relu(frame_f))
        return (self._grids(self.track_Q_conv2(self.track_Q_conv1(shared))),
                self._grids(self.track_R_conv2(self.track_R_conv1(shared))))


class Memory(nn.Module):
    """The memory's values, GN(conv3x3(stored feature)); the read itself,
    ``x + softmax(logits) @ values``, is :func:`visolo_fast.ops.memory_read`."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.conv1 = conv_gn(dim, dim, 3, groups)

    def values(self, features: torch.Tensor) -> torch.Tensor:
        """features (Tensor[N, dim, S1, S2]) -> memory values Tensor[N, S, dim]."""
        return self.conv1(features).flatten(2).transpose(1, 2)
