"""The fast engine's network: the weights in the chosen dtype and memory layout, the two
memory-independent passes (backbone, heads) and the heads after the memory read,
optionally compiled (``torch.compile``) and/or replayed from CUDA graphs.

The memory read is the one part of a frame whose shapes change (the memory grows every
5 frames); it is a single fused op (:func:`visolo_fast.ops.memory_read`), so by default it
runs between the graphs rather than inside them. With ``fixed_shapes`` the whole frame is
one function instead (:meth:`NetworkRunner.frame`): the memory padded to a capacity, the
instances extracted at fixed sizes, one compiled graph and one CUDA graph per capacity.

A runner belongs to one :class:`~visolo_fast.engine.network.Engine`, which its trackers share.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch
from torch.utils._pytree import tree_map

from visolo_fast.engine.instances import InstanceSlots, extract_instances
from visolo_fast.engine.stages import stage
from visolo_fast.model.visolo import Encoded
from visolo_fast.ops import grid_weight

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class CudaGraphed:
    """Replays ``fn`` from a CUDA graph, one graph per input signature (the batch size).

    ``fn`` takes and returns (tuples of) tensors whose shapes depend only on the inputs'.
    The first call with a signature warms ``fn`` up on a side stream (library handles,
    autotuning, Triton compilation), then captures it.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], object]] = {}

    def __call__(self, *args: torch.Tensor):
        device = args[0].device
        key = tuple((a.shape, a.dtype, a.stride()) for a in args)
        # NB: capture and replay on the model's GPU, which need not be the current one.
        with torch.cuda.device(device):
            if key not in self.graphs:
                static = [a.clone() for a in args]
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(3):
                        self.fn(*static)
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                    out = self.fn(*static)
                self.graphs[key] = (graph, static, out)
            graph, static, out = self.graphs[key]
            for s, a in zip(static, args):
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


