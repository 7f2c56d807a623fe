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
    """What the memory stores of one frame: its pre-read features, each Tensor[B, dim, S1, S2]."""

    frame_f: torch.Tensor  # the tracking ("key") feature
    cat_f: torch.Tensor  # category feature, before the memory read
    kernel_f: torch.Tensor  # kernel feature, before the memory read


class FrameOutput(NamedTuple):
    """The per-frame outputs of :meth:`VisoloNet.forward_frame`, for a batch of B frames."""

    frame_f: torch.Tensor  # [B, dim, S1, S2]
    cat_f: torch.Tensor  # [B, dim, S1, S2]
    kernel_f: torch.Tensor  # [B, dim, S1, S2]
    mask_features: torch.Tensor  # F, [B, dim, H/4, W/4]
    scores: torch.Tensor  # sigmoid category scores, [B, C, S1, S2]
    kernels: torch.Tensor  # one 1x1 mask kernel per grid, [B, dim, S1, S2]
    # sigmoid(Tracking(previous frame's frame_f, frame_f)), [B, S_prev, S]: the previous
    # frame's grids are the rows; None when the memory was empty (first frame).
    association: torch.Tensor | None

    @property
    def memory_entry(self) -> MemoryEntry:
        return MemoryEntry(self.frame_f, self.cat_f, self.kernel_f)


class Encoded(NamedTuple):
    """The part of a frame's network pass that does not depend on the memory (the fast
    engine's :meth:`VisoloNet.encode`), for a batch of B frames. What the memory keeps of a
    frame, its keys and values, is computed here once, not at every later frame."""

    mask_features: torch.Tensor  # F, [B, dim, H/4, W/4]
    query: torch.Tensor  # tracking query embeddings, [B, S, dim / 2]
    key: torch.Tensor  # tracking reference embeddings (the memory's keys), [B, S, dim / 2]
    values: torch.Tensor  # memory values of the category and kernel features side by side, [B, S, 2 dim]
    residual: torch.Tensor  # the category and kernel features side by side, [B, S, 2 dim]


