"""What the fast engine runs the frame function with: the weights in the chosen dtype and
memory layout, ``torch.compile`` and CUDA graphs around :func:`~visolo_fast.engine.frame.run_frame`.

At variable shapes the memory read is the one part of a frame whose shapes change (the
memory grows every 5 frames); it is a single fused op (:func:`visolo_fast.ops.memory_read`),
so the passes around it (backbone, heads, the heads after the read) are compiled or graphed
one by one and the frame function runs them eagerly. With ``fixed_shapes`` the whole frame
function is compiled or graphed as one: the memory padded to a capacity, the instances
extracted at fixed sizes, one compiled graph and one CUDA graph per capacity.

A runner belongs to one :class:`~visolo_fast.engine.engine.Engine`, which its trackers share.
"""

from __future__ import annotations

import copy
import functools
from typing import Callable

import torch
from torch.utils._pytree import tree_map

from visolo_fast.engine.frame import FrameOut, MemoryRead, run_frame

class CudaGraphed:
    """Replays ``fn`` from a CUDA graph, one graph per input signature (shapes, and the values
    of arguments that are not tensors).

    ``fn`` takes (tuples of) tensors and constants, and returns (tuples of) tensors whose
    shapes depend only on the inputs'.
    The first call with a signature warms ``fn`` up on a side stream (library handles,
    autotuning, Triton compilation), then captures it.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list, object]] = {}

    def __call__(self, *args):
        tensors, spec = torch.utils._pytree.tree_flatten(args)
        device = next(a.device for a in tensors if isinstance(a, torch.Tensor))
        signature = (spec, tuple((a.shape, a.dtype, a.stride()) if isinstance(a, torch.Tensor) else a for a in tensors))
        # NB: capture and replay on the model's GPU, which need not be the current one.
        with torch.cuda.device(device):
            if signature not in self.graphs:
                static = [a.clone() if isinstance(a, torch.Tensor) else a for a in tensors]
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(3):
                        self.fn(*torch.utils._pytree.tree_unflatten(static, spec))
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                    out = self.fn(*torch.utils._pytree.tree_unflatten(static, spec))
                self.graphs[signature] = (graph, static, out)
            graph, static, out = self.graphs[signature]
            for s, a in zip(static, tensors):
                if isinstance(a, torch.Tensor):
                    s.copy_(a)
            graph.replay()
            # NB: the outputs live in the graph's memory pool and the next replay overwrites
            # them, but the engine keeps a frame's outputs for later frames (memory, pending frame).
            return tree_map(torch.clone, out)


def _frozen(compiled: Callable) -> Callable:
    """Runs a ``torch.compile``'d pass with inductor's freezing, for inference on the CPU: the
    weights become constants of the graph (FrozenBN folded into the convolutions, oneDNN's
    prepacked weights) instead of inputs read on every call.

    NB: dynamo reads ``freezing`` when it traces and checks its guards, not only inductor when
    it compiles (``torch.compile(options=...)`` would reach inductor alone, and the weights
    would stay inputs): hence the patch around every call. Frozen weights are guarded by
    identity, so another runner's weights (another model, dtype or copy) trace and compile
    their own graph rather than reuse this one's constants.
    """
    import torch._inductor.config as inductor_config

    def run(*args):
        with inductor_config.patch(freezing=True):
            return compiled(*args)

    return run


class CompiledPasses:
    """A network's passes, each compiled or graphed on its own (variable shapes): what
    :func:`~visolo_fast.engine.frame.run_frame` calls of the network; the memory read, whose
    size changes, runs eagerly between them."""

    def __init__(self, net, wrap: Callable[[Callable], Callable]):
        self.backbone, self.heads = wrap(net.backbone), wrap(net.heads)
        self.memory_values, self.predict = wrap(net.memory_values), wrap(net.predict)
        self.read = net.read


class NetworkRunner:
    """Runs the frame function of the fast engine (:func:`~visolo_fast.engine.frame.run_frame`)
    on a :class:`visolo_fast.VisoloNet` in a chosen dtype and memory layout, compiled and/or graphed."""

    def __init__(self, net, dtype: torch.dtype, backend: str, compile: bool | str, cuda_graphs: bool,
                 channels_last: bool | None = None, fixed_shapes: bool = False):
        """
        Args:
            net (VisoloNet): the model; not modified (a copy holds converted weights).
            dtype: the network's dtype (float32, float16 or bfloat16); the decisions run in float32.
            backend: for the ops, see :mod:`visolo_fast.backends`.
            compile: wrap the passes in ``torch.compile``: True for inductor (on the CPU with its
                freezing: the weights compiled in as constants), or a backend's name.
            cuda_graphs: replay the passes from CUDA graphs (the model must be on a GPU).
            channels_last: run the convolutions on NHWC tensors; default: on the CPU (oneDNN's
                convolutions: backbone 103 -> 77 ms, heads 301 -> 284 ms at 352 x 624 in float32 here)
                and on a GPU in float16/bfloat16 (tensor-core convolutions want NHWC).
                NB: with channels_last or another dtype, the runner holds a converted copy of the weights.
            fixed_shapes: compile and graph the whole frame function as one (the memories padded,
                the extraction over all grids) rather than the passes one by one.

        The settings are checked by :class:`~visolo_fast.engine.engine.Engine`.
        """
        self.device = next(net.parameters()).device
        if channels_last is None:
            channels_last = self.device.type == "cpu" or dtype != torch.float32
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net
        if dtype != next(net.parameters()).dtype or channels_last:
            self.net = copy.deepcopy(net).to(dtype=dtype, memory_format=self.memory_format)
        self.backend, self.fixed_shapes = backend, fixed_shapes

        def wrap(fn: Callable) -> Callable:
            if compile is True and self.device.type == "cpu":
                fn = _frozen(torch.compile(fn, fullgraph=True, dynamic=False, backend="inductor"))
            elif compile:
                fn = torch.compile(fn, fullgraph=True, dynamic=False, backend="inductor" if compile is True else compile)
            return CudaGraphed(fn) if cuda_graphs else fn

        net, config = self.net, self.net.config
        # At variable shapes, the passes the frame function runs (each compiled or graphed).
        self.passes: CompiledPasses | None = None
        if fixed_shapes:
            self._frame = wrap(functools.partial(run_frame, net, config, backend, True))
        else:
            self.passes = CompiledPasses(net, wrap)
            self._frame = functools.partial(run_frame, self.passes, config, backend, False)

    def memory_entry_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.net.memory_entry_shapes()

    def frame(self, images: torch.Tensor, memory: MemoryRead, first: bool) -> FrameOut:
        """A frame of B streams (:func:`~visolo_fast.engine.frame.run_frame`).

        Args:
            images (Tensor[B, 3, H, W]): float32, normalised.
            memory: the memories in the runner's dtype, padded to one capacity (at fixed shapes:
                a power of two entries).
            first: whether some stream runs its first frame.
        """
        images = images.to(dtype=self.dtype, memory_format=self.memory_format)
        return self._frame(images, memory, first)
