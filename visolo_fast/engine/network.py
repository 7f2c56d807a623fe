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

Both end a frame's device work with its instances (:func:`~visolo_fast.engine.instances.extract_instances`),
whose number stays on the device until the tracker reads it. With ``fixed_shapes`` (the
default on a GPU), the fast engine runs the whole frame at shapes that depend only on the
batch and the memory's capacity: the memory padded to a power of two of entries (masked
by the read's ``lengths``; a new capacity, a new graph, so at most log2(frames) of them),
the instances extracted over all S grids. The frame is then one function of tensors,
compiled and captured in one CUDA graph, and no operation in it waits for the GPU.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import torch

from visolo_fast import backends
from visolo_fast.engine.instances import InstanceSlots, extract_instances
from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.runner import NetworkRunner
from visolo_fast.engine.stages import stage
from visolo_fast.ops import grid_weight
from visolo_fast.transfer import to_device


class FramePass(NamedTuple):
    """What the tracker needs of one frame's device work (one stream)."""

    instances: InstanceSlots  # the frame's instances, their number still on the device
    query: torch.Tensor  # [S, dim / 2]: tracking query embeddings (the association's rows)
    key: torch.Tensor  # [S, dim / 2]: tracking reference embeddings (the association's columns)


class CachedEntry(NamedTuple):
    """What the fast engine's memory keeps of a frame."""

    key: torch.Tensor  # [S, dim / 2]
    values: torch.Tensor  # [S, 2 dim]


class ReferenceStream:
    """One stream's memory in the official structure: features, keys and values recomputed."""

    def __init__(self, net, limit: int | None):
        self.net, self.memory = net, MemoryBank(limit)

    def run(self, image: torch.Tensor, config) -> FramePass:
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
        inst = extract_instances(out.mask_features[0], out.kernels[0].flatten(1), out.scores[0].flatten(1), weight,
                                 config, "reference")
        return FramePass(inst, out.query[0], out.key[0])


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
                 cuda_graphs: bool = False, fixed_shapes: bool | None = None):
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
            cuda_graphs: replay the network's passes from CUDA graphs (fast engine, model on a GPU);
                with ``fixed_shapes``, a whole frame is one graph replay.
            fixed_shapes: run a frame's device work at shapes known in advance, with no
                operation that waits for the device (fast engine; module docstring); default:
                on a GPU. On the CPU the default is faster: masks only for the grids that pass
                the score threshold.
        """
        if backend not in backends.BACKENDS:
            raise ValueError(f"Engine: backend must be one of {backends.BACKENDS}, got {backend!r}")
        self.net, self.config, self.backend = net, net.config, backend
        self.device = next(net.parameters()).device
        self.runner: NetworkRunner | None = None
        if backend == "reference":
            if dtype != torch.float32 or compile or cuda_graphs or fixed_shapes:
                raise ValueError(f"Engine: the reference engine (backend='reference') runs in float32 without compile, "
                                 f"CUDA graphs or fixed shapes, got dtype={dtype}, compile={compile}, "
                                 f"cuda_graphs={cuda_graphs}, fixed_shapes={fixed_shapes}; use backend='auto' for the "
                                 f"fast engine")
        else:
            if fixed_shapes not in (None, True, False):
                raise ValueError(f"Engine: fixed_shapes must be None, True or False, got {fixed_shapes!r}")
            if fixed_shapes is None:
                fixed_shapes = self.device.type == "cuda"
            try:
                self.runner = NetworkRunner(net, dtype, backend, compile, cuda_graphs, fixed_shapes=fixed_shapes)
            except ValueError as exc:
                raise ValueError(f"Engine: {exc}") from None

    @property
    def fixed_shapes(self) -> bool:
        """Whether a frame's device work runs at fixed shapes (the fast engine; see ``__init__``)."""
        return self.runner is not None and self.runner.fixed_shapes

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
            return [stream.run(image[None], self.config) for stream, image in zip(streams, images)]
        if self.fixed_shapes:
            return self._run_fixed(streams, images)
        runner, backend, cfg = self.runner, self.backend, self.config
        enc, values = runner.encode(images)
        new = [CachedEntry(enc.key[b], values[b]) for b in range(len(streams))]
        if len(streams) > 1:  # a stream's memory must not keep the whole batch alive
            new = [CachedEntry(e.key.clone(), e.values.clone()) for e in new]
        with stage("memory"):
            read = self._read(streams, enc, new)
        scores, kernels = runner.predict(read)
        weights = []
        with stage("memory"):
            for b, stream in enumerate(streams):
                memory = stream.memory
                memory.append(new[b])
                sources = memory.weight_sources()
                weight = None
                if sources:
                    keys = torch.stack([entry.key for entry in sources])[None]  # [1, E, S, D]
                    weight = grid_weight(enc.query[b:b + 1], keys, backend)[0]  # float32 whatever the inputs' dtype
                weights.append(weight)
        # NB: after the memory stage, which would otherwise count the extraction's stages twice.
        return [FramePass(extract_instances(enc.mask_features[b], kernels[b].flatten(1), scores[b].flatten(1),
                                            weights[b], cfg, backend), enc.query[b], enc.key[b])
                for b in range(len(streams))]

    def _run_fixed(self, streams: list[CachedStream], images: torch.Tensor) -> list[FramePass]:
        """:meth:`run` at fixed shapes: the memories padded to a capacity of a power of two
        entries, the whole frame one call of the runner."""
        runner, device = self.runner, images.device
        S, D = self.config.num_grids, self.config.dim // 2
        capacity = 1 << max(max(len(s.memory) for s in streams) - 1, 0).bit_length()  # 1, 2, 4, 8, ...
        keys, values, sources = [], [], []
        for s in streams:
            stored = s.memory.entries
            pad = (capacity - len(stored)) * S
            keys.append(torch.cat([e.key for e in stored] + [runner.zeros((pad, D))]))
            values.append(torch.cat([e.values for e in stored] + [runner.zeros((pad, 2 * self.config.dim))]))
            # NB: a frame with one source is weighted by it alone: the mean of two equal values is exact.
            src = s.memory.next_weight_sources()
            sources.append(torch.stack([e.key for e in src + src[:1]] if src else [runner.zeros((S, D))] * 2))
        lengths = to_device([len(s.memory) * S for s in streams], device, torch.int64)
        weighted = to_device([bool(s.memory.entries) for s in streams], device, torch.bool)
        with stage("network"):
            key, new_values, query, slots = runner.frame(images, torch.stack(keys), torch.stack(values), lengths,
                                                         torch.stack(sources), weighted)
        passes = []
        for b, stream in enumerate(streams):
            entry = CachedEntry(key[b], new_values[b])
            if len(streams) > 1:  # a stream's memory must not keep the whole batch alive
                entry = CachedEntry(entry.key.clone(), entry.values.clone())
            stream.memory.append(entry)
            passes.append(FramePass(slots[b], query[b], key[b]))
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