def init_msra_fill(module: nn.Module) -> None:
    """The official initialisation of fresh heads: He-normal (fan_out) convolutions, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


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

    def segment_video(self, frames, output_size: tuple[int, int] | None = None, backend: str = "auto",
                      dtype: torch.dtype = torch.float32, compile: bool | str = False, cuda_graphs: bool = False):
        """Segments and tracks the instances of a whole video, online, frame by frame.

        Args:
            frames: the video, uint8 RGB: a sequence of [H, W, 3] arrays (or tensors), or a
                Tensor[N, H, W, 3].
            output_size: (height, width) of the output masks; default the frames' own size.
            backend, dtype, compile, cuda_graphs: the engine, see :class:`visolo_fast.Tracker`
                (``"auto"``: the fast engine; ``"reference"``: the reference engine).

        Returns:
            :class:`visolo_fast.VideoResult`: ``scores`` (float32 [K]), ``labels`` (int64 [K],
            0-based), ``masks`` (bool [K, N, H_out, W_out]); K = 0 if nothing was found.
        """
        from visolo_fast.engine.tracker import segment_video

        return segment_video(self, frames, output_size, backend, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs)

    def tracker(self, output_size: tuple[int, int] | None = None, backend: str = "auto", keep_video: bool = False,
                dtype: torch.dtype = torch.float32, compile: bool | str = False, cuda_graphs: bool = False):
        """A :class:`visolo_fast.Tracker` for one video stream: ``step(frame)`` per frame,
        then ``flush()``; each returns the frame results that became final. Several trackers
        of one model step together with :func:`visolo_fast.step_many`."""
        from visolo_fast.engine.tracker import Tracker

        return Tracker(self, output_size, backend, keep_video, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs)

    def forward(self, images: torch.Tensor, memory: Sequence[MemoryEntry] = (), backend: str = "auto") -> FrameOutput:
        return self.forward_frame(images, memory, backend)

    def forward_frame(self, images: torch.Tensor, memory: Sequence[MemoryEntry] = (), backend: str = "auto") -> FrameOutput:
        """Runs the network on one frame of each of B videos, reading their memory.

        Args:
            images (Tensor[B, 3, H, W]): normalised frames (:func:`visolo_fast.preprocess`), H and W multiples of 16.
            memory: the stored entries of earlier frames, oldest first, the previous frame
                last (T entries, each Tensor[B, dim, S1, S2]); empty for a video's first frame,
                which then reads itself.
            backend: for the ops inside the network, see :mod:`visolo_fast.backends`.

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

        res2, res3, res4 = self.backbone(images)
        cat_f, frame_f = self.Category_branch_pre(res4)
        kernel_f = self.Kernel_branch.pre(res4, backend)
        track = self.Tracking_branch
        stored = list(memory) if memory else [MemoryEntry(frame_f, cat_f, kernel_f)]

        def stack(field: str) -> torch.Tensor:  # [B, T, dim, S1, S2]
            return torch.stack([getattr(e, field) for e in stored], dim=1)

        # Every grid against every stored grid, soft-maxed over all T * S of them at once; the
        # category and kernel memories share those weights, so they are read together.
        keys = track.reference(stack("frame_f").flatten(0, 1)).reshape(B, -1, self.config.dim // 2)  # [B, T*S, D]
        values = torch.cat([self.Memory_module.values(stack("cat_f")), self.Memory_module.values(stack("kernel_f"))],
                           dim=2)  # [B, T*S, 2 dim]
        residual = torch.cat([cat_f, kernel_f], dim=1).flatten(2).transpose(1, 2)  # [B, S, 2 dim]
        read = memory_read(track.query(frame_f), keys, values, residual, backend)  # [B, S, 2 dim]
        cat_in, kernel_in = read.transpose(1, 2).reshape(B, 2, *cat_f.shape[1:]).unbind(1)
        association = torch.sigmoid(track(memory[-1].frame_f, frame_f)) if memory else None

        return FrameOutput(
            frame_f=frame_f,
            cat_f=cat_f,
            kernel_f=kernel_f,
            mask_features=self.Mask_branch(res2, res3, res4, backend),
            scores=torch.sigmoid(self.Category_branch_post(cat_in)),
            kernels=self.Kernel_branch.post(kernel_in),
            association=association,
        )

    def encode(self, images: torch.Tensor, backend: str = "auto") -> Encoded:
        """The memory-independent part of :meth:`forward_frame`, with the frame's memory keys
        and values (the fast engine caches them; the official code recomputes them at every
        frame that reads this one).

        Args:
            images (Tensor[B, 3, H, W]): normalised frames, H and W multiples of 16.
        """
        return self.encode_features(*self.backbone(images), backend=backend)

    def encode_features(self, res2: torch.Tensor, res3: torch.Tensor, res4: torch.Tensor, backend: str = "auto") -> Encoded:
        """:meth:`encode` after the backbone (the engine times, compiles or graphs the two apart).

        Args:
            res2, res3, res4: the backbone's features, Tensor[B, in_dim / 4, H/4, W/4],
                Tensor[B, in_dim / 2, H/8, W/8], Tensor[B, in_dim, H/16, W/16].
        """
        cat_f, frame_f = self.Category_branch_pre(res4)
        kernel_f = self.Kernel_branch.pre(res4, backend)
        query, key = self.Tracking_branch.embeddings(frame_f)
        B, S = res4.shape[0], self.config.num_grids
        both = torch.cat([cat_f, kernel_f])  # [2B, dim, S1, S2]: one convolution for both memories
        values = self.Memory_module.values(both[:, None]).reshape(2, B, S, -1)
        return Encoded(
            mask_features=self.Mask_branch(res2, res3, res4, backend),
            query=query,
            key=key,
            values=torch.cat([values[0], values[1]], dim=2),
            residual=torch.cat([cat_f, kernel_f], dim=1).flatten(2).transpose(1, 2),
        )

    def predict(self, read: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads after the memory read.

        Args:
            read (Tensor[B, S, 2 dim]): :func:`visolo_fast.ops.memory_read` of an :class:`Encoded`
                frame (its query and residual) with the memory's keys and values.

        Returns:
            (scores, kernels): sigmoid category scores Tensor[B, C, S1, S2] and one 1x1 mask
            kernel per grid Tensor[B, dim, S1, S2], as in :class:`FrameOutput`.
        """
        B = read.shape[0]
        cat_in, kernel_in = read.transpose(1, 2).reshape(B, 2, self.config.dim, *self.config.grid).unbind(1)
        return torch.sigmoid(self.Category_branch_post(cat_in)), self.Kernel_branch.post(kernel_in)
