"""A real VisoloNet with random weights, nudged so that it finds and tracks things.

With plain random weights every mask covers the whole frame and one grid wins
everything. Here the mask features are re-centred (so masks cover parts of the
frame), the kernels shrunk, the category biases lowered (so a few grids pass the
threshold) and the tracking embeddings spread (so some matches fail): enough to
exercise Matrix NMS, the duplicate removal, lost tracks and candidates.
"""

from __future__ import annotations

import torch
from torch import nn

import visolo_fast as vf
from visolo_fast.sample import sample_frames

SIZE = (64, 112)


def _last_group_norm(module: nn.Module) -> nn.GroupNorm:
    return [m for m in module.modules() if isinstance(m, nn.GroupNorm)][-1]


def lively_net(seed: int = 4, size: tuple[int, int] = SIZE, **config) -> vf.VisoloNet:
    """A lively VisoloNet with input ``size`` and the other ``config`` fields given."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = vf.VisoloNet(vf.VisoloConfig(input_size=size, **config)).eval()
    with torch.no_grad():
        x = vf.preprocess(sample_frames(1), size=size)
        mean = net.forward_frame(x).mask_features[0].mean((1, 2))
        _last_group_norm(net.Mask_branch).bias.sub_(mean - 0.05 * torch.randn(mean.shape, generator=g))
        _last_group_norm(net.Kernel_branch).weight.mul_(0.05)
        last = [m for m in net.Category_branch_post.modules() if isinstance(m, nn.Conv2d)][-1]
        last.weight.mul_(0.3)
        last.bias.copy_(-2.2 + torch.randn(last.bias.shape, generator=g))
    return net


def track_events(results: list[vf.FrameResult]) -> dict[str, int]:
    """What a video put a tracker through: tracks started after the first frame, returns of a
    track after frames without it, tracks ended (``max_lost_frames``)."""
    last: dict[int, int] = {}
    new = returned = 0
    for r in results:
        for t in r.track_ids.tolist():
            new += t not in last and r.index > 0
            returned += t in last and last[t] < r.index - 1
            last[t] = r.index
    return {"new": new, "returned": returned, "ended": sum(r.ended.track_ids.numel() for r in results)}
