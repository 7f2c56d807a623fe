"""The network side of the engine: an :class:`Engine` (one model, one set of settings)
runs frames through the network's passes (encode -> memory read -> predict) for its
streams, each of which keeps its own memory, and hands the tracker a :class:`FramePass`.

The two engines share the passes and differ in what a stream's memory keeps:

- the reference engine (``backend="reference"``), the official structure in plain PyTorch:
  each stored frame's features, whose keys and values are recomputed at every read
  (:meth:`VisoloNet.forward_frame`), and whose keys are recomputed for the grid weights;
- the fast engine (any other backend): each stored frame's keys and values, computed once
  when the frame ran; the network through a :class:`~visolo_fast.engine.runner.NetworkRunner`
  (dtype, compile, CUDA graphs), the ops on their fastest backend, and several streams in
  one batched pass.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import torch

from visolo_fast import backends
from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.runner import NetworkRunner
from visolo_fast.engine.stages import stage
from visolo_fast.ops import grid_weight


class FramePass(NamedTuple):
    """What the tracker needs of one frame's pass through the network (one stream)."""

    mask_features: torch.Tensor  # [dim, H/4, W/4], the network's dtype
    kernels: torch.Tensor  # [dim, S], the network's dtype
    scores: torch.Tensor  # float32 [C, S]: sigmoid category scores
    query: torch.Tensor  # [S, dim / 2]: tracking query embeddings (the association's rows)
    key: torch.Tensor  # [S, dim / 2]: tracking reference embeddings (the association's columns)
    weight: torch.Tensor | None  # float32 [S]: the grid weight; None for a video's first frame


class CachedEntry(NamedTuple):
    """What the fast engine's memory keeps of a frame."""

    key: torch.Tensor  # [S, dim / 2]
    values: torch.Tensor  # [S, 2 dim]


class ReferenceStream:
    """One stream's memory in the official structure: features, keys and values recomputed."""

    def __init__(self, net, limit: int | None):
        self.net, self.memory = net, MemoryBank(limit)

    def run(self, image: torch.Tensor) -> FramePass:
        """image (Tensor[1, 3, H, W], normalised) -> the frame's :class:`FramePass`; the frame
        is then in the memory."""
        with stage("network"):  # backbone, heads and memory read: one pass of the reference network
            out = self.net.forward_frame(image, self.memory.entries, "reference")
        self.memory.append(out.memory_entry)
        with stage("memory"):
            sources = self.memory.weight_sources()
            weight = None
            if sources:
                keys = torch.stack([self.net.Tracking_branch.reference(e.frame_f) for e in sources], dim=1)
                weight = grid_weight(out.query, keys, "reference")[0]  # [1, S] -> [S]
        return FramePass(out.mask_features[0], out.kernels[0].flatten(1), out.scores[0].flatten(1), out.query[0],
                         out.key[0], weight)


class CachedStream:
    """One stream's memory in the fast engine: each frame's keys and values, computed once."""

    def __init__(self, limit: int | None):
        self.memory = MemoryBank(limit)


