"""``python -m visolo_fast``: ``segment`` a video, the ``demo`` on the bundled sample, ``info``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

import visolo_fast as vf
from visolo_fast import backends
from visolo_fast.classes import BUILT_IN, load_classes
from visolo_fast.io import FrameSource, InputError, ResultsRecorder, VideoWriter
from visolo_fast.viz import draw_overlay


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


def _load_net(args, device: torch.device, classes: tuple[str, ...] | None):
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
    if classes is not None and len(classes) != net.config.num_classes:
        raise UserError(f"--classes: {len(classes)} class names, but the checkpoint has {net.config.num_classes} classes")
    if args.max_memory_frames is not None:
        net.config = dataclasses.replace(net.config, max_memory_frames=args.max_memory_frames)
    return net


def _output_dir(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".visolo_fast_write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"--out: cannot write to {path}: {exc.strerror or exc}") from None
    return path


def _save_masks(path: str, result, size: tuple[int, int]) -> None:
    """An indexed PNG: pixel value = track id + 1 of the best-scored instance there, 0 where
    no track (16-bit past 255 tracks)."""
    ids = np.zeros(size, dtype=np.int64)
    # NB: instances come best first; painted in reverse, the best ends on top
    for track, mask in reversed(list(zip(result.track_ids.tolist(), result.masks.cpu().numpy()))):
        ids[mask] = track + 1
    if ids.max() < 256:
        image = Image.fromarray(ids.astype(np.uint8), mode="P")
        palette = [0, 0, 0] + [c for t in range(255) for c in vf.viz.track_colour(t)]
        image.putpalette(palette)
    else:
        image = Image.fromarray(ids.astype(np.uint16))
    image.save(path)


def _run(net, source, args, class_names, out_dir: str) -> int:
    """Streams `source` through a tracker; writes the overlay, results.json and the masks."""
    device = next(net.parameters()).device
    size = tuple(args.output_size) if args.output_size else tuple(source.size)
    try:
        tracker = net.tracker(output_size=size, backend=args.backend, dtype=args.dtype, compile=args.compile,
                              cuda_graphs=args.cuda_graphs)
    except ValueError as exc:  # an engine option that cannot run here (--dtype, --compile, --cuda-graphs)
        raise UserError(str(exc)) from None
    writer = VideoWriter(os.path.join(out_dir, "overlay.mp4"), source.fps, size)
    recorder = ResultsRecorder()
    if args.save_masks:
        os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
    shown: dict[int, np.ndarray] = {}  # the frames whose results are not final yet (one)
    start, done, interrupted = time.perf_counter(), 0, False

    def emit(result) -> None:
        nonlocal done
        frame = shown.pop(result.index)
        if frame.shape[:2] != size:
            frame = np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))
        writer.write(draw_overlay(frame, result.masks.cpu().numpy(), result.track_ids.tolist(), result.labels.tolist(),
                                  result.scores.tolist(), class_names))
        recorder.add(result)
        if args.save_masks:
            _save_masks(os.path.join(out_dir, "masks", f"{result.index:06d}.png"), result, size)
        done += 1
        fps = done / (time.perf_counter() - start)
        total = f"/{source.count}" if source.count else ""
        print(f"\rframe {done}{total}  {fps:.2f} FPS  {tracker.num_tracks} tracks", end="", file=sys.stderr, flush=True)

    try:
        for index, frame in enumerate(source):
            shown[index] = frame
            for result in tracker.step(frame):
                emit(result)
        for result in tracker.flush():
            emit(result)
    except KeyboardInterrupt:
        interrupted = True
    except InputError as exc:
        raise UserError(str(exc)) from None
    except vf.BackendUnavailable as exc:
        raise UserError(str(exc)) from None
    finally:
        writer.close()
        print(file=sys.stderr)
        if tracker.num_tracks:
            scores, labels = tracker.track_categories()
            entries = recorder.entries(scores.cpu(), labels.cpu(), video_id=1)
        else:
            entries = []
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(entries, f)
    elapsed = time.perf_counter() - start
    for note in sorted(source.notes):
        print(f"note: {note}")
    print(f"{'interrupted after' if interrupted else 'done:'} {done} frames, {tracker.num_tracks} tracks, "
          f"{done / elapsed if elapsed else 0:.2f} FPS, device {device}, backend {args.backend}")
    print(f"wrote {writer.path}, {os.path.join(out_dir, 'results.json')}"
          + (f", {os.path.join(out_dir, 'masks')}/" if args.save_masks else ""))
    return 130 if interrupted else 0


def _classes(args) -> tuple[str, ...]:
    try:
        return load_classes(args.classes)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _segment(args) -> int:
    classes = _classes(args)
    try:
        source = FrameSource(args.input)
    except InputError as exc:
        raise UserError(str(exc)) from None
    try:
        net = _load_net(args, torch.device(args.device), classes)
        print(f"input: {args.input} ({source.kind}, {source.size[0]} x {source.size[1]}, {source.fps:g} FPS)")
        return _run(net, source, args, classes, _output_dir(args.out))
    finally:
        source.close()


def _demo(args) -> int:
    from visolo_fast.sample import sample_frames

    classes = _classes(args)
    net = _load_net(args, torch.device(args.device), classes)
    frames = sample_frames(args.frames)
    print(f"sample: {len(frames)} frames of {frames[0].shape[0]} x {frames[0].shape[1]}")
    return _run(net, _Frames(frames, fps=10.0), args, classes, _output_dir(args.out))


class _Frames:
    """A list of frames with a FrameSource's attributes."""

    def __init__(self, frames: list[np.ndarray], fps: float):
        self.frames, self.fps, self.count, self.notes = frames, fps, len(frames), set()
        self.size = frames[0].shape[:2]

    def __iter__(self):
        return iter(self.frames)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HxW, such as 720x1280, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return h, w


