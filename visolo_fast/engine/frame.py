"""The one frame function of the fast engine, and the tail it shares with the reference engine.

:func:`run_frame` is a frame of B streams, from their images and memories to their
instances: encode -> memory read -> predict -> grid weight -> extraction. Every fast path
runs it: at variable shapes (the memories at their true lengths, the passes optionally
compiled or CUDA-graphed one by one) and at fixed shapes (the memories padded to a capacity,
the whole function compiled or captured as one). :func:`frame_instances` (grid weight ->
extraction) is its tail, which the reference engine runs after its own network pass.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from visolo_fast.config import VisoloConfig
from visolo_fast.engine.instances import InstanceSlots, extract_instances
from visolo_fast.engine.stages import stage
from visolo_fast.ops import grid_weight


class MemoryRead(NamedTuple):
    """What a frame of B streams reads of their memories (:meth:`visolo_fast.engine.MemoryBank.view`)."""

    keys: torch.Tensor  # [B, T * S, D]: the stored frames' reference embeddings, then padding
    values: torch.Tensor  # [B, T * S, 2 dim]: their memory values, then padding
    lengths: torch.Tensor  # int64 [B]: the grids stored in each memory; 0: the stream's first frame
    source_keys: torch.Tensor  # [B, 2, S, D]: the keys of the two frames each grid weight compares with
    weighted: torch.Tensor  # bool [B]: False where a stream's frame has no grid weight (its first)


class FrameOut(NamedTuple):
    """A frame of B streams, as the engine needs it."""

    keys: torch.Tensor  # [B, S, D]: the frames' reference embeddings (their memory keys, the association's columns)
    values: torch.Tensor  # [B, S, 2 dim]: the frames' memory values
    query: torch.Tensor  # [B, S, D]: the frames' tracking query embeddings (the association's rows)
    instances: list[InstanceSlots]  # per stream


def run_frame(net, config: VisoloConfig, backend: str, fixed: bool, images: torch.Tensor, memory: MemoryRead,
              first: bool) -> FrameOut:
    """A frame of B streams: network, memory read, grid weight, instances.

    Args:
        net: the network's passes (:class:`visolo_fast.VisoloNet`, or the runner's compiled
            or graphed passes with its methods' signatures).
        config, backend: thresholds and the ops' backend.
        fixed: extraction over all S grids (no operation waits for the device: the function
            can be traced and captured as one); else over the grids that pass (a ``nonzero``).
        images (Tensor[B, 3, H, W]): normalised, in the network's dtype.
        memory: what the frames read (padded memories: the read takes ``lengths``).
        first: whether some stream runs its first frame (``lengths`` 0), which reads itself.
    """
    timed = not fixed  # NB: a timer would synchronise inside a captured graph: fixed shapes are timed whole
    with stage("backbone", timed):
        features = net.backbone(images)
    with stage("heads", timed):
        enc = net.heads(*features)
        values = net.memory_values(enc.cat_f, enc.kernel_f)  # the frame's memory values, computed once
    with stage("memory", timed):
        keys, stored, lengths = memory.keys, memory.values, memory.lengths
        if first:
            # A stream's first frame reads itself: its own entry in the first slot (where it
            # will be stored). NB: a copy of the memories, on first frames only (a package,
            # exported with first=True, makes it every frame: engine/package.py).
            S, own = enc.key.shape[1], (lengths == 0)[:, None, None]
            keys = torch.cat([torch.where(own, enc.key, keys[:, :S]), keys[:, S:]], dim=1)
            stored = torch.cat([torch.where(own, values, stored[:, :S]), stored[:, S:]], dim=1)
            lengths = torch.where(lengths == 0, S, lengths)
        read = net.read(enc, keys, stored, backend, lengths)
    with stage("heads", timed):
        scores, kernels = net.predict(read)
    instances = frame_instances(enc.query, scores.float(), kernels, enc.mask_features, memory.source_keys,
                                memory.weighted, config, backend, fixed)
    return FrameOut(enc.key, values, enc.query, instances)


def frame_instances(query: torch.Tensor, scores: torch.Tensor, kernels: torch.Tensor, mask_features: torch.Tensor,
                    source_keys: torch.Tensor, weighted: torch.Tensor, config: VisoloConfig, backend: str,
                    fixed: bool) -> list[InstanceSlots]:
    """The tail of a frame of B streams: the grid weights (spec section 4), then the instances (section 5).

    Args:
        query (Tensor[B, S, D]), scores (float32 Tensor[B, C, S1, S2]), kernels (Tensor[B, E, S1, S2]),
        mask_features (Tensor[B, E, h, w]): the network's outputs.
        source_keys (Tensor[B, 2, S, D]): the reference embeddings of the frames each grid weight
            compares with (a frame with one source takes it twice: the mean of two equal values is exact).
        weighted (bool Tensor[B]): False for a stream's first frame, which has no grid weight.
        fixed: see :func:`run_frame`.
    """
    with stage("memory", not fixed):
        # NB: x * 1.0 == x: an unweighted frame's scores are as if no weight were applied.
        weights = torch.where(weighted[:, None], grid_weight(query, source_keys, backend), 1.0)
    return [extract_instances(mask_features[b], kernels[b].flatten(1), scores[b].flatten(1), weights[b], config,
                              backend, fixed=fixed) for b in range(query.shape[0])]
