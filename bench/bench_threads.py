"""How the C++ ops' CPU loops scale with threads: each op at the official worst case
(K = 252 masks at 352 x 624), with torch.set_num_threads(1) and (N), alternating in one
process, and the dense frame's post-processing (masks + Matrix NMS + dedup as the engine
runs them on K = 252 grids).

    python bench/bench_threads.py [--threads N] [--repeats R]

Prints the medians and the speed-up of N threads over one; appends the rows to
bench/results/threads.csv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_rows, device_name, dynamic_masks_inputs, nms_inputs  # noqa: E402

from visolo_fast.config import VisoloConfig  # noqa: E402
from visolo_fast.engine.instances import extract_instances  # noqa: E402
from visolo_fast.ops import dynamic_masks, mask_intersections, matrix_nms, resize_masks  # noqa: E402


def dense_frame():
    """A frame whose 252 grids all pass the score threshold: mask features [256, 88, 156],
    kernels [256, 252], category scores [40, 252] (the engine's inputs to extraction)."""
    features, kernels = dynamic_masks_inputs("objects", 252, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    scores = 0.2 + 0.7 * torch.rand(40, 252, generator=g)
    return features, kernels.t().contiguous(), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    cpu = torch.device("cpu")
    features, kernels = dynamic_masks_inputs("random", 252, cpu)
    masks, labels, scores = nms_inputs(252, cpu)
    frame, config = dense_frame(), VisoloConfig()
    cases = {
        "dynamic_masks": lambda: dynamic_masks(features, kernels, 0.5, backend="cpp"),
        "mask_intersections": lambda: mask_intersections(masks, backend="cpp"),
        "resize_masks": lambda: resize_masks(masks, (720, 1280), backend="cpp"),
        "matrix_nms": lambda: matrix_nms(masks, labels, scores, backend="cpp"),
        "dense frame post-processing": lambda: extract_instances(*frame, None, config, backend="cpp"),
    }
    before = torch.get_num_threads()
    rows = []
    try:
        for name, fn in cases.items():
            times = {1: [], args.threads: []}
            for threads in (1, args.threads):  # warm-up
                torch.set_num_threads(threads)
                fn()
            for _ in range(args.repeats):  # alternating: drifts of the machine hit both alike
                for threads in times:
                    torch.set_num_threads(threads)
                    start = time.perf_counter()
                    fn()
                    times[threads].append((time.perf_counter() - start) * 1000)
            one, many = statistics.median(times[1]), statistics.median(times[args.threads])
            print(f"{name:>28}: 1 thread {one:8.1f} ms, {args.threads} threads {many:8.1f} ms, {one / many:5.2f}x")
            for threads, median in ((1, one), (args.threads, many)):
                rows.append({"device": device_name(cpu).replace(f"{before} threads", f"{threads} threads"),
                             "op": name, "shape": "K=252 352x624", "dtype": "float32", "backend": "cpp",
                             "median_ms": median, "ratio_to_reference": one / median})
    finally:
        torch.set_num_threads(before)
    print(f"appended to {append_rows('threads', rows)}  ({device_name(cpu)}; ratio_to_reference = vs 1 thread)")


if __name__ == "__main__":
    main()
