"""How often reduced precision changes a track: the fast engine in float16 / bfloat16
against itself in float32, on the bundled sample.

    python bench/bench_precision.py [--device cpu|cuda] [--seeds 8] [--frames 24] [--dtypes bfloat16,float16]

No trained weights ship with this repository, so the networks are the tests' "lively"
ones (random weights nudged so that they find, lose and re-identify several objects,
tests/engine/lively.py), one per seed, at a 64 x 112 input. Their scores sit close to
the thresholds far more often than a trained model's, so these figures are an upper
bound on what a trained model sees; run with an official checkpoint via bench_e2e.py
(``--weights``) for the real figure. Per dtype: the videos whose tracks are unchanged
(same tracks and labels, scores within 1e-2, per-track IoU >= 0.99), and the fp32 tracks
that have a counterpart (same label, spatio-temporal IoU >= 0.5) in the reduced run.
Rows are appended to bench/results/precision.csv.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the tests' lively networks
from common import append_rows, device_name  # noqa: E402

import visolo_fast as vf  # noqa: E402
from tests.engine.lively import lively_net  # noqa: E402
from visolo_fast.sample import sample_frames  # noqa: E402

FIELDS = ["date", "commit", "device", "dtype", "videos", "videos_unchanged", "tracks", "tracks_kept", "max_score_diff"]


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[K, ...] x [L, ...] bool -> [K, L] spatio-temporal IoU."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter).clamp(min=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--dtypes", default=None, help="default: bfloat16,float16 on a GPU; bfloat16 on the CPU "
                                                        "(float16 convolutions have no fast CPU kernel: ~60x slower)")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = (args.dtypes or ("bfloat16,float16" if device.type == "cuda" else "bfloat16")).split(",")
    frames = sample_frames(args.frames, 72, 128)
    rows = []
    for name in dtypes:
        dtype = getattr(torch, name)
        unchanged = tracks = kept = 0
        worst = 0.0
        for seed in range(1, args.seeds + 1):
            net = lively_net(seed).to(device)
            full = vf.segment_video(net, frames)
            low = vf.segment_video(net, frames, dtype=dtype)
            tracks += len(full)
            if len(full) and len(low):
                overlap = iou(full.masks, low.masks) * (full.labels[:, None] == low.labels[None]).float()
                kept += int((overlap.amax(1) >= 0.5).sum())
            same = len(full) == len(low) and torch.equal(full.labels, low.labels)
            if same and len(full):
                diff = (full.scores - low.scores).abs().max().item()
                worst = max(worst, diff)
                same = diff <= 1e-2 and bool((iou(full.masks, low.masks).diagonal() >= 0.99).all())
            unchanged += same
        rows.append(dict(device=device_name(device), dtype=name, videos=args.seeds, videos_unchanged=unchanged,
                         tracks=tracks, tracks_kept=kept, max_score_diff=f"{worst:.1e}"))
        print(f"{name:>9}: {unchanged}/{args.seeds} videos unchanged; {kept}/{tracks} float32 tracks kept "
              f"(same label, IoU >= 0.5); largest score change on unchanged-label videos {worst:.1e}", flush=True)
    print("appended to", append_rows("precision", rows, FIELDS))


if __name__ == "__main__":
    main()
