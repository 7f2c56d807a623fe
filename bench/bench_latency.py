"""Latency: from a frame handed to the tracker to that frame's result, for both engines,
against the one-frame-late delivery that the zero-latency tracker replaced.

    python bench/bench_latency.py [--device cpu|cuda] [--weights model_final.pth] [--frames N]
                                  [--video sample|crowd] [--fps 30] [--dtype float32|bfloat16]

Per engine, one stream of the video is stepped frame by frame and each ``step`` is timed
(the GPU synchronised after it: a result is out when its tensors are ready). From the
same run:

- zero latency (this tracker): frame t's result comes out of ``step(frame t)``, so its
  latency is that step's time d(t);
- one frame late (the tracker before commit 26715e9, as the official loop): frame t's
  result came out of ``step(frame t + 1)``, after frame t + 1 had arrived and run: d(t) +
  wait(t + 1) + d(t + 1). Its steps did the same work as these (frame t + 1's network pass,
  frame t's extraction and association, instead of both of frame t + 1): the delivery is
  replayed on the measured steps, not run with the old code.

Two arrival patterns: frames back to back (a file, read as fast as the engine goes: wait =
0), and a live source at ``--fps`` (a camera: frame t + 1 arrives 1/fps after frame t, so
the one-frame-late delivery waits for it; an engine slower than the source takes the newest
frame each time it is free and the others are dropped, so a frame may also wait up to 1/fps
for the engine). Printed: p50 and p95 per engine and pattern, and the ratio of the
one-frame-late latency to the zero-latency one. Rows are appended to bench/results/latency.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_e2e import model, video  # noqa: E402
from common import append_rows, commit, device_name  # noqa: E402

FIELDS = ["date", "commit", "device", "video", "frames", "engine", "dtype", "arrival", "delivery", "p50_ms", "p95_ms",
          "ratio_to_zero_latency"]
WARMUP = 2  # frames not counted: allocator, library handles, compilation


def step_times(engine, frames, sync) -> list[float]:
    """Seconds of each ``step`` of one stream over the video, warm-up frames excluded."""
    import visolo_fast as vf

    tracker = vf.Tracker(engine)
    times = []
    for t, frame in enumerate(frames):
        start = time.perf_counter()
        result = tracker.step(frame)
        sync()
        times.append(time.perf_counter() - start)
        assert result.index == t
    tracker.flush()
    return times[WARMUP:]


def latencies(d: list[float], period: float) -> dict[str, np.ndarray]:
    """Per processed frame, seconds from its arrival to its result, for both deliveries.

    Args:
        d: the measured step times, in stream order.
        period: seconds between a live source's frames; 0: back to back (a file: the next frame
            is there as soon as the engine is free).
    """
    arrived, done = np.empty(len(d)), np.empty(len(d))
    free, last = 0.0, -1  # when the engine is free; the source frame it took last
    for i, dt in enumerate(d):
        if period:
            # A live source does not wait: the engine takes the newest frame that has arrived,
            # or waits for the next one (frames it was too slow for are dropped, as a camera's).
            last = max(last + 1, int(np.floor(free / period + 1e-9)))
            arrived[i] = last * period
        else:
            arrived[i] = free
        free = done[i] = max(free, arrived[i]) + dt
    # One frame late: a frame's result leaves with the next step; the last frame has no next one.
    return {"zero latency": (done - arrived)[:-1], "one frame late": done[1:] - arrived[:-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", default=None, help="an official checkpoint (default: random weights, a dense video)")
    parser.add_argument("--video", default="sample", choices=["sample", "crowd"])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--fps", type=float, default=30.0, help="the live source's frame rate")
    parser.add_argument("--dtype", default="float32", help="the fast engine's dtype")
    args = parser.parse_args()
    import visolo_fast as vf

    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    net = model(args.weights, device)
    frames = video(args.video, args.frames + WARMUP)
    engines = {"reference": vf.Engine(net, backend="reference"),
               "fast": vf.Engine(net, dtype=getattr(torch, args.dtype))}
    print(f"# {device_name(device)}, commit {commit()}, video {args.video}, {args.frames} frames after "
          f"{WARMUP} of warm-up, fast engine {args.dtype}", flush=True)
    rows = []
    header = f"{'engine':<10} {'arrival':<16} {'delivery':<15} {'p50 ms':>9} {'p95 ms':>9} {'vs zero latency':>16}"
    print(header)
    for name, engine in engines.items():
        d = step_times(engine, frames, sync)
        for arrival, period in (("back to back", 0.0), (f"live {args.fps:g} fps", 1 / args.fps)):
            lat = latencies(d, period)
            zero50 = np.median(lat["zero latency"])
            for delivery, values in lat.items():
                p50, p95 = 1000 * np.median(values), 1000 * np.percentile(values, 95)
                ratio = np.median(values) / zero50
                print(f"{name:<10} {arrival:<16} {delivery:<15} {p50:9.1f} {p95:9.1f} {ratio:15.2f}x", flush=True)
                rows.append({"date": time.strftime("%Y-%m-%d"), "commit": commit(), "device": device_name(device),
                             "video": args.video, "frames": args.frames,
                             "engine": name, "dtype": "float32" if name == "reference" else args.dtype,
                             "arrival": arrival, "delivery": delivery, "p50_ms": f"{p50:.1f}", "p95_ms": f"{p95:.1f}",
                             "ratio_to_zero_latency": f"{ratio:.2f}"})
        if np.mean(d) > 1 / args.fps:
            print(f"{'':<10} NB: {name} steps take {1000 * np.mean(d):.0f} ms on average, more than the source's "
                  f"{1000 / args.fps:.0f} ms: live, it processes about one frame in {np.mean(d) * args.fps:.0f}")
    print(f"rows appended to {append_rows('latency', rows, FIELDS)}")


if __name__ == "__main__":
    main()
