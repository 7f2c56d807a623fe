"""Records every frame result of the engine on the whole videos of
``tests/engine/test_zero_latency.py``: both engines, official quirks on and off, linear
NMS, the memory cap, and streams stepped together.

Run at commit d8a294a (the one-frame-late engine: ``step(t)`` returned frame t - 1's
result, ``flush()`` the last one), it wrote ``engine-golden-d8a294a.npz``; the zero-latency
engine must give every frame exactly that result. It runs unchanged on both APIs (results
are collected from ``step`` and ``flush`` and keyed by frame index; streams stepped together
share an ``Engine`` where there is one), so running it again at any later commit must write
the same values.

    python tests/data/make_engine_golden.py OUT.npz
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import visolo_fast as vf
from tests.engine.lively import lively_net
from visolo_fast.sample import sample_frames

H, W, FRAMES = 72, 128, 16

# name -> (seed, config overrides, tracker options)
CASES = {
    "seed1": (1, {}, {}),
    "seed2": (2, {}, {}),
    "seed4": (4, {}, {}),
    "seed4-linear": (4, {"nms_kernel": "linear"}, {}),
    "seed2-no-quirks": (2, {"official_quirks": False}, {}),
    "seed4-memory-cap": (4, {"max_memory_frames": 3}, {}),
    "seed4-output-size": (4, {}, {"output_size": (50, 90)}),
}
ENGINES = ("reference", "auto")


def as_list(out) -> list:
    """A step's or flush's results as a list, whichever API made them."""
    if out is None:
        return []
    return list(out) if isinstance(out, (list, tuple)) and not isinstance(out, vf.FrameResult) else [out]


def run_case(seed: int, config: dict, options: dict, backend: str, frames) -> list:
    net = lively_net(seed, **config)
    tracker = vf.Tracker(net, backend=backend, **options)
    results = []
    for frame in frames:
        results += as_list(tracker.step(frame))
    results += as_list(tracker.flush())
    return sorted(results, key=lambda r: r.index)


def run_streams(frames) -> list[list]:
    """Two streams stepped together with step_many, the second starting two frames later."""
    net = lively_net(4)
    videos = [frames[:10], [f[:, ::-1].copy() for f in frames[:8]]]
    shared = vf.Engine(net) if hasattr(vf, "Engine") else net  # d8a294a shared a model's runner implicitly
    trackers = [vf.Tracker(shared), vf.Tracker(shared)]
    results = [[], []]
    for step in range(10):
        active = [i for i, start in ((0, 0), (1, 2)) if 0 <= step - start < len(videos[i])]
        outs = vf.step_many([trackers[i] for i in active], [videos[i][step - (0, 2)[i]] for i in active])
        for i, out in zip(active, outs):
            results[i] += as_list(out)
    for i, t in enumerate(trackers):
        results[i] += as_list(t.flush())
    return [sorted(r, key=lambda x: x.index) for r in results]


def flatten(name: str, results: list, into: dict) -> None:
    into[f"{name}/index"] = np.array([r.index for r in results])
    into[f"{name}/count"] = np.array([len(r.track_ids) for r in results])
    cat = lambda field, dtype: np.concatenate([getattr(r, field).cpu().numpy().astype(dtype).reshape(-1)  # noqa: E731
                                               for r in results])
    into[f"{name}/track_ids"] = cat("track_ids", np.int64)
    into[f"{name}/labels"] = cat("labels", np.int64)
    into[f"{name}/scores"] = cat("scores", np.float32)
    into[f"{name}/mask_shape"] = np.array(results[0].masks.shape[1:])
    into[f"{name}/masks"] = np.packbits(cat("masks", np.bool_))


def record() -> dict:
    torch.manual_seed(0)
    frames = sample_frames(FRAMES, H, W)
    out = {}
    for case, (seed, config, options) in CASES.items():
        for backend in ENGINES:
            flatten(f"{case}/{backend}", run_case(seed, config, options, backend, frames), out)
    for i, results in enumerate(run_streams(frames)):
        flatten(f"streams/{i}", results, out)
    return out


if __name__ == "__main__":
    np.savez_compressed(sys.argv[1], **record())
