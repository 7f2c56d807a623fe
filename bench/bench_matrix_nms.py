"""matrix_nms and mask_dedup, every available backend against the reference, and the
duplicate removal also against the official per-pair loop.

    python bench/bench_matrix_nms.py [--device cpu|cuda] [--repeats N]

K in {10, 100, 252} masks of 352 x 624 (blocky random masks, a few labels), sorted by
score as the engine hands them over. Prints medians and speed-ups measured side by side
in this run; appends the rows to bench/results/matrix_nms.csv.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_rows, available, device_name, median_ms, print_table  # noqa: E402

from visolo_fast.ops import mask_dedup, matrix_nms  # noqa: E402
from visolo_fast.ops.mask_dedup import mask_dedup_official  # noqa: E402
from visolo_fast.ops.matrix_nms import IMPLEMENTED  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    names = available("matrix_nms_decay", IMPLEMENTED, device)
    rows = []
    for K in (10, 100, 252):
        g = torch.Generator().manual_seed(K)
        masks = (F.interpolate(torch.rand((1, K, 22, 39), generator=g), size=(352, 624))[0] > 0.8).to(device)
        labels = torch.randint(0, 4, (K,), generator=g).to(device)
        scores = torch.sort(torch.rand(K, generator=g), descending=True).values.to(device)
        shape = f"K={K} 352x624"
        nms = {b: median_ms(lambda b=b: matrix_nms(masks, labels, scores, backend=b), device, args.repeats) for b in names}
        for b in names:
            rows.append({"device": device_name(device), "op": "matrix_nms", "shape": shape, "dtype": "bool",
                         "backend": b, "median_ms": nms[b], "ratio_to_reference": nms["reference"] / nms[b]})
        dedup = {b: median_ms(lambda b=b: mask_dedup(masks, backend=b), device, args.repeats) for b in names}
        if K <= 100:  # the official loop: K^2 / 2 full-resolution products
            dedup["official loop"] = median_ms(lambda: mask_dedup_official(masks), device, repeats=1, warmup=0)
        for b, t in dedup.items():
            rows.append({"device": device_name(device), "op": "mask_dedup", "shape": shape, "dtype": "bool",
                         "backend": b, "median_ms": t, "ratio_to_reference": dedup["reference"] / t})
        if "official loop" in dedup:
            print(f"mask_dedup K={K}: " + ", ".join(f"{b} {dedup['official loop'] / dedup[b]:.0f}x the official loop"
                                                  for b in names))
    print(f"matrix_nms / mask_dedup on {device_name(device)}")
    print_table(rows)
    print(f"rows appended to {append_rows('matrix_nms', rows)}")


if __name__ == "__main__":
    main()
