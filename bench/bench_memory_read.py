"""memory_read and grid_weight, every available backend against the reference.

    python bench/bench_memory_read.py [--device cpu|cuda] [--repeats N]

memory_read at the model's shapes: S = 252 query grids, D = 128, V = 512 (category and
kernel values side by side), T in {3, 9, 40} memory frames (N = T * 252 keys); float32,
and bfloat16 on a GPU. grid_weight at S = 252, E = 2, D = 128. Prints medians and the
speed-up over the reference measured side by side in this run (and the peak memory on a
GPU); appends the rows to bench/results/memory_read.csv.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_rows, available, device_name, median_ms, peak_mb, print_table  # noqa: E402

from visolo_fast.ops import grid_weight  # noqa: E402
from visolo_fast.ops.grid_weight import IMPLEMENTED as GRID_WEIGHT_BACKENDS  # noqa: E402
from visolo_fast.ops.memory_read import IMPLEMENTED, memory_read  # noqa: E402

S, D, V = 252, 128, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else [])
    names = available("memory_read", IMPLEMENTED, device)
    for dtype in dtypes:
        for T in (3, 9, 40):
            g = torch.Generator().manual_seed(T)
            q, k = torch.randn(1, S, D, generator=g) * 0.1, torch.randn(1, T * S, D, generator=g) * 0.1
            v, r = torch.randn(1, T * S, V, generator=g), torch.randn(1, S, V, generator=g)
            q, k, v, r = (t.to(device=device, dtype=dtype) for t in (q, k, v, r))
            times = {b: median_ms(lambda b=b: memory_read(q, k, v, r, backend=b), device, args.repeats) for b in names}
            for b in names:
                rows.append({"device": device_name(device), "op": "memory_read", "shape": f"T={T} N={T * S}",
                             "dtype": str(dtype).replace("torch.", ""), "backend": b, "median_ms": times[b],
                             "ratio_to_reference": times["reference"] / times[b],
                             "peak_mb": peak_mb(lambda b=b: memory_read(q, k, v, r, backend=b), device)
                             if device.type == "cuda" else None})
    names = available("grid_weight", GRID_WEIGHT_BACKENDS, device)
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, S, D, generator=g) * 0.1).to(device), (torch.randn(1, 2, S, D, generator=g) * 0.1).to(device)
    times = {b: median_ms(lambda b=b: grid_weight(q, k, backend=b), device, args.repeats) for b in names}
    for b in names:
        rows.append({"device": device_name(device), "op": "grid_weight", "shape": "E=2 S=252", "dtype": "float32",
                     "backend": b, "median_ms": times[b], "ratio_to_reference": times["reference"] / times[b]})
    print(f"memory_read / grid_weight on {device_name(device)}")
    print_table(rows)
    print(f"rows appended to {append_rows('memory_read', rows)}")


if __name__ == "__main__":
    main()