class NetworkRunner:
    """Runs a :class:`visolo_fast.VisoloNet`'s passes for the fast engine."""

    def __init__(self, net, dtype: torch.dtype, backend: str, compile: bool | str, cuda_graphs: bool,
                 channels_last: bool | None = None, fixed_shapes: bool = False):
        """
        Args:
            net (VisoloNet): the model; not modified (a copy holds converted weights).
            dtype: the network's dtype (float32, float16 or bfloat16); the decisions run in float32.
            backend: for the ops inside the network, see :mod:`visolo_fast.backends`.
            compile: wrap the passes in ``torch.compile``: True for inductor (on the CPU with its
                freezing: the weights compiled in as constants), or a backend's name.
            cuda_graphs: replay the passes from CUDA graphs (the model must be on a GPU).
            channels_last: run the convolutions on NHWC tensors; default: on the CPU (oneDNN's
                convolutions: backbone 103 -> 77 ms, heads 301 -> 284 ms at 352 x 624 in float32 here)
                and on a GPU in float16/bfloat16 (tensor-core convolutions want NHWC).
                NB: with channels_last or another dtype, the runner holds a converted copy of the weights.
            fixed_shapes: compile and graph the whole frame (:meth:`frame`) rather than the passes.
        """
        if not isinstance(compile, (bool, str)):
            raise ValueError(f"compile must be True, False or a torch.compile backend's name, got {compile!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {[str(d) for d in DTYPES]}, got {dtype!r}")
        self.device = next(net.parameters()).device
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs the model on a GPU, it is on {self.device}")
        if channels_last is None:
            channels_last = self.device.type == "cpu" or dtype != torch.float32
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net
        if dtype != next(net.parameters()).dtype or channels_last:
            self.net = copy.deepcopy(net).to(dtype=dtype, memory_format=self.memory_format)
        self.backend, self.fixed_shapes = backend, fixed_shapes
        net, config = self.net, self.net.config

        def heads(res2: torch.Tensor, res3: torch.Tensor, res4: torch.Tensor) -> tuple[Encoded, torch.Tensor]:
            enc = net.heads(res2, res3, res4)
            return enc, net.memory_values(enc.cat_f, enc.kernel_f)  # the frame's memory values, once

        def wrap(fn: Callable) -> Callable:
            if compile is True and self.device.type == "cpu":
                fn = _frozen(torch.compile(fn, fullgraph=True, dynamic=False, backend="inductor"))
            elif compile:
                fn = torch.compile(fn, fullgraph=True, dynamic=False, backend="inductor" if compile is True else compile)
            return CudaGraphed(fn) if cuda_graphs else fn

        def frame(images: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor,
                  weight_keys: torch.Tensor, weighted: torch.Tensor):
            enc, new_values = heads(*net.backbone(images))
            # A stream's first frame reads itself (its memory is empty): its entry goes in the first slot.
            S, first = enc.key.shape[1], lengths == 0
            own = first[:, None, None]
            keys = torch.cat([torch.where(own, enc.key, keys[:, :S]), keys[:, S:]], dim=1)
            values = torch.cat([torch.where(own, new_values, values[:, :S]), values[:, S:]], dim=1)
            read = net.read(enc, keys, values, backend, torch.where(first, S, lengths))
            scores, kernels = net.predict(read)
            weight = torch.where(weighted[:, None], grid_weight(enc.query, weight_keys, backend), 1.0)
            slots = [extract_instances(enc.mask_features[b], kernels[b].flatten(1), scores[b].float().flatten(1), weight[b],
                                       config, backend, fixed=True) for b in range(images.shape[0])]
            return enc.key, new_values, enc.query, slots

        if fixed_shapes:
            self._frame = wrap(frame)
        else:
            self._backbone = wrap(net.backbone)
            self._heads = wrap(heads)
            self._predict = wrap(net.predict)

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Padding in the network's dtype, on its device."""
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def frame(self, images: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor,
              weight_keys: torch.Tensor, weighted: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[InstanceSlots]]:
        """A whole frame of B streams at fixed shapes (``fixed_shapes``): network, memory read,
        grid weight, instances; no operation waits for the device.

        Args:
            images (Tensor[B, 3, H, W]): float32, normalised.
            keys (Tensor[B, T * S, dim / 2]), values (Tensor[B, T * S, 2 dim]): each stream's memory,
                padded to a capacity of T entries, in the runner's dtype.
            lengths (int64 Tensor[B]): the grids stored in each memory; 0: the stream's first frame,
                which reads itself.
            weight_keys (Tensor[B, 2, S, dim / 2]): the keys of the frames each grid weight compares with.
            weighted (bool Tensor[B]): False for a stream's first frame, which has no grid weight.

        Returns:
            (key, values, query, instances): the frames' keys Tensor[B, S, dim / 2] and memory values
            Tensor[B, S, 2 dim] (their memory entries), tracking queries Tensor[B, S, dim / 2], and per
            stream its :class:`InstanceSlots`.
        """
        images = images.to(dtype=self.dtype, memory_format=self.memory_format)
        return self._frame(images, keys, values, lengths, weight_keys, weighted)

    def encode(self, images: torch.Tensor) -> tuple[Encoded, torch.Tensor]:
        """images (Tensor[B, 3, H, W], float32, normalised) -> (:class:`Encoded`, the frames' memory
        values Tensor[B, S, 2 dim]), in the runner's dtype."""
        images = images.to(dtype=self.dtype, memory_format=self.memory_format)
        with stage("backbone"):
            features = self._backbone(images)
        with stage("heads"):
            return self._heads(*features)

    def read(self, enc: Encoded, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The memory read (:meth:`VisoloNet.read`) with the runner's op backend: one fused op, between the graphs."""
        return self.net.read(enc, keys, values, self.backend)

    def predict(self, read: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """read (Tensor[B, S, 2 dim]) -> (float32 scores Tensor[B, C, S1, S2], kernels Tensor[B, dim, S1, S2])."""
        with stage("heads"):
            scores, kernels = self._predict(read)
            return scores.float(), kernels


@contextlib.contextmanager
def ieee_float32(device: torch.device):
    """float32 means float32 on a GPU too: cuDNN convolutions default to TF32 (a 10-bit
    mantissa) on Ampere and later, and a user may have enabled it for matrix products;
    either would break the parity with the reference and the float32 decisions. The
    engine runs its frames under this (bfloat16 is the fast choice)."""
    if device.type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
