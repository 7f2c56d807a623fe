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
    tracker = net.tracker(backend=args.backend)
    times = []
    for t, frame in enumerate(frames + [None]):
        start = time.perf_counter()
        try:
            # frame t's instances are final once frame t + 1 has run; None ends the video
            results = tracker.step(frame) if frame is not None else tracker.flush()
        except vf.BackendUnavailable as exc:
            raise UserError(str(exc)) from None
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        for r in results:
            found = ", ".join(f"track {i} (class {c}, {s:.2f})" for i, c, s in
                              zip(r.track_ids.tolist(), r.labels.tolist(), r.scores.tolist())) or "nothing"
            print(f"frame {r.index}: {found}  [{times[-1] * 1000:.0f} ms]")
    median = sorted(times[1:])[len(times[1:]) // 2]  # frame 0 finalises nothing
    print(f"done: {len(frames)} frames, {tracker.num_tracks} tracks, median {median * 1000:.0f} ms per frame "
          f"({1 / median:.1f} FPS) on {device}, backend {args.backend}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visolo_fast", description=vf.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices, and which backends are usable (and why not)").set_defaults(run=_info)
    demo = sub.add_parser("demo", help="segment and track the bundled sample clip")
    demo.add_argument("--weights", help="a VISOLO checkpoint (official .pth or saved by visolo_fast); default: random weights")
    demo.add_argument("--frames", type=_positive, default=8, help="number of sample frames (default 8)")
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
