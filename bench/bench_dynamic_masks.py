"""dynamic_masks and resize_masks, every available backend against the reference.

    python bench/bench_dynamic_masks.py [--device cpu|cuda] [--repeats N]

dynamic_masks at the official 88 x 156 x 256 mask features with K in {10, 100, 252}
kernels, for two inputs: random kernels (masks cover half the frame in salt-and-pepper
pieces: the worst case for the C++ backend, which takes the sigmoid inside the masks
only) and object-like kernels (each picks a smooth blob covering a few percent of the
frame, as trained masks do). resize_masks: K masks from 352 x 624 to 720 x 1280.

Prints medians, the speed-up over the reference measured side by side in this run and,
on a GPU, the peak memory of one call; appends the rows to bench/results/dynamic_masks.csv.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (append_rows, available, device_name, dynamic_masks_inputs, median_ms, peak_mb,  # noqa: E402
                    print_table)

from visolo_fast.ops import dynamic_masks, resize_masks  # noqa: E402
from visolo_fast.ops.dynamic_masks import IMPLEMENTED as DYNAMIC_MASKS_BACKENDS  # noqa: E402
from visolo_fast.ops.resize_masks import IMPLEMENTED as RESIZE_MASKS_BACKENDS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    device = torch.device(args.device)

    def peak(op, kind, K, backend):
        if device.type != "cuda":
            return None  # NB: no allocator statistics on the CPU
        features, kernels = dynamic_masks_inputs(kind, K, device)
        if op == "dynamic_masks":
            return peak_mb(lambda: dynamic_masks(features, kernels, 0.5, backend=backend), device)
        masks = dynamic_masks(features, kernels, 0.5, backend="reference")[0]
        return peak_mb(lambda: resize_masks(masks, (720, 1280), backend=backend), device)

    rows = []
    for kind in ("random", "objects"):
        for K in (10, 100, 252):
            features, kernels = dynamic_masks_inputs(kind, K, device)
            names = available("dynamic_masks", DYNAMIC_MASKS_BACKENDS, device)
            times = {b: median_ms(lambda b=b: dynamic_masks(features, kernels, 0.5, backend=b), device, args.repeats)
                     for b in names}
            coverage = dynamic_masks(features, kernels, 0.5, backend="reference")[0].float().mean().item()
            for b in names:
                rows.append({"device": device_name(device), "op": "dynamic_masks",
                             "shape": f"K={K} {kind} {coverage:.0%}", "dtype": "float32", "backend": b,
                             "median_ms": times[b], "ratio_to_reference": times["reference"] / times[b],
                             "peak_mb": peak("dynamic_masks", kind, K, b)})
    for K in (10, 100):
        features, kernels = dynamic_masks_inputs("objects", K, device)
        masks = dynamic_masks(features, kernels, 0.5, backend="reference")[0]
        names = available("resize_masks", RESIZE_MASKS_BACKENDS, device)
        times = {b: median_ms(lambda b=b: resize_masks(masks, (720, 1280), backend=b), device, args.repeats) for b in names}
        for b in names:
            rows.append({"device": device_name(device), "op": "resize_masks", "shape": f"K={K} to 720x1280",
                         "dtype": "bool", "backend": b, "median_ms": times[b],
                         "ratio_to_reference": times["reference"] / times[b], "peak_mb": peak("resize_masks", "objects", K, b)})
    print(f"dynamic_masks / resize_masks on {device_name(device)}")
    print_table(rows)
    print(f"rows appended to {append_rows('dynamic_masks', rows)}")


if __name__ == "__main__":
    main()
