"""Endless streams: the tracking half of a frame (``Tracker.finish``) and the process's RSS
over a long stream, with ``VisoloConfig.max_lost_frames`` and without (the official rule).

    python bench/bench_endless.py [--frames 20000] [--max-lost-frames 30] [--max-memory-frames 5]
                                  [--warmup 1000] [--window 1000] [--seed 4] [--out FILE]

No trained weights ship with this repository: the network is a small random VisoloNet
(32 x 64 input, dim 32, a 6 x 10 grid) nudged as the tests' lively networks
(tests/engine/lively.py) so that it finds objects, loses them and re-identifies some; the
video is the bundled sample at 32 x 64 with each frame shifted at random, so instances
keep appearing and getting lost. The model's memory is capped (``--max-memory-frames``),
so the network's cost is flat and what grows, if anything, is the tracker's.

Each mode runs in a fresh process (its RSS its own), one after the other, with one torch
thread, so that the main thread's CPU time is all the work: per frame, the network pass
(``Engine.run``, not timed), then ``Tracker.finish``, timed as wall time and as the
thread's CPU time (steadier on a loaded machine). Printed per mode, for the first
``--window`` frames after ``--warmup`` and the last ``--window`` frames: the median and p95
of ``finish``, the mean RSS, the candidate rows and open tracks at the window's end, and the
ratio last / first. The report is written to ``--out`` (default
bench/results/endless-<cpu>-<date>-<commit>.txt).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the tests' lively networks
from common import RESULTS, commit, device_name, write_report  # noqa: E402

SIZE = (32, 64)


def small_net(seed: int, **config):
    """A random VisoloNet at 32 x 64, dim 32, a 6 x 10 grid, nudged as the tests' lively networks."""
    from tests.engine.lively import lively_net

    return lively_net(seed, SIZE, dim=32, norm_groups=8, grid=(6, 10), **config)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_mode(args, max_lost_frames: int | None, out: str) -> None:
    """One stream of ``args.frames`` frames; writes per-frame times and samples to ``out`` (json)."""
    import visolo_fast as vf
    from visolo_fast.sample import sample_frames

    torch.set_num_threads(1)
    net = small_net(args.seed, max_memory_frames=args.max_memory_frames, max_lost_frames=max_lost_frames)
    engine = vf.Engine(net)
    tracker = vf.Tracker(engine)
    base = sample_frames(16, *SIZE)
    # NB: preallocated, so that the measurements themselves do not grow the RSS (three lists of
    # floats grow it by 1.7 MB over 18,000 frames).
    wall, cpu, rss = np.zeros(args.frames), np.zeros(args.frames), np.zeros(args.frames)
    rows, open_tracks = np.zeros(args.frames, np.int64), np.zeros(args.frames, np.int64)
    ended = 0
    with torch.no_grad():
        for t in range(args.frames):
            rng = np.random.default_rng(t)
            shift = int(rng.integers(-SIZE[0] // 3, SIZE[0] // 3)), int(rng.integers(-SIZE[1] // 3, SIZE[1] // 3))
            frame = np.roll(base[t % len(base)], shift, (0, 1))
            frame_pass = engine.run([tracker.stream], tracker.prepare(frame))[0]
            c0, w0 = time.thread_time(), time.perf_counter()
            result = tracker.finish(frame_pass, SIZE)
            wall[t] = time.perf_counter() - w0
            cpu[t] = time.thread_time() - c0
            ended += result.ended.track_ids.numel()
            rss[t], rows[t], open_tracks[t] = rss_mb(), len(tracker._lost), len(tracker._slots)
    tracker.flush()
    assert ended + tracker.open_tracks().track_ids.numel() == tracker.num_tracks
    with open(out, "w") as f:
        json.dump({"wall": wall.tolist(), "cpu": cpu.tolist(), "rss": rss.tolist(), "rows": rows.tolist(),
                   "open": open_tracks.tolist(), "ended": ended, "tracks": tracker.num_tracks,
                   "memory": len(tracker.memory_frames)}, f)


def windows(data: dict, warmup: int, window: int) -> list[dict]:
    n = len(data["wall"])
    out = []
    for name, start in (("first", warmup), ("last", n - window)):
        part = slice(start, start + window)
        wall, cpu = np.array(data["wall"][part]) * 1e3, np.array(data["cpu"][part]) * 1e3
        out.append({"window": f"{name} {window} ({start}-{start + window - 1})",
                    "wall_p50": np.median(wall), "wall_p95": np.percentile(wall, 95),
                    "cpu_p50": np.median(cpu), "cpu_p95": np.percentile(cpu, 95),
                    "rss": float(np.mean(data["rss"][part])), "rows": data["rows"][start + window - 1],
                    "open": data["open"][start + window - 1]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--max-lost-frames", type=int, default=30)
    parser.add_argument("--max-memory-frames", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", default=None)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # a child process: "capped" or "official"
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup + 2 * args.window > args.frames:
        parser.error(f"--frames must be at least --warmup + 2 --window = {args.warmup + 2 * args.window}")
    if args.mode:
        run_mode(args, args.max_lost_frames if args.mode == "capped" else None, args.json)
        return

    torch.set_num_threads(1)
    device = device_name(torch.device("cpu"))
    date, rev = datetime.datetime.now(datetime.timezone.utc), commit()
    modes = [("capped", f"max_lost_frames={args.max_lost_frames}"), ("official", "max_lost_frames=None")]
    lines = [f"# Tracker.finish per frame and process RSS over {args.frames} frames, {device}, commit {rev}, "
             f"{date:%Y-%m-%d}",
             f"# network: random VisoloNet nudged as tests/engine/lively.py (seed {args.seed}), input {SIZE[0]} x "
             f"{SIZE[1]}, dim 32, grid 6 x 10, max_memory_frames={args.max_memory_frames}; video: the sample, "
             f"shifted at random each frame",
             f"{'mode':<22}{'window':<24}{'finish p50/p95 ms':>19}{'cpu p50/p95 ms':>17}{'RSS MB':>9}"
             f"{'candidates':>12}{'open':>6}"]
    summary = []
    for mode, label in modes:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run.json")
            start = time.perf_counter()
            subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--mode", mode, "--json", out],
                           check=True)
            with open(out) as f:
                data = json.load(f)
        first, last = windows(data, args.warmup, args.window)
        for w in (first, last):
            lines.append(f"{label:<22}{w['window']:<24}{w['wall_p50']:>9.3f} /{w['wall_p95']:>7.3f}"
                         f"{w['cpu_p50']:>9.3f} /{w['cpu_p95']:>6.3f}{w['rss']:>9.1f}{w['rows']:>12}{w['open']:>6}")
        lines.append(f"{'':<22}{'last / first':<24}{last['wall_p50'] / first['wall_p50']:>9.2f}x{'':>8}"
                     f"{last['cpu_p50'] / first['cpu_p50']:>8.2f}x{'':>7}{last['rss'] / first['rss']:>9.3f}x"
                     f"  ({last['rss'] - first['rss']:+.1f} MB)")
        every = max(args.frames // 10, 1)
        ends = range(every, args.frames + 1, every)
        rss = " ".join(f"{data['rss'][t - 1]:.1f}" for t in ends)
        rows = " ".join(str(data["rows"][t - 1]) for t in ends)
        p50 = " ".join(f"{np.median(data['wall'][t - every:t]) * 1e3:.2f}" for t in ends)
        summary.append(f"{label}: {data['tracks']} tracks, {data['ended']} ended, memory {data['memory']} frames, "
                       f"{time.perf_counter() - start:.0f} s; every {every} frames: RSS MB {rss}; candidate rows "
                       f"{rows}; finish p50 ms over those {every} frames {p50}")
        print("\n".join(lines[-3:]), flush=True)
    lines += [f"# {s}" for s in summary]
    write_report("\n".join(lines) + "\n", args.out or os.path.join(RESULTS, f"endless-cpu-{date:%Y%m%d}-{rev}.txt"))


if __name__ == "__main__":
    main()
