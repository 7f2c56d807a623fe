"""``python -m visolo_fast``: ``info`` and ``demo``."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

import visolo_fast as vf
from visolo_fast import backends


class UserError(Exception):
    """A mistake on the command line: printed as one line, exit status 2, no traceback."""


def _info(_args) -> int:
    print(f"visolo_fast {vf.__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"GPU: {gpu}")
    print(f"compiled extension: {'loaded' if backends.extension_loaded() else 'not built'}")
    for device in ("cpu", "cuda"):
        for name, reason in vf.available_backends(device).items():
            print(f"  {device:4} {name:9} {'usable' if reason is None else 'no: ' + reason}")
    return 0


def _demo(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no GPU is visible to torch")
    if args.weights:
        try:
            net = vf.load_model(args.weights, device=device)
        except vf.CheckpointError as exc:
            raise UserError(str(exc)) from None
        print(f"weights: {args.weights} ({net.config.num_classes} classes)")
    else:
        torch.manual_seed(0)
        net = vf.VisoloNet().eval().to(device)
        print("!" * 78)
        print("! No --weights: the network has RANDOM weights. Its scores and masks are")
        print("! meaningless; this run shows the pipeline and its speed, nothing more.")
        print("!" * 78)
    from visolo_fast.sample import sample_frames

    frames = sample_frames(args.frames)
    print(f"sample: {len(frames)} frames of {frames[0].shape[0]} x {frames[0].shape[1]}, device {device}, backend {args.backend}")
    # Each frame reads the frame before it. The full memory policy, instance extraction and
    # tracking come with the engine; this runs the per-frame network as it stands.
    previous, times = [], []
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            start = time.perf_counter()
            x = vf.preprocess(frame, size=net.config.input_size, device=device)
            try:
                out = net.forward_frame(x, previous, backend=args.backend)
            except vf.BackendUnavailable as exc:
                raise UserError(str(exc)) from None
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            score, flat = out.scores[0].flatten(1).max(0)[0].max(0)
            print(f"frame {t}: best grid score {score.item():.3f} at grid {flat.item()}, "
                  f"mask features {tuple(out.mask_features.shape[1:])}, {times[-1] * 1000:.0f} ms")
            previous = [out.memory_entry]
    median = sorted(times)[len(times) // 2]
    print(f"done: {len(frames)} frames, median {median * 1000:.0f} ms per frame ({1 / median:.1f} FPS) on {device}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visolo_fast", description=vf.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices, and which backends are usable (and why not)").set_defaults(run=_info)
    demo = sub.add_parser("demo", help="run the network on the bundled sample clip")
    demo.add_argument("--weights", help="a VISOLO checkpoint (official .pth or saved by visolo_fast); default: random weights")
    demo.add_argument("--frames", type=int, default=8, help="number of sample frames (default 8)")
    demo.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    demo.add_argument("--backend", default="auto", choices=list(backends.BACKENDS))
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