def _dtype(text: str) -> torch.dtype:
    if text not in ("float32", "float16", "bfloat16"):
        raise argparse.ArgumentTypeError(f"must be float32, float16 or bfloat16, got {text!r}")
    return getattr(torch, text)


def _at_least_3(text: str) -> int:
    value = int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"must be at least 3 (frame 0, the previous and the current frame), got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visolo_fast", description=vf.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices, and which backends are usable (and why not)").set_defaults(run=_info)
    segment = sub.add_parser("segment", help="segment and track a video file, a folder of frames or a camera")
    segment.add_argument("input", metavar="INPUT", help="a video file, a folder of .jpg/.png frames, or a camera index")
    segment.add_argument("--out", default="visolo_out", help="output folder (default visolo_out)")
    segment.set_defaults(run=_segment)
    demo = sub.add_parser("demo", help="segment and track the bundled sample clip")
    demo.add_argument("--frames", type=_positive, default=8, help="number of sample frames (default 8)")
    demo.add_argument("--out", default="visolo_demo", help="output folder (default visolo_demo)")
    demo.set_defaults(run=_demo)
    for p in (segment, demo):
        p.add_argument("--weights", help="a VISOLO checkpoint (official .pth or saved by visolo_fast); "
                                         "default: random weights")
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
        p.add_argument("--backend", default="auto", choices=list(backends.BACKENDS))
        p.add_argument("--dtype", default=torch.float32, type=_dtype,
                       help="network precision: float32 (default), float16, bfloat16 (fast engine; decisions stay float32)")
        p.add_argument("--compile", action="store_true", help="torch.compile the network (fast engine; slow first frames)")
        p.add_argument("--cuda-graphs", action="store_true", help="replay the network from CUDA graphs (fast engine, --device cuda)")
        p.add_argument("--classes", default="ytvis2019",
                       help=f"class names: {', '.join(sorted(BUILT_IN))} or a file with one name a line")
        p.add_argument("--output-size", type=_size, help="HxW of the output masks and overlay (default: the input's)")
        p.add_argument("--save-masks", action="store_true", help="also write masks/NNNNNN.png, pixel = track id + 1")
        p.add_argument("--max-memory-frames", type=_at_least_3, metavar="N",
                       help="cap the model's memory at N >= 3 frames (endless streams; default: the official, unbounded)")
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
