"""The frame function as an AOTInductor package: start-up and the host's share of a frame.

    python bench/bench_package.py [--weights W] [--frames 12] [--segment PATH/visolo_segment] [--out FILE]

1. Exports the official-size package (352 x 624; ``python -m visolo_fast export``'s
   function), timed, and its size. Every compile starts from an empty inductor cache.
2. Start-up, process start to the first frame's result, each mode in a fresh process:
   the eager fast engine, ``compile=True`` (inductor compiles at the first frame) and the
   package (``Engine.from_package``); the C++ tracker's ``visolo_segment`` on one frame when
   ``--segment`` names it (its whole run: start, load, one frame, results.json). The
   eager and compiled modes load the same weights from a checkpoint file.
3. The host's time per frame outside the network, on the package: the Python tracker's
   ``prepare`` (checks, resize, normalise) and ``finish`` (association, tracks, mask resize,
   the one transfer), median over the frames after the first; and the C++ tracker's
   (``visolo_segment --timings``) when ``--segment`` is given; each in a fresh process.

No trained weights ship with this repository: without ``--weights`` the network is a
random VisoloNet at the official size, nudged as the tests' lively networks
(tests/engine/lively.py) so that it finds and tracks a few objects in the bundled sample.
The report is written to ``--out`` (default bench/results/package-cpu-<date>-<commit>.txt).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the tests' lively networks
from common import RESULTS, commit, device_name, write_report  # noqa: E402

OFFICIAL = (352, 624)


def first_result(mode: str, source: str, frames: int, out: str) -> None:
    """In a fresh process: load, make a tracker, step ``frames`` frames; writes the wall-clock
    times (seconds since the epoch) when the tracker was ready and of each result to ``out``."""
    import torch

    import visolo_fast as vf
    from visolo_fast.sample import sample_frames

    video = sample_frames(frames)
    if mode == "package":
        tracker = vf.Tracker(vf.Engine.from_package(source))
    else:
        tracker = vf.Tracker(vf.load_model(source), compile=mode == "compile")
    times = [time.time()]  # ready: imported, loaded
    with torch.no_grad():
        for frame in video:
            tracker.step(frame)
            times.append(time.time())
    with open(out, "w") as f:
        json.dump(times, f)


def host_times(package: str, frames: int) -> dict[str, float]:
    """The Python tracker on the package: median ms per frame of prepare, the network pass
    (Engine.run) and finish, frames after the first."""
    import torch

    import visolo_fast as vf
    from visolo_fast.sample import sample_frames

    engine = vf.Engine.from_package(package)
    tracker = vf.Tracker(engine)
    times: dict[str, list[float]] = {"prepare": [], "network": [], "finish": []}
    with torch.no_grad():
        for frame in sample_frames(frames):
            t0 = time.perf_counter()
            image = tracker.prepare(frame)
            t1 = time.perf_counter()
            frame_pass = engine.run([tracker.stream], image)[0]
            t2 = time.perf_counter()
            tracker.finish(frame_pass, tuple(frame.shape[:2]))
            t3 = time.perf_counter()
            for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[name].append(dt * 1e3)
    return {name: float(np.median(v[1:])) for name, v in times.items()} | {"tracks": tracker.num_tracks}


def segment_run(binary: str, package: str, frames: int, folder: str) -> tuple[float, dict[str, float]]:
    """visolo_segment on ``frames`` sample frames (PPM files): its wall time and its per-frame
    medians (its --timings CSV: one row per frame, a column per part, ms)."""
    import cv2

    from visolo_fast.sample import sample_frames

    frames_dir = os.path.join(folder, f"frames{frames}")
    os.makedirs(frames_dir, exist_ok=True)
    for i, frame in enumerate(sample_frames(frames)):
        cv2.imwrite(os.path.join(frames_dir, f"{i:05d}.ppm"), frame[:, :, ::-1])
    timings = os.path.join(folder, f"timings{frames}.csv")
    start = time.time()
    subprocess.run([binary, package, frames_dir, "--out", os.path.join(folder, f"out{frames}"), "--timings", timings],
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - start
    with open(timings) as f:
        header = f.readline().strip().split(",")
        rows = np.array([[float(x) for x in line.split(",")] for line in f if line.strip()])
    medians = {name: float(np.median(rows[1:, i])) if len(rows) > 1 else float("nan")
               for i, name in enumerate(header) if name != "frame"}
    return wall, medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="a VISOLO checkpoint (default: a nudged random network)")
    parser.add_argument("--frames", type=int, default=12, help="frames for the host times (default 12)")
    parser.add_argument("--segment", help="the visolo_segment program (built by CMake) to measure too")
    parser.add_argument("--out", help="report file")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "host":
        with open(args.json, "w") as f:
            json.dump(host_times(args.source, args.frames), f)
        return None
    if args.mode:
        return first_result(args.mode, args.source, 2, args.json)

    import torch

    import visolo_fast as vf
    from tests.engine.lively import lively_net
    from visolo_fast.engine.package import export_package

    date, rev = datetime.datetime.now(), commit()
    lines = [f"# visolo_fast package benchmark, {date:%Y-%m-%d}, commit {rev}, {device_name(torch.device('cpu'))}"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tmp, "inductor-export")  # NB: read when inductor compiles
        weights = args.weights
        if weights is None:
            weights = os.path.join(tmp, "lively.pth")
            vf.save_model(lively_net(4, OFFICIAL), weights)
        net = vf.load_model(weights)
        package = os.path.join(tmp, "visolo.pt2")
        start = time.perf_counter()
        export_package(net, package, checkpoint=os.path.basename(weights))
        export_s = time.perf_counter() - start
        lines.append(f"# network: {'weights ' + os.path.basename(args.weights) if args.weights else 'random, nudged'}, "
                     f"input {net.config.input_size[0]} x {net.config.input_size[1]}, float32; video: the bundled "
                     f"sample, 360 x 640")
        lines.append(f"export: {export_s:.1f} s, package {os.path.getsize(package) / 1e6:.1f} MB")
        del net

        lines.append("")
        lines.append(f"{'start-up (process start -> ...)':<40}{'ready s':>9}{'first result s':>16}"
                     f"{'second frame s':>16}")
        startup = {}
        for mode, source in (("eager", weights), ("compile", weights), ("package", package)):
            out = os.path.join(tmp, f"{mode}.json")
            # NB: an empty inductor cache each: compile=True (and export) otherwise reuse the
            # code compiled by an earlier run, which a fresh deployment does not have.
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, f"inductor-{mode}")}
            launched = time.time()
            subprocess.run([sys.executable, os.path.abspath(__file__), "--mode", mode, "--source", source,
                            "--json", out], check=True, env=env)
            with open(out) as f:
                ready, first, second = json.load(f)
            startup[mode] = first - launched
            label = {"eager": "eager fast engine", "compile": "compile=True", "package": "Engine.from_package"}[mode]
            lines.append(f"{label:<40}{ready - launched:>9.2f}{first - launched:>16.2f}{second - first:>16.2f}")
            print(lines[-1], flush=True)
        if args.segment:
            wall, _ = segment_run(args.segment, package, 1, tmp)
            startup["c++"] = wall
            lines.append(f"{'visolo_segment, one frame (whole run)':<40}{'':>9}{wall:>16.2f}")
        lines.append(f"# compile=True / package: {startup['compile'] / startup['package']:.1f}x; "
                     f"eager / package: {startup['eager'] / startup['package']:.2f}x")

        lines.append("")
        out = os.path.join(tmp, "host.json")  # NB: in a fresh process too, as the C++ tracker's
        subprocess.run([sys.executable, os.path.abspath(__file__), "--mode", "host", "--source", package,
                        "--frames", str(args.frames), "--json", out], check=True)
        with open(out) as f:
            host = json.load(f)
        lines.append(f"host time per frame outside the network, median of frames 2..{args.frames} (ms); the "
                     f"package's network pass: {host['network']:.1f} ms; {host['tracks']} tracks")
        lines.append(f"{'tracker':<22}{'prepare':>10}{'finish':>10}{'total':>10}")
        python_total = host["prepare"] + host["finish"]
        lines.append(f"{'Python':<22}{host['prepare']:>10.2f}{host['finish']:>10.2f}{python_total:>10.2f}")
        if args.segment:
            _, cpp = segment_run(args.segment, package, args.frames, tmp)
            cpp_total = cpp["prepare_ms"] + cpp["finish_ms"]
            lines.append(f"{'C++ (visolo_segment)':<22}{cpp['prepare_ms']:>10.2f}{cpp['finish_ms']:>10.2f}"
                         f"{cpp_total:>10.2f}")
            lines.append(f"# Python / C++: {python_total / cpp_total:.2f}x; the C++ network pass: "
                         f"{cpp['network_ms']:.1f} ms")
    write_report("\n".join(lines) + "\n", args.out or os.path.join(RESULTS, f"package-cpu-{date:%Y%m%d}-{rev}.txt"))


if __name__ == "__main__":
    main()
