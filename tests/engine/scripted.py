"""A scripted stand-in for VisoloNet: each frame's objects are written by hand, so the
engine's decisions (thresholds, association, candidates) can be tested on cases
built to exercise them.

Tracking embeddings are simplex vectors: an object is similar to itself
(sigmoid ~ 1), dissimilar to any other object (sigmoid(-2.5) = 0.076, under the
0.1 tracking threshold) and mildly similar to an empty grid (sigmoid(-1) = 0.27, so
a new object's grid weight lets it pass the score threshold). Masks come from one mask-feature channel per object:
+10 inside its rectangle, -10 outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from visolo_fast import FrameOutput, VisoloConfig, VisoloNet
from visolo_fast.model import Encoded

NUM_IDS = 64  # object identities available to a script
# Squared scale of the embeddings: the logit of two objects is SCALE2 * (1 - 1/NUM_IDS) - 1
# for one identity, -SCALE2 / NUM_IDS - 1 for two.
SCALE2 = 96.0
CONFIG = VisoloConfig(num_classes=4, grid=(2, 3), input_size=(32, 48), dim=8, norm_groups=4)


@dataclass(frozen=True)
class Obj:
    grid: int  # which grid predicts it
    identity: int  # its tracking identity (0 .. NUM_IDS - 1); objects with one identity match
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 on the mask-feature map (8 x 12), exclusive ends
    label: int = 0
    score: float = 0.9
    similarity: float = 1.0  # scales the embedding: < 1 makes the match with its identity weaker


class ScriptedTracking(nn.Module):
    """query . reference = embedding_a . embedding_b - 1."""

    @staticmethod
    def _grids(f: torch.Tensor) -> torch.Tensor:
        return f.flatten(2).transpose(1, 2)  # [B, S, NUM_IDS]

    def query(self, f: torch.Tensor) -> torch.Tensor:
        g = self._grids(f)
        return torch.cat([g, torch.ones_like(g[..., :1])], -1)

    def reference(self, f: torch.Tensor) -> torch.Tensor:
        g = self._grids(f)
        return torch.cat([g, -torch.ones_like(g[..., :1])], -1)

    def embeddings(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query(f), self.reference(f)


class ScriptedNet(nn.Module):
    """Frame n of the video shows the objects ``script[n]`` (whatever the pixels)."""

    def __init__(self, script: list[list[Obj]]):
        super().__init__()
        self.config = CONFIG
        self.script = script
        self.calls = 0
        self.Tracking_branch = ScriptedTracking()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the tracker a device

    def _next_frame(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frame_f [1, NUM_IDS, S1, S2], scores [1, C, S], kernels [1, dim, S], features [1, dim, h, w]) of
        the next scripted frame: kernel and mask-feature channel c belong to the frame's object c."""
        objs = self.script[self.calls]
        self.calls += 1
        S1, S2 = CONFIG.grid
        h, w = CONFIG.input_size[0] // 4, CONFIG.input_size[1] // 4
        if len(objs) > CONFIG.dim:
            raise ValueError(f"ScriptedNet: at most {CONFIG.dim} objects per frame")
        simplex = (torch.eye(NUM_IDS) - 1 / NUM_IDS) * SCALE2**0.5
        frame_f = torch.zeros(1, NUM_IDS, S1 * S2)
        scores = torch.zeros(1, CONFIG.num_classes, S1 * S2)
        kernels = torch.zeros(1, CONFIG.dim, S1 * S2)
        features = torch.full((1, CONFIG.dim, h, w), -10.0)
        for c, o in enumerate(objs):
            frame_f[0, :, o.grid] = simplex[o.identity] * o.similarity
            scores[0, o.label, o.grid] = o.score
            kernels[0, c, o.grid] = 1.0
            y0, x0, y1, x1 = o.box
            features[0, c, y0:y1, x0:x1] = 10.0
        return frame_f.reshape(1, NUM_IDS, S1, S2), scores, kernels, features

    # The network's passes (as VisoloNet's), so both engines run it: the scripted scores and
    # kernels are the category and kernel features, and pass through the memory read as its
    # residual (the memory's values are zero).
    def backbone(self, images):
        return images, images, images

    def heads(self, res2, res3, res4) -> Encoded:
        frame_f, scores, kernels, features = self._next_frame()
        padded = torch.zeros(1, CONFIG.dim, scores.shape[2])
        padded[:, :CONFIG.num_classes] = scores
        grid = lambda x: x.reshape(1, -1, *CONFIG.grid)  # noqa: E731
        return Encoded(frame_f, grid(padded), grid(kernels), features, *self.Tracking_branch.embeddings(frame_f))

    def memory_values(self, cat_f, kernel_f):
        return torch.zeros(cat_f.shape[0], CONFIG.num_grids, 2 * CONFIG.dim)

    def memory_entry_shapes(self):
        return {"keys": (CONFIG.num_grids, NUM_IDS + 1), "values": (CONFIG.num_grids, 2 * CONFIG.dim)}

    def memory_keys_values(self, stored):
        keys = torch.cat([self.Tracking_branch.reference(e.frame_f) for e in stored], dim=1)
        return keys, torch.zeros(1, keys.shape[1], 2 * CONFIG.dim)

    encode = VisoloNet.encode
    residual = staticmethod(VisoloNet.residual)
    read = VisoloNet.read

    def forward_frame(self, images, memory=(), backend="auto") -> FrameOutput:
        enc = self.encode(images)
        keys, values = self.memory_keys_values(list(memory) or [enc.memory_entry])
        return FrameOutput(*enc, *self.predict(self.read(enc, keys, values, backend)))

    def predict(self, read):
        scores = read[:, :, :CONFIG.num_classes].transpose(1, 2).reshape(read.shape[0], -1, *CONFIG.grid)
        kernels = read[:, :, CONFIG.dim:].transpose(1, 2).reshape(read.shape[0], -1, *CONFIG.grid)
        return scores, kernels


def blank_frames(n: int) -> list:
    """Frames for a ScriptedNet: their content does not matter, only their count and size."""
    return [torch.zeros((24, 40, 3), dtype=torch.uint8) for _ in range(n)]
