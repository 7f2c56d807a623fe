"""The Triton launches an engine run makes, recorded on the CPU (no GPU, no compile).

    TRITON_INTERPRET=1 python bench/engine_launches.py [--out FILE] [--frames 3]
                       [--dtypes float32,bfloat16,float16] [--fixed-shapes both|yes|no]

Runs the public API as a user would on a GPU, with the Triton backend:
``vf.Tracker(vf.Engine(vf.VisoloNet().eval(), backend="triton", dtype=..., fixed_shapes=...))``
and ``step(frame)`` on the first frames of :func:`visolo_fast.sample.sample_frames` (360 x 640,
resized by the engine to the official input of 352 x 624). Three frames reach every rule
of a frame: the first reads itself and has no grid weight, the second weighs its grids
against one earlier frame, the third against two.

Each call of a Triton op (``visolo_fast::*_triton``) is taken by a dispatch mode: its
launcher runs under :func:`visolo_fast.triton.launch.recording` (the launches noted as a
GPU would get them, nothing run) and the op's reference computes the outputs, so that the
engine goes on with the values it would have (the interpreter runs these kernels at the
official sizes in minutes per frame; the references in about a second). TRITON_INTERPRET=1
is needed only so that the engine accepts the Triton backend for CPU tensors.

Writes JSON (to --out, default stdout): a list of launches, each
``{"case", "module", "kernel", "args", "meta"}``, tensors among the arguments as
``{"dtype": "bfloat16", "address": data_ptr % 16}``. bench/gpu_resources.py runs this in a
subprocess and compiles what it records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import visolo_fast as vf
from visolo_fast.ops.dynamic_masks import dynamic_masks_reference
from visolo_fast.ops.grid_weight import grid_weight_reference
from visolo_fast.ops.mask_dedup import mask_dedup_from_intersections_reference
from visolo_fast.ops.mask_intersections import mask_intersections_reference
from visolo_fast.ops.matrix_nms import matrix_nms_from_intersections_reference
from visolo_fast.ops.memory_read import memory_read_reference
from visolo_fast.ops.resize_masks import resize_masks_reference
from visolo_fast.sample import sample_frames
from visolo_fast.triton.launch import TensorArg, recording

# Each Triton op's reference: the same arguments, outputs of the same shapes.
REFERENCES = {
    "dynamic_masks_triton": dynamic_masks_reference,
    "grid_weight_triton": grid_weight_reference,
    "mask_dedup_keep_triton": mask_dedup_from_intersections_reference,
    "mask_intersections_triton": mask_intersections_reference,
    "matrix_nms_decay_triton": matrix_nms_from_intersections_reference,
    "memory_read_triton": memory_read_reference,
    "resize_masks_triton": resize_masks_reference,
}


class RecordTritonOps(TorchDispatchMode):
    """Within it, a Triton op records its launches and returns its reference's values."""

    def __init__(self, case: str, launches: list[dict]):
        super().__init__()
        self.case, self.launches = case, launches

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace != "visolo_fast" or not func._opname.endswith("_triton"):
            return func(*args, **kwargs)
        if func._opname not in REFERENCES:
            raise RuntimeError(f"engine_launches: no reference for {func._opname}: add it to REFERENCES")
        with recording() as recorded:
            out = func(*args, **kwargs)  # the outputs allocated, the launches noted, nothing run
        self.launches += [as_json(self.case, launch) for launch in recorded]
        ref = REFERENCES[func._opname](*args, **kwargs)
        for o, r in zip(out if isinstance(out, tuple) else (out,), ref if isinstance(ref, tuple) else (ref,)):
            if o.shape != r.shape:
                raise RuntimeError(f"engine_launches: {func._opname} gives {tuple(o.shape)}, its reference {tuple(r.shape)}")
            o.copy_(r)
        return out


def as_json(case: str, launch) -> dict:
    def arg(a):
        if isinstance(a, TensorArg):
            return {"dtype": str(a.dtype).removeprefix("torch."), "address": a.address}
        if a is None or isinstance(a, (bool, int, float, str)):
            return a
        raise TypeError(f"engine_launches: an argument of {launch.kernel.fn.__name__} that JSON cannot hold: {a!r}")

    return {"case": case, "module": launch.kernel.fn.__module__, "kernel": launch.kernel.fn.__name__,
            "args": [arg(a) for a in launch.args], "meta": {k: arg(v) for k, v in launch.meta.items()}}


def record(dtypes: list[torch.dtype], fixed_shapes: list[bool], frames: int, log=sys.stderr) -> list[dict]:
    """The launches of one engine run per (dtype, fixed_shapes), ``frames`` frames each."""
    images = sample_frames(frames)
    launches: list[dict] = []
    torch.manual_seed(0)
    net = vf.VisoloNet().eval()
    for dtype in dtypes:
        for fixed in fixed_shapes:
            name = f"engine {str(dtype).removeprefix('torch.')} fixed_shapes={fixed}"
            tracker = vf.Tracker(vf.Engine(net, backend="triton", dtype=dtype, fixed_shapes=fixed))
            start, before = time.perf_counter(), len(launches)
            for image in images:
                with RecordTritonOps(name, launches):
                    tracker.step(image)
            print(f"{name}: {frames} frames, {len(launches) - before} launches, {time.perf_counter() - start:.1f} s",
                  file=log)
    return launches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file (default: stdout)")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--fixed-shapes", choices=["both", "yes", "no"], default="both")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("engine_launches: set TRITON_INTERPRET=1 (the engine takes the Triton backend for CPU "
                         "tensors only through the interpreter; nothing is interpreted here)")
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    fixed = {"both": [True, False], "yes": [True], "no": [False]}[args.fixed_shapes]
    with torch.inference_mode():
        launches = record(dtypes, fixed, args.frames)
    text = json.dumps(launches)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
