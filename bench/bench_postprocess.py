"""A dense frame's post-processing on the CPU: the instance extraction of a frame whose 252
grids all pass the score threshold (dynamic masks at 352 x 624, then Matrix NMS and the
duplicate removal: the official worst case), split into its "masks" and "nms" stages.

    python bench/bench_postprocess.py [--baseline DIR] [--rounds N] [--repeats R]

With ``--baseline DIR`` (another checkout with its extension built, e.g. ``git worktree
add /tmp/old <commit>`` and ``VISOLO_FAST_WITH_CUDA=0 python setup.py build_ext --inplace``
there), the same frame runs in this tree and in DIR, in alternating processes (N rounds of
R repetitions each), so that the machine's drifts hit both alike; prints the medians and
the ratio, appends the rows to bench/results/postprocess.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import visolo_fast, visolo_fast._C
from visolo_fast.config import VisoloConfig
from visolo_fast.engine.instances import extract_instances
from visolo_fast.engine.stages import StageTimes
assert visolo_fast.__file__.startswith(sys.argv[1]), visolo_fast.__file__
g = torch.Generator().manual_seed(252)
E, h, w, K = 256, 88, 156, 252
# Object-like masks (kernel k picks a smooth blob of channel k), every grid above the threshold.
yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
centres = torch.rand(E, 2, generator=g) * torch.tensor([h, w])
radius = 4 + 8 * torch.rand(E, 1, 1, generator=g)
d2 = (yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2
features = 6 * (1 - d2 / radius**2).clamp(min=-1) + 0.1 * torch.randn(E, h, w, generator=g)
kernels = torch.eye(E)[torch.arange(K) % E].t().contiguous()
scores = 0.2 + 0.7 * torch.rand(40, K, generator=g)
config = VisoloConfig()
kept = int(extract_instances(features, kernels, scores, None, config, backend="cpp").count)
times, stages = [], {"masks": [], "nms": []}
for _ in range(int(sys.argv[2]) + 1):
    with StageTimes() as t:
        start = time.perf_counter()
        extract_instances(features, kernels, scores, None, config, backend="cpp")
        total = time.perf_counter() - start
    times.append(total * 1000)
    for s in stages:
        stages[s].append(t.seconds[s] * 1000)
print(json.dumps({"total": times[1:], **{s: v[1:] for s, v in stages.items()}, "kept": kept,
                  "threads": torch.get_num_threads()}))
"""


def run(tree: str, repeats: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, tree, str(repeats)], capture_output=True, text=True,
                          cwd="/", timeout=600)
    if proc.returncode:
        raise SystemExit(f"{tree}: failed\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another checkout, its extension built")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from common import append_rows, device_name

    import torch

    trees = {"this tree": ROOT} | ({"baseline": os.path.abspath(args.baseline)} if args.baseline else {})
    got = {name: {"total": [], "masks": [], "nms": []} for name in trees}
    kept = {}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            r = run(tree, args.repeats)
            kept[name] = r["kept"]
            for key in got[name]:
                got[name][key] += r[key]
    if len(set(kept.values())) > 1:
        raise SystemExit(f"the trees keep different instances: {kept}")
    device = device_name(torch.device("cpu"))
    print(f"dense frame post-processing (K = 252 at 352 x 624, {kept['this tree']} kept) on {device}, "
          f"{args.rounds} x {args.repeats} repetitions per tree, alternating processes")
    rows, base = [], None
    for name in reversed(list(trees)):
        medians = {k: statistics.median(v) for k, v in got[name].items()}
        base = base or medians["total"]
        ratio = base / medians["total"]
        print(f"{name:>10}: total {medians['total']:7.1f} ms (masks {medians['masks']:6.1f}, nms {medians['nms']:6.1f})"
              f"  {ratio:5.2f}x the {'baseline' if args.baseline else 'same'}")
        rows.append({"device": device, "op": f"dense post-processing ({name})", "shape": "K=252 352x624",
                     "dtype": "float32", "backend": "cpp", "median_ms": medians["total"], "ratio_to_reference": ratio})
    print("appended to", append_rows("postprocess", rows))


if __name__ == "__main__":
    main()
