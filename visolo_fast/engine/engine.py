"""The engine: one model with one set of settings, the :class:`Stream` memories it runs
frames for, and the frame's device work it hands the tracker (:class:`FramePass`).

The two engines differ in what a stream's memory keeps and how a frame reads it, and share
the tail of a frame (grid weight -> extraction, :func:`~visolo_fast.engine.frame.frame_instances`):

- the reference engine (``backend="reference"``), the official structure in plain PyTorch:
  each stored frame's features, whose keys and values are recomputed at every read
  (:meth:`VisoloNet.forward_frame`) and whose keys are recomputed for the grid weights;
- the fast engine (any other backend): each stored frame's keys and values, computed once
  when the frame ran, read in place from the memory's buffers; the frame function
  (:func:`~visolo_fast.engine.frame.run_frame`) through a
  :class:`~visolo_fast.engine.runner.NetworkRunner` (dtype, compile, CUDA graphs), the ops on
  their fastest backend, and several streams in one batched pass.

Both end a frame's device work with its instances, whose number stays on the device until
the tracker reads it. With ``fixed_shapes`` (the default on a GPU), the fast engine runs the
whole frame at shapes that depend only on the batch and the memory's capacity: the memory
padded to a power of two of entries (masked by the read's ``lengths``; a new capacity, a
new graph, so at most log2(frames) of them), the instances extracted over all S grids. The
frame is then one function of tensors, compiled and captured in one CUDA graph, and no
operation in it waits for the GPU.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from visolo_fast import backends
from visolo_fast.engine.frame import MemoryRead, frame_instances
from visolo_fast.engine.instances import InstanceSlots
from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.precision import DTYPES, ieee_float32
from visolo_fast.engine.runner import NetworkRunner
from visolo_fast.engine.stages import stage
from visolo_fast.model.visolo import MemoryEntry
from visolo_fast.transfer import to_device



class FramePass(NamedTuple):
    """What the tracker needs of one frame's device work (one stream)."""

    instances: InstanceSlots  # the frame's instances, their number still on the device
    query: torch.Tensor  # [S, D]: the grids' tracking query embeddings (the association's rows)
    key: torch.Tensor  # [S, D]: the grids' key embeddings (the association's columns)


class Stream:
    """One stream of an engine (:meth:`Engine.new_stream`): its memory. The fast engine keeps
    each stored frame's ``keys`` [S, D] and ``values`` [S, 2 dim]; the reference engine its
    features (``frame_f``, ``cat_f``, ``kernel_f``, [dim, S1, S2] each)."""

    def __init__(self, memory: MemoryBank):
        self.memory = memory

    @property
    def memory_frames(self) -> list[int]:
        """The indices of the frames in the memory, oldest first."""
        return list(self.memory.frames)


