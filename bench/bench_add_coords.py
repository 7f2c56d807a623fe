"""add_coords, every available backend against the reference on the model's shapes.

    python bench/bench_add_coords.py [--device cpu|cuda] [--repeats N]

Prints the median time and the speed-up over the reference (reference time / backend
time, measured side by side in this run) and appends the rows to bench/results/add_coords.csv.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_rows, available, device_name, median_ms, print_table  # noqa: E402

from visolo_fast.ops.add_coords import IMPLEMENTED, add_coords  # noqa: E402

# res4 of one 352 x 624 frame (what the kernel and mask branches see), and of a batch of 8 streams.
SHAPES = [(1, 1024, 22, 39), (8, 1024, 22, 39)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    names = available("add_coords", IMPLEMENTED, device)
    rows = []
    for shape in SHAPES:
        for dtype in (torch.float32, torch.float16):
            x = torch.randn(shape, device=device).to(dtype)
            times = {b: median_ms(lambda b=b: add_coords(x, backend=b), device, args.repeats) for b in names}
            for b in names:
                rows.append({"device": device_name(device), "op": "add_coords", "shape": "x".join(map(str, shape)),
                             "dtype": str(dtype).replace("torch.", ""), "backend": b, "median_ms": times[b],
                             "ratio_to_reference": times["reference"] / times[b]})
    print(f"add_coords on {device_name(device)}")
    print_table(rows)
    print(f"rows appended to {append_rows('add_coords', rows)}")


if __name__ == "__main__":
    main()
