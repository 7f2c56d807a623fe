"""The per-frame VISOLO network (spec section 2) in plain PyTorch."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from visolo_fast import backends
from visolo_fast.config import VisoloConfig
from visolo_fast.model.backbone import ResNet50Res4
from visolo_fast.ops.memory_read import memory_read
from visolo_fast.model.heads import (
    CategoryPostBranch,
    CategoryPreBranch,
    KernelBranch,
    MaskBranch,
    Memory,
    TrackingBranch,
)


class MemoryEntry(NamedTuple):
    """What the official memory stores of one frame: its features before the read, each
    Tensor[B, dim, S1, S2]; the keys and values are computed from them at every read."""

    frame_f: torch.Tensor  # the tracking feature (the keys' source)
    cat_f: torch.Tensor  # category feature, before the memory read
    kernel_f: torch.Tensor  # kernel feature, before the memory read


class Encoded(NamedTuple):
    """The part of a frame's pass that does not depend on the memory (:meth:`VisoloNet.encode`),
    for a batch of B frames."""

    frame_f: torch.Tensor  # the tracking feature, [B, dim, S1, S2]
    cat_f: torch.Tensor  # category feature, before the memory read, [B, dim, S1, S2]
    kernel_f: torch.Tensor  # kernel feature, before the memory read, [B, dim, S1, S2]
    mask_features: torch.Tensor  # F, [B, dim, H/4, W/4]
    query: torch.Tensor  # tracking query embeddings of the grids, [B, S, dim / 2]
    key: torch.Tensor  # tracking reference embeddings of the grids (the memory's keys), [B, S, dim / 2]

    @property
    def memory_entry(self) -> MemoryEntry:
        return MemoryEntry(self.frame_f, self.cat_f, self.kernel_f)


class FrameOutput(NamedTuple):
    """The outputs of :meth:`VisoloNet.forward_frame` for a batch of B frames: the
    :class:`Encoded` fields, then the heads after the memory read."""

    frame_f: torch.Tensor  # [B, dim, S1, S2]
    cat_f: torch.Tensor  # [B, dim, S1, S2]
    kernel_f: torch.Tensor  # [B, dim, S1, S2]
    mask_features: torch.Tensor  # F, [B, dim, H/4, W/4]
    query: torch.Tensor  # [B, S, dim / 2]
    key: torch.Tensor  # [B, S, dim / 2]
    scores: torch.Tensor  # sigmoid category scores, [B, C, S1, S2]
    kernels: torch.Tensor  # one 1x1 mask kernel per grid, [B, dim, S1, S2]

    @property
    def memory_entry(self) -> MemoryEntry:
        return MemoryEntry(self.frame_f, self.cat_f, self.kernel_f)


def init_msra_fill(module: nn.Module) -> None:
    """The official initialisation of fresh heads: He-normal (fan_out) convolutions, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def memory_entry_shapes(config: VisoloConfig) -> dict[str, tuple[int, ...]]:
    """What the fast engine's memory keeps of a frame: its ``keys`` (``Encoded.key``,
    [S, dim / 2]) and ``values`` (:meth:`VisoloNet.memory_values`, [S, 2 dim])."""
    S, dim = config.num_grids, config.dim
    return {"keys": (S, dim // 2), "values": (S, 2 * dim)}


class VisoloNet(nn.Module):
    """ResNet-50 (res2-res4) and VISOLO's heads; attribute names are the official ones
    (``model.<name>`` in an official checkpoint)."""

    def __init__(self, config: VisoloConfig | None = None):
        super().__init__()
        self.config = cfg = config or VisoloConfig()
        g = cfg.norm_groups
        self.backbone = ResNet50Res4()
        self.Category_branch_pre = CategoryPreBranch(cfg.grid, cfg.in_dim, cfg.dim, g)
        self.Category_branch_post = CategoryPostBranch(cfg.num_classes, cfg.dim, g)
        self.Kernel_branch = KernelBranch(cfg.grid, cfg.in_dim, cfg.dim, g)
        self.Mask_branch = MaskBranch(cfg.in_dim, cfg.dim, g)
        self.Tracking_branch = TrackingBranch(cfg.dim, g)
        self.Memory_module = Memory(cfg.dim, g)
        init_msra_fill(self)

    def forward(self, images: torch.Tensor, memory: Sequence[MemoryEntry] = (), backend: str = "auto") -> FrameOutput:
        return self.forward_frame(images, memory, backend)

    def forward_frame(self, images: torch.Tensor, memory: Sequence[MemoryEntry] = (), backend: str = "auto") -> FrameOutput:
        """One frame of each of B videos, the official way: :meth:`encode`, the keys and
        values of every stored frame computed from its features, :meth:`read`, :meth:`predict`.

        Args:
            images (Tensor[B, 3, H, W]): normalised frames (:func:`visolo_fast.preprocess`), H and W multiples of 16.
            memory: the stored entries of earlier frames, oldest first (T entries, each
                Tensor[B, dim, S1, S2]); empty for a video's first frame, which then reads itself.
            backend: for the memory read, see :mod:`visolo_fast.backends`.

        Returns:
            :class:`FrameOutput`.
        """
        if backend not in backends.BACKENDS:
            raise ValueError(f"VisoloNet: backend must be one of {backends.BACKENDS}, got {backend!r}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"VisoloNet: images must be [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[2] % 16 or images.shape[3] % 16:
            raise ValueError(f"VisoloNet: image height and width must be multiples of 16, got {tuple(images.shape[2:])}")
        B = images.shape[0]
        want = (B, self.config.dim, *self.config.grid)
        for t, entry in enumerate(memory):
            if not isinstance(entry, MemoryEntry):
                raise TypeError(f"VisoloNet: memory[{t}] must be a MemoryEntry (FrameOutput.memory_entry), got {type(entry).__name__}")
            for name, f in zip(MemoryEntry._fields, entry):
                if tuple(f.shape) != want or f.device != images.device or f.dtype != images.dtype:
                    raise ValueError(f"VisoloNet: memory[{t}].{name} must be {list(want)} {images.dtype} on {images.device} "
                                     f"(as the images), got {list(f.shape)} {f.dtype} on {f.device}")
        enc = self.encode(images)
        stored = list(memory) or [enc.memory_entry]
        keys, values = self.memory_keys_values(stored)
        return FrameOutput(*enc, *self.predict(self.read(enc, keys, values, backend)))

    def encode(self, images: torch.Tensor) -> Encoded:
        """images (Tensor[B, 3, H, W], normalised, H and W multiples of 16) -> :class:`Encoded`."""
        return self.heads(*self.backbone(images))

    def heads(self, res2: torch.Tensor, res3: torch.Tensor, res4: torch.Tensor) -> Encoded:
        """:meth:`encode` after the backbone (the fast engine times, compiles or graphs the two apart).

        Args:
            res2, res3, res4: the backbone's features, Tensor[B, in_dim / 4, H/4, W/4],
                Tensor[B, in_dim / 2, H/8, W/8], Tensor[B, in_dim, H/16, W/16].
        """
        cat_f, frame_f = self.Category_branch_pre(res4)
        query, key = self.Tracking_branch.embeddings(frame_f)
        return Encoded(frame_f, cat_f, self.Kernel_branch.pre(res4), self.Mask_branch(res2, res3, res4), query, key)

    def memory_values(self, cat_f: torch.Tensor, kernel_f: torch.Tensor) -> torch.Tensor:
        """The memory values of N frames: cat_f, kernel_f (Tensor[N, dim, S1, S2]) -> Tensor[N, S, 2 dim],
        the category memory's values then the kernel memory's, side by side (one convolution for both)."""
        N = cat_f.shape[0]
        values = self.Memory_module.values(torch.cat([cat_f, kernel_f]))  # [2N, S, dim]
        return torch.cat([values[:N], values[N:]], dim=2)

    def memory_keys_values(self, stored: Sequence[MemoryEntry]) -> tuple[torch.Tensor, torch.Tensor]:
        """The official memory: the keys (Tensor[B, T * S, dim / 2]) and values (Tensor[B, T * S, 2 dim])
        of T stored frames, entry-major, computed from their features."""
        B, T = stored[0].frame_f.shape[0], len(stored)

        def stack(field: str) -> torch.Tensor:  # [B * T, dim, S1, S2], batch-major
            return torch.stack([getattr(e, field) for e in stored], dim=1).flatten(0, 1)

        keys = self.Tracking_branch.reference(stack("frame_f"))
        values = self.memory_values(stack("cat_f"), stack("kernel_f"))
        return keys.reshape(B, T * keys.shape[1], -1), values.reshape(B, T * values.shape[1], -1)

    def memory_entry_shapes(self) -> dict[str, tuple[int, ...]]:
        """What the fast engine's memory keeps of a frame (:func:`memory_entry_shapes`)."""
        return memory_entry_shapes(self.config)

    @staticmethod
    def residual(enc: Encoded) -> torch.Tensor:
        """The read's residual: the category and kernel features side by side, Tensor[B, S, 2 dim]."""
        return torch.cat([enc.cat_f, enc.kernel_f], dim=1).flatten(2).transpose(1, 2)

    def read(self, enc: Encoded, keys: torch.Tensor, values: torch.Tensor, backend: str = "auto",
             lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Every grid against every stored grid, soft-maxed over all T * S of them at once; the
        category and kernel memories share those weights, so they are read together.

        Args:
            enc: B encoded frames.
            keys (Tensor[B, N, dim / 2]), values (Tensor[B, N, 2 dim]): the memory, N = T * S.
            lengths (int64 Tensor[B] or None): the grids stored in each memory, the rest padding
                (:func:`visolo_fast.ops.memory_read`); None: all N.

        Returns:
            Tensor[B, S, 2 dim]: ``residual + softmax(query keys^T) values``.
        """
        return memory_read(enc.query, keys, values, self.residual(enc), backend, lengths=lengths)

    def predict(self, read: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads after the memory read.

        Args:
            read (Tensor[B, S, 2 dim]): :meth:`read`'s output.

        Returns:
            (scores, kernels): sigmoid category scores Tensor[B, C, S1, S2] and one 1x1 mask
            kernel per grid Tensor[B, dim, S1, S2].
        """
        B = read.shape[0]
        cat_in, kernel_in = read.transpose(1, 2).reshape(B, 2, self.config.dim, *self.config.grid).unbind(1)
        return torch.sigmoid(self.Category_branch_post(cat_in)), self.Kernel_branch.post(kernel_in)
