"""The network side of the tracker: how a frame is run against the memory, and the
tracking embeddings the tracker asks for afterwards. Two engines, one interface:

- :class:`ReferenceFrames`, the official structure in plain PyTorch: the memory stores
  each frame's features, and every frame recomputes the tracking embeddings and memory
  values of every stored frame it reads (the oracle of the tests);
- :class:`FastFrames`: the memory stores each frame's keys (tracking reference
  embeddings) and values, computed once when the frame ran; the network runs through a
  :class:`~visolo_fast.engine.runner.NetworkRunner` (dtype, compile, CUDA graphs), the
  ops on their fastest backend, and several streams can run in one batched forward.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import torch

from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.runner import NetworkRunner
from visolo_fast.engine.stages import stage
from visolo_fast.ops import grid_weight
from visolo_fast.ops.memory_read import memory_read


class Ran(NamedTuple):
    """One frame the network ran on, as the tracker keeps it until its instances are final."""

    mask_features: torch.Tensor  # [dim, H/4, W/4], the network's dtype
    kernels: torch.Tensor  # [dim, S], the network's dtype
    scores: torch.Tensor  # float32 [C, S]
    association: torch.Tensor | None  # float32 [S, S]: sigmoid similarity, the previous frame's grids as rows
    state: object  # what the engine needs for the embeddings and the memory


class ReferenceFrames:
    """The official structure: features in memory, embeddings recomputed when needed."""

    def __init__(self, net):
        self.net, self.memory = net, MemoryBank(net.config.max_memory_frames)

    def run(self, image: torch.Tensor) -> Ran:
        """image (Tensor[1, 3, H, W], normalised) -> :class:`Ran`, reading the memory."""
        with stage("network"):  # backbone, heads and memory read: one pass of the reference network
            out = self.net.forward_frame(image, self.memory.entries, "reference")
        association = None if out.association is None else out.association[0]
        return Ran(out.mask_features[0], out.kernels[0].flatten(1), out.scores[0].flatten(1), association, out)

    def remember(self, index: int, ran: Ran) -> None:
        self.memory.add(index, ran.state.memory_entry)

    def grid_weight(self, ran: Ran) -> torch.Tensor | None:
        """The grid weight (float32 [S]) of the newest frame, ``ran``, once it is in memory."""
        sources = self.memory.weight_sources()
        if not sources:
            return None
        track = self.net.Tracking_branch
        keys = torch.stack([track.reference(entry.frame_f) for entry in sources], dim=1)  # [1, E, S, D]
        return grid_weight(track.query(ran.state.frame_f), keys, "reference")[0]

    def queries(self, state, grids: torch.Tensor) -> torch.Tensor:
        """The tracking query embeddings (float32 [k, D]) of the grids ``grids`` of a frame
        (its :attr:`Ran.state`)."""
        return self.net.Tracking_branch.query(state.frame_f)[0, grids]

    def keys(self, state, grids: torch.Tensor) -> torch.Tensor:
        """The tracking reference embeddings (float32 [k, D]) of the grids ``grids`` of a frame
        (its :attr:`Ran.state`)."""
        return self.net.Tracking_branch.reference(state.frame_f)[0, grids]


class _Cached(NamedTuple):
    query: torch.Tensor  # [S, D]
    key: torch.Tensor  # [S, D]
    values: torch.Tensor  # [S, 2 dim]


class FastFrames:
    """Memory of keys and values computed once per frame; one stream of a batched forward."""

    def __init__(self, runner: NetworkRunner, backend: str, memory_limit: int | None = None):
        self.runner, self.backend = runner, backend
        self.memory: MemoryBank[_Cached] = MemoryBank(memory_limit)

    def run(self, image: torch.Tensor) -> Ran:
        return FastFrames.run_many([self], image)[0]

    @staticmethod
    def run_many(streams: list[FastFrames], images: torch.Tensor) -> list[Ran]:
        """One frame of each stream in one batched forward.

        Args:
            streams: B streams sharing one runner.
            images (Tensor[B, 3, H, W]): normalised, float32; image b is stream b's next frame.
        """
        runner, backend = streams[0].runner, streams[0].backend
        enc = runner.encode(images)
        read = enc.residual.new_empty(enc.residual.shape)  # contiguous, as memory_read's output
        with stage("memory"):
            # Streams whose memories have the same length are read in one call; a stream's
            # first frame reads itself (one entry).
            groups: dict[int, list[int]] = defaultdict(list)
            for b, s in enumerate(streams):
                groups[max(len(s.memory), 1)].append(b)
            for members in groups.values():
                keys, values = [], []
                for b in members:
                    stored = streams[b].memory.entries or [_Cached(None, enc.key[b], enc.values[b])]
                    keys.append(torch.cat([e.key for e in stored]))
                    values.append(torch.cat([e.values for e in stored]))
                if len(members) == len(streams):
                    read = memory_read(enc.query, torch.stack(keys), torch.stack(values), enc.residual, backend)
                    continue
                # NB: slices, not an index tensor (whose host-to-device copy would synchronise).
                got = memory_read(torch.cat([enc.query[b:b + 1] for b in members]), torch.stack(keys),
                                  torch.stack(values), torch.cat([enc.residual[b:b + 1] for b in members]), backend)
                for j, b in enumerate(members):
                    read[b] = got[j]
        scores, kernels = runner.predict(read)
        ran = []
        with stage("association"):
            for b, s in enumerate(streams):
                association = None
                if s.memory.entries:
                    # NB: float32 for the decisions, whatever the network's dtype.
                    previous = s.memory.entries[-1].query
                    association = torch.sigmoid(previous.float() @ enc.key[b].float().T)
                parts = (enc.mask_features[b], kernels[b].flatten(1), scores[b].flatten(1))
                cached = _Cached(enc.query[b], enc.key[b], enc.values[b])
                if len(streams) > 1:  # a stream's frames must not keep the whole batch alive
                    parts, cached = [t.clone() for t in parts], _Cached(*(t.clone() for t in cached))
                ran.append(Ran(*parts, association, cached))
        return ran

    def remember(self, index: int, ran: Ran) -> None:
        self.memory.add(index, ran.state)

    def grid_weight(self, ran: Ran) -> torch.Tensor | None:
        sources = self.memory.weight_sources()
        if not sources:
            return None
        keys = torch.stack([entry.key for entry in sources])[None]  # [1, E, S, D]
        return grid_weight(ran.state.query[None], keys, self.backend)[0]  # float32 whatever the inputs' dtype

    def queries(self, state: _Cached, grids: torch.Tensor) -> torch.Tensor:
        return state.query[grids].float()

    def keys(self, state: _Cached, grids: torch.Tensor) -> torch.Tensor:
        return state.key[grids].float()