class Engine:
    """One model run with one set of settings, for any number of streams
    (:class:`visolo_fast.Tracker`). It owns what is built once per model and settings: the
    weights in the chosen dtype and memory layout, the compiled code, the CUDA graphs.
    Trackers made from one engine share them, and :func:`visolo_fast.step_many` runs them in
    one batch.

    NB: the engine takes the model's weights as they are when it is made (a converted copy
    where the dtype or memory layout differs): make a new engine after changing them.
    """

    def __init__(self, model, backend: str = "auto", dtype: torch.dtype = torch.float32, compile: bool | str = False,
                 cuda_graphs: bool = False, fixed_shapes: bool | None = None):
        """
        Args:
            model (VisoloNet): the network, with its config.
            backend: ``"reference"`` runs the reference engine (the official structure in plain
                PyTorch, float32); any other runs the fast engine with the ops on that backend
                (``"auto"``: the fastest available), see :mod:`visolo_fast.backends`.
            dtype: the network's dtype in the fast engine: float32, float16 or bfloat16 (thresholds,
                NMS and the association stay float32). Reduced precision can change a
                decision near a threshold: README, "Performance".
            compile: run the network through ``torch.compile`` (fast engine); True for its default
                backend (inductor), or the name of a ``torch.compile`` backend.
            cuda_graphs: replay the network from CUDA graphs (fast engine, model on a GPU);
                with ``fixed_shapes``, a whole frame is one graph replay.
            fixed_shapes: run a frame's device work at shapes known in advance, with no
                operation that waits for the device (fast engine; module docstring); default:
                on a GPU. On the CPU the default is faster: masks only for the grids that pass
                the score threshold.

        Raises:
            ValueError: a setting out of range or that cannot go with another.
            BackendUnavailable: ``backend`` cannot run on the model's device.
        """
        device = next(model.parameters()).device
        _check_settings(device, backend, dtype, compile, cuda_graphs, fixed_shapes)
        runner = None if backend == "reference" else NetworkRunner(
            model, dtype, backend, compile, cuda_graphs,
            fixed_shapes=device.type == "cuda" if fixed_shapes is None else fixed_shapes)
        self._own(device, model, model.config, backend, runner)

    def _own(self, device: torch.device, net, config, backend: str, runner) -> None:
        """What an engine holds, made from a model (``__init__``) or a package (:meth:`from_package`)."""
        self.device, self.net, self.config, self.backend = device, net, config, backend
        # The fast engine's runner (a NetworkRunner, or a package's); None: the reference engine.
        self.runner = runner

    @classmethod
    def from_package(cls, path, **changes) -> "Engine":
        """An engine that runs an AOTInductor package of the frame function
        (``python -m visolo_fast export``, :mod:`visolo_fast.engine.package`): nothing is traced
        or compiled; its trackers give the fast engine's results.

        Args:
            path: the ``.pt2`` file.
            changes: config fields to run with other values than the package's: ``tracking_thr``,
                ``max_lost_frames``, and ``max_memory_frames`` up to the package's cap. The
                others are compiled into the package.

        Raises:
            PackageError: no such file, not a package, another format, a change the package
                was not built for, or a CUDA package on a machine without a GPU.
        """
        from visolo_fast.engine.package import PackageRunner

        runner = PackageRunner(path, changes)
        engine = cls.__new__(cls)
        engine._own(runner.device, None, runner.config, "auto", runner)
        return engine

    @property
    def fixed_shapes(self) -> bool:
        """Whether a frame's device work runs at fixed shapes (the fast engine; see ``__init__``)."""
        return self.runner is not None and self.runner.fixed_shapes

    @property
    def batched(self) -> bool:
        """Whether several streams can run in one pass (the fast engine)."""
        return self.runner is not None

    def new_stream(self) -> Stream:
        """An empty memory for one more stream."""
        limit = self.config.max_memory_frames
        if not self.batched:
            return Stream(MemoryBank(limit))  # features, made from the first frame's
        shapes = self.runner.memory_entry_shapes()
        return Stream(MemoryBank(limit, {name: (shape, self.runner.dtype, self.device) for name, shape in shapes.items()}))

    def precision(self) -> contextlib.AbstractContextManager:
        """The context every computation of this engine's frames runs in, the tracker's
        decisions included: float32 means IEEE float32 on a GPU too (:func:`ieee_float32`)."""
        return ieee_float32(self.device)

    @torch.no_grad()
    def run(self, streams: list[Stream], images: torch.Tensor) -> list[FramePass]:
        """One frame of each stream: reads and then updates each stream's memory.

        Args:
            streams: B streams of this engine (:meth:`new_stream`), each once; one for the reference engine.
            images (Tensor[B, 3, H, W]): normalised, float32; image b is stream b's next frame.
        """
        with self.precision():
            if not self.batched:
                return [self._run_reference(stream, image[None]) for stream, image in zip(streams, images)]
            return self._run_fast(streams, images)

    def _run_fast(self, streams: list[Stream], images: torch.Tensor) -> list[FramePass]:
        """The frame function over the streams' memories: at their true length (variable
        shapes; the longest sets the batch's, the read's ``lengths`` the others') or padded to a
        power of two entries (fixed shapes)."""
        entries = max(max(len(s.memory) for s in streams), 1)
        if self.fixed_shapes:
            entries = 1 << (entries - 1).bit_length()  # 1, 2, 4, 8, ...
        memories = [s.memory for s in streams]
        keys = _batch([m.view("keys", entries).flatten(0, 1) for m in memories])
        values = _batch([m.view("values", entries).flatten(0, 1) for m in memories])
        sources = []
        for m in memories:
            slots = m.weight_sources()
            # NB: a frame with one source takes it twice (the mean of two equal values is exact);
            # a first frame, unweighted, any two (their weight is not used).
            slots = (slots * 2)[:2] if slots else [0, 0]
            sources.append(torch.stack([m.buffers["keys"][slot] for slot in slots]))
        S = keys.shape[1] // entries
        read = MemoryRead(keys, values, to_device([len(m) * S for m in memories], self.device, torch.int64),
                          torch.stack(sources), to_device([len(m) > 0 for m in memories], self.device, torch.bool))
        with stage("network", self.fixed_shapes):
            out = self.runner.frame(images, read, any(len(m) == 0 for m in memories))
        for b, m in enumerate(memories):
            m.add(keys=out.keys[b], values=out.values[b])
        return [FramePass(out.instances[b], out.query[b], out.keys[b]) for b in range(len(streams))]

    def _run_reference(self, stream: Stream, image: torch.Tensor) -> FramePass:
        """The official structure: features stored, keys and values recomputed at every read."""
        memory, net = stream.memory, self.net
        stored = [MemoryEntry(*(memory.entry(field, slot)[None] for field in MemoryEntry._fields))
                  for slot in range(len(memory))]
        with stage("network"):  # backbone, heads and memory read: one pass of the reference network
            out = net.forward_frame(image, stored, "reference")
        with stage("memory"):
            slots = memory.weight_sources()
            source_keys = torch.stack([net.Tracking_branch.reference(stored[s].frame_f)[0] for s in (slots * 2)[:2]]) \
                if slots else out.key.new_zeros((2, *out.key.shape[1:]))
        memory.add(**{field: f[0] for field, f in zip(MemoryEntry._fields, out.memory_entry)})
        weighted = torch.tensor([bool(slots)], device=self.device)
        instances = frame_instances(out.query, out.scores, out.kernels, out.mask_features, source_keys[None],
                                    weighted, self.config, "reference", fixed=False)
        return FramePass(instances[0], out.query[0], out.key[0])


