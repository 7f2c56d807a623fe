"""End to end: the reference engine and the fast engine on the same videos.

    python bench/bench_e2e.py [--device cpu|cuda] [--weights model_final.pth] [--frames N]
                              [--streams B] [--dtypes float32,bfloat16] [--compile] [--no-graphs]
                              [--openvino]  (--videos "" --openvino: the network comparison alone)

Videos: the bundled sample (360 x 640, resized to the network's 352 x 624) and
"crowd", a 352 x 624 clip of 24 moving shapes, 60 frames by default. Without
``--weights`` the model has random weights, with which every grid passes the score
threshold: a dense video, where the post-processing dominates.

Each configuration runs in a fresh process (so that its peak memory is its own:
the CUDA allocator's peak on a GPU, the process's peak RSS on the CPU), one after the
other in this run. Printed per configuration: frames per second after warm-up and the
ratio to the reference engine, the median frame latency, the time per frame of each
stage (backbone, heads, memory, masks, nms, association; the reference engine's network
is one stage), the peak memory, and how its tracks compare with the reference engine's
(float32) or with the fast engine's float32 (reduced precision): tracks, labels, the
largest score difference, the lowest per-track mask IoU over the video. Rows are appended
to bench/results/e2e.csv.

With ``--openvino`` (CPU; OpenVINO is an optional install, skipped with a message when
absent), the per-frame network alone -- backbone, heads and the frame's memory values, what
the fast engine's runner encodes -- runs as ours in float32 and bfloat16 and as OpenVINO on
the same graph exported with torch.export (float32, and with the bfloat16 precision hint),
alternating in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_rows, device_name  # noqa: E402

FIELDS = ["date", "commit", "device", "video", "frames", "engine", "dtype", "options", "streams", "fps",
          "ratio_to_reference", "median_ms", "peak_mb", "stages_ms", "agreement"]
WARMUP = 3  # frames not timed: allocator, library handles, autotuning, Triton compilation, graph capture


def crowd_frames(num_frames: int, height: int = 352, width: int = 624) -> list[np.ndarray]:
    """24 shapes (discs and boxes) of distinct colours moving across a textured background."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([100 + 30 * np.sin(xx / 37), 95 + 25 * np.cos(yy / 29), 90 + 20 * np.sin((xx - yy) / 51)], -1)
    shapes = [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(-4, 4), rng.uniform(-6, 6),
               rng.uniform(12, 40), rng.integers(0, 2), rng.integers(30, 230, 3)) for _ in range(24)]
    frames = []
    for t in range(num_frames):
        img = background + rng.normal(0, 5, background.shape)
        for y, x, vy, vx, r, box, colour in shapes:
            cy, cx = (y + vy * t) % height, (x + vx * t) % width
            inside = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < 1.4 * r) if box else (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            img[inside] = colour
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def video(name: str, num_frames: int) -> list[np.ndarray]:
    from visolo_fast.sample import sample_frames

    return sample_frames(num_frames) if name == "sample" else crowd_frames(num_frames)


def model(weights: str | None, device: torch.device):
    import visolo_fast as vf

    if weights:
        return vf.load_model(weights, device=device)
    torch.manual_seed(0)
    return vf.VisoloNet().eval().to(device)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # NB: VmHWM, not getrusage's ru_maxrss, which keeps the parent's peak across fork + exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024  # kB


def worker(spec: dict) -> dict:
    """Runs one configuration over one video; returns its timings, and saves stream 0's
    tracks to spec["out"]."""
    import visolo_fast as vf

    device = torch.device(spec["device"])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    net = model(spec["weights"], device)
    frames = video(spec["video"], spec["frames"])
    options = dict(backend=spec["engine"], dtype=getattr(torch, spec["dtype"]), compile=spec["compile"],
                   cuda_graphs=spec["graphs"])
    streams = spec["streams"]
    engine = vf.Engine(net, **options)  # converted weights, compiled code, graphs: once, shared by the runs

    def run(timer=None) -> tuple[list[float], list]:
        trackers = [vf.Tracker(engine, keep_video=True) for _ in range(max(streams, 1))]
        times = []
        for t, frame in enumerate(frames):
            if timer is not None and t == WARMUP:
                timer.seconds.clear()  # the stages, like the frame rate, after warm-up
            start = time.perf_counter()
            if streams:
                vf.step_many(trackers, [frame] * streams)
            else:
                trackers[0].step(frame)
            sync()
            times.append(time.perf_counter() - start)
        for t in trackers:
            t.flush()
        return times, trackers

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        times, trackers = run()
        # NB: stage timing synchronises the GPU around every stage: a run of its own.
        with vf.StageTimes(device) as timer:
            run(timer)
    else:
        with vf.StageTimes(device) as timer:  # nothing to synchronise on the CPU: one run
            times, trackers = run(timer)
    timed = times[WARMUP:]
    result = trackers[0].video_result()
    torch.save({"scores": result.scores.cpu(), "labels": result.labels.cpu(), "masks": result.masks.cpu()}, spec["out"])
    frames_timed = (len(frames) - WARMUP) * max(streams, 1)
    return {"fps": len(timed) * max(streams, 1) / sum(timed), "median_ms": 1000 * float(np.median(timed)),
            "peak_mb": peak_mb(device),
            "stages_ms": {k: 1000 * v / frames_timed for k, v in timer.seconds.items()}}


def agreement(a: dict, b: dict) -> str:
    """How b's tracks compare with a's: tracks, labels, max score difference, min per-track IoU."""
    if len(a["labels"]) != len(b["labels"]):
        return f"tracks {len(a['labels'])} vs {len(b['labels'])}"
    if len(a["labels"]) == 0:
        return "same (no tracks)"
    same = torch.equal(a["labels"], b["labels"])
    ds = (a["scores"] - b["scores"]).abs().max().item()
    inter = (a["masks"] & b["masks"]).flatten(1).sum(1).double()
    union = (a["masks"] | b["masks"]).flatten(1).sum(1).double()
    iou = (inter / union.clamp(min=1)).min().item()
    return f"{len(a['labels'])} tracks, labels {'same' if same else 'DIFFER'}, |dscore| <= {ds:.1e}, IoU >= {iou:.4f}"


class _Encode(torch.nn.Module):
    """The memory-independent per-frame network (backbone, heads and the frame's memory
    values: the start of the fast engine's frame function) as one module, for export."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor):
        enc = self.net.heads(*self.net.backbone(images))
        return (*enc, self.net.memory_values(enc.cat_f, enc.kernel_f))


def network_vs_openvino(weights: str | None, repeats: int) -> list[dict]:
    """The per-frame network at 352 x 624 on the CPU: ours (the fast engine's runner, float32
    and bfloat16, eager) next to OpenVINO on the same graph (exported with torch.export,
    float32 and with the bfloat16 precision hint), alternating in this process; medians."""
    try:
        import openvino as ov
    except ImportError:
        print("network vs OpenVINO: skipped, OpenVINO is not installed (pip install openvino)")
        return []
    from visolo_fast.engine.runner import NetworkRunner

    net = model(weights, torch.device("cpu"))
    images = torch.randn(1, 3, 352, 624)
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        runner = NetworkRunner(net, dtype, "auto", compile=False, cuda_graphs=False)
        converted = images.to(dtype=runner.dtype, memory_format=runner.memory_format)
        runs[f"visolo_fast {str(dtype)[6:]}"] = lambda r=runner, x=converted: _Encode(r.net)(x)
    core = ov.Core()
    with torch.no_grad():
        exported = torch.export.export(_Encode(net).eval(), (images,))
    ov_model = ov.convert_model(exported)
    supported = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for name, hint in (("float32", "f32"), ("bfloat16", "bf16")):
        compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        request = compiled.create_infer_request()
        runs[f"openvino {name}" + ("" if hint == "f32" or "BF16" in supported else " (no bf16 on this CPU)")] = (
            lambda q=request: q.infer([images.numpy()]))
    times = {name: [] for name in runs}
    with torch.no_grad():
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000)
    base = float(np.median(times["visolo_fast float32"]))
    rows = []
    print(f"network (backbone + heads + memory values) at 352 x 624 on {device_name(torch.device('cpu'))}, "
          f"OpenVINO {ov.__version__}, {repeats} alternating repetitions:")
    for name, t in times.items():
        median = float(np.median(t))
        print(f"{name:>40}: {median:8.1f} ms  {base / median:5.2f}x our float32")
        rows.append(dict(device=device_name(torch.device("cpu")), video="network 352x624", frames=repeats,
                         engine=name, dtype=name.split()[1], options="-", streams=1, fps=1000 / median,
                         ratio_to_reference=base / median, median_ms=median, peak_mb=float("nan"), stages_ms="",
                         agreement="ratio vs visolo_fast float32 eager"))
    return rows


def configurations(args, device: torch.device) -> list[dict]:
    gpu = device.type == "cuda"
    dtypes = args.dtypes.split(",") if args.dtypes else (["float32", "bfloat16", "float16"] if gpu else ["float32", "bfloat16"])
    configs = [dict(engine="reference", dtype="float32", compile=False, graphs=False, streams=0)]
    for dtype in dtypes:
        configs.append(dict(engine="auto", dtype=dtype, compile=False, graphs=False, streams=0))
    fastest = "bfloat16" if gpu else "float32"
    if gpu and not args.no_graphs:
        configs.append(dict(engine="auto", dtype=fastest, compile=False, graphs=True, streams=0))
    if args.compile:
        configs.append(dict(engine="auto", dtype=fastest, compile=True, graphs=gpu and not args.no_graphs, streams=0))
    if args.streams:
        configs.append(dict(engine="auto", dtype=fastest, compile=False, graphs=gpu and not args.no_graphs,
                            streams=args.streams))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", default=None, help="an official checkpoint (default: random weights, dense)")
    parser.add_argument("--frames", type=int, default=60, help="frames per video (default 60)")
    parser.add_argument("--videos", default="sample,crowd")
    parser.add_argument("--dtypes", default=None, help="fast-engine dtypes (default: float32,bfloat16[,float16 on a GPU])")
    parser.add_argument("--streams", type=int, default=None, help="streams batched with step_many (default 8 on a GPU, 2 on the CPU; 0: none)")
    parser.add_argument("--compile", action="store_true", help="also run the fast engine with torch.compile")
    parser.add_argument("--no-graphs", action="store_true", help="no CUDA-graph configurations")
    parser.add_argument("--openvino", action="store_true",
                        help="also the network alone next to OpenVINO float32 / bfloat16 (CPU; pip install openvino)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    device = torch.device(args.device)
    if args.streams is None:
        args.streams = 8 if device.type == "cuda" else 2
    rows = []
    print(f"end to end on {device_name(device)}; {args.frames} frames per video, {WARMUP} warm-up frames not timed; "
          f"{'weights ' + args.weights if args.weights else 'random weights (dense)'}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.videos.split(",")):
            base = {}
            for i, config in enumerate(configurations(args, device)):
                spec = dict(config, device=str(device), weights=args.weights, video=name, frames=args.frames,
                            out=os.path.join(tmp, f"{name}-{i}.pt"))
                proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{name} {config}: failed\n{proc.stderr[-3000:]}")
                    continue
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                tracks = torch.load(spec["out"])
                key = "reference" if config["engine"] == "reference" else (
                    "fast" if config["dtype"] == "float32" and not (config["compile"] or config["graphs"] or config["streams"]) else None)
                if key:
                    base[key] = (got, tracks)
                compared = "reference" if config["dtype"] == "float32" else "fast"
                agree = "" if key == "reference" or compared not in base else \
                    f"vs {compared} fp32: {agreement(base[compared][1], tracks)}"
                options = ",".join(o for o, on in (("compile", config["compile"]), ("cuda_graphs", config["graphs"])) if on)
                row = dict(device=device_name(device), video=name, frames=args.frames, engine=config["engine"],
                           dtype=config["dtype"], options=options or "-", streams=config["streams"] or 1,
                           fps=got["fps"], median_ms=got["median_ms"], peak_mb=got["peak_mb"],
                           ratio_to_reference=got["fps"] / base["reference"][0]["fps"] if "reference" in base else float("nan"),
                           stages_ms=" ".join(f"{k}={v:.1f}" for k, v in got["stages_ms"].items()), agreement=agree)
                rows.append(row)
                print(f"{name:>7} {row['engine']:>9} {row['dtype']:>8} {row['options']:>20} x{row['streams']:<2} "
                      f"{row['fps']:8.2f} fps {row['ratio_to_reference']:6.2f}x  median {row['median_ms']:8.1f} ms  "
                      f"peak {row['peak_mb']:7.0f} MB\n{'':>10}stages (ms/frame): {row['stages_ms']}\n{'':>10}{agree}",
                      flush=True)
    if args.openvino:
        rows += network_vs_openvino(args.weights, repeats=15)
    print("appended to", append_rows("e2e", rows, FIELDS))


if __name__ == "__main__":
    main()