class Engine:
    """One model run with one set of settings, for any number of streams
    (:class:`visolo_fast.Tracker`). It owns what is built once per model and settings: the
    weights in the chosen dtype and memory layout, the compiled code, the CUDA graphs.
    Trackers made from one engine share them, and :func:`visolo_fast.step_many` runs them in
    one batch.

    NB: the engine takes the model's weights as they are when it is made (a converted copy
    where the dtype or memory layout differs): make a new engine after changing them.
    """

    def __init__(self, net, backend: str = "auto", dtype: torch.dtype = torch.float32, compile: bool | str = False,
                 cuda_graphs: bool = False):
        """
        Args:
            net (VisoloNet): the network, with its config.
            backend: ``"reference"`` runs the reference engine (the official structure in plain
                PyTorch, float32); any other runs the fast engine with the ops on that backend
                (``"auto"``: the fastest available), see :mod:`visolo_fast.backends`.
            dtype: the network's dtype in the fast engine: float32, float16 or bfloat16 (thresholds,
                NMS and the association stay float32). Reduced precision can change a
                decision near a threshold: README, "Performance".
            compile: run the network's passes through ``torch.compile`` (fast engine); True for
                its default backend (inductor), or the name of a ``torch.compile`` backend.
            cuda_graphs: replay the network's passes from CUDA graphs (fast engine, model on a GPU).
        """
        if backend not in backends.BACKENDS:
            raise ValueError(f"Engine: backend must be one of {backends.BACKENDS}, got {backend!r}")
        self.net, self.config, self.backend = net, net.config, backend
        self.device = next(net.parameters()).device
        self.runner: NetworkRunner | None = None
        if backend == "reference":
            if dtype != torch.float32 or compile or cuda_graphs:
                raise ValueError(f"Engine: the reference engine (backend='reference') runs in float32 without compile "
                                 f"or CUDA graphs, got dtype={dtype}, compile={compile}, cuda_graphs={cuda_graphs}; "
                                 f"use backend='auto' for the fast engine")
        else:
            try:
                self.runner = NetworkRunner(net, dtype, backend, compile, cuda_graphs)
            except ValueError as exc:
                raise ValueError(f"Engine: {exc}") from None

    @property
    def batched(self) -> bool:
        """Whether several streams can run in one pass (the fast engine)."""
        return self.runner is not None

    def new_stream(self) -> ReferenceStream | CachedStream:
        """An empty memory for one more stream."""
        limit = self.config.max_memory_frames
        return CachedStream(limit) if self.batched else ReferenceStream(self.net, limit)

    def run(self, streams: list, images: torch.Tensor) -> list[FramePass]:
        """One frame of each stream: the network's pass, reading and then updating each
        stream's memory.

        Args:
            streams: B streams of this engine (:meth:`new_stream`), each once; one for the reference engine.
            images (Tensor[B, 3, H, W]): normalised, float32; image b is stream b's next frame.
        """
        if not self.batched:
            return [stream.run(image[None]) for stream, image in zip(streams, images)]
        runner, backend = self.runner, self.backend
        enc, values = runner.encode(images)
        new = [CachedEntry(enc.key[b], values[b]) for b in range(len(streams))]
        if len(streams) > 1:  # a stream's memory must not keep the whole batch alive
            new = [CachedEntry(e.key.clone(), e.values.clone()) for e in new]
        with stage("memory"):
            read = self._read(streams, enc, new)
        scores, kernels = runner.predict(read)
        passes = []
        with stage("memory"):
            for b, stream in enumerate(streams):
                memory = stream.memory
                memory.append(new[b])
                sources = memory.weight_sources()
                weight = None
                if sources:
                    keys = torch.stack([entry.key for entry in sources])[None]  # [1, E, S, D]
                    weight = grid_weight(enc.query[b:b + 1], keys, backend)[0]  # float32 whatever the inputs' dtype
                passes.append(FramePass(enc.mask_features[b], kernels[b].flatten(1), scores[b].flatten(1),
                                        enc.query[b], enc.key[b], weight))
        return passes

    def _read(self, streams: list[CachedStream], enc, new: list[CachedEntry]) -> torch.Tensor:
        """The memory read of each stream's frame, Tensor[B, S, 2 dim]. Streams whose memories
        have the same length are read in one call; a stream's first frame reads itself."""
        runner = self.runner
        groups: dict[int, list[int]] = defaultdict(list)
        for b, s in enumerate(streams):
            groups[max(len(s.memory), 1)].append(b)
        read = None
        for members in groups.values():
            keys, values = [], []
            for b in members:
                stored = streams[b].memory.entries or [new[b]]
                keys.append(torch.cat([e.key for e in stored]))
                values.append(torch.cat([e.values for e in stored]))
            if len(members) == len(streams):
                return runner.read(enc, torch.stack(keys), torch.stack(values))
            # NB: slices, not an index tensor (whose host-to-device copy would synchronise).
            part = enc._replace(**{f: torch.cat([getattr(enc, f)[b:b + 1] for b in members])
                                   for f in ("query", "cat_f", "kernel_f")})  # what the read uses
            got = runner.read(part, torch.stack(keys), torch.stack(values))
            if read is None:
                read = got.new_empty((len(streams), *got.shape[1:]))
            for j, b in enumerate(members):
                read[b] = got[j]
        return read