def _batch(views: list[torch.Tensor]) -> torch.Tensor:
    """One stream's memory as a batch of one is its buffer (a view); several are stacked."""
    return views[0][None] if len(views) == 1 else torch.stack(views)


def _check_settings(device: torch.device, backend: str, dtype, compile, cuda_graphs, fixed_shapes) -> None:
    """Every setting of an engine, checked once, before anything is built."""
    if backend not in backends.BACKENDS:
        raise ValueError(f"Engine: backend must be one of {backends.BACKENDS}, got {backend!r}")
    if backend == "reference":
        if dtype != torch.float32 or compile or cuda_graphs or fixed_shapes:
            raise ValueError(f"Engine: the reference engine (backend='reference') runs in float32 without compile, "
                             f"CUDA graphs or fixed shapes, got dtype={dtype}, compile={compile}, "
                             f"cuda_graphs={cuda_graphs}, fixed_shapes={fixed_shapes}; use backend='auto' for the "
                             f"fast engine")
        return
    if backend != "auto":
        reason = backends.why_unavailable(backend, device)
        if reason is not None:
            raise backends.BackendUnavailable("Engine", backend, f"the model is on {device}: {reason}")
    if fixed_shapes not in (None, True, False):
        raise ValueError(f"Engine: fixed_shapes must be None, True or False, got {fixed_shapes!r}")
    if not isinstance(compile, (bool, str)):
        raise ValueError(f"Engine: compile must be True, False or a torch.compile backend's name, got {compile!r}")
    if dtype not in DTYPES.values():
        raise ValueError(f"Engine: dtype must be one of {[f'torch.{name}' for name in DTYPES]}, got {dtype!r}")
    if cuda_graphs and device.type != "cuda":
        raise ValueError(f"Engine: cuda_graphs=True needs the model on a GPU, it is on {device}")
