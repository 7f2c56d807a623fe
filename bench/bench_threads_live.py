"""torch's CPU threads on a shared machine: the whole live step under each thread policy,
idle and beside other work.

    python bench/bench_threads_live.py [--seconds 12] [--policies ...] [--conditions idle,decoder,programs]
                                       [--out FILE]

The step is ``Tracker.step`` of a frame at 64 x 112, the network's input 64 x 112 (a random
VisoloNet nudged as the tests' lively networks, tests/engine/lively.py; memory capped at 10
frames and lost tracks ended after 30, as ``segment`` does for a live input), the sample's
frames over and over. Each policy runs in its own process (OpenMP reads its variables when
torch loads), for ``--seconds`` after 2 warm-up steps, one cell after the other:

- policies: ``defaults`` (torch's), ``OMP_NUM_THREADS=1``, ``OMP_WAIT_POLICY=PASSIVE``,
  ``GOMP_SPINCOUNT=30000``, and ``adaptive`` (visolo_fast.threads: the ``segment``
  command's choice, fed every step's time; its steps at each count are reported);
- conditions: ``idle``; ``decoder``: a live stream decoded in the same process as
  ``segment`` reads one (visolo_fast.open_source, the newest frame taken before each
  step) from a generated 360 x 640 camera at 25 FPS on the loopback: H.264 over UDP
  encoded by imageio-ffmpeg's ffmpeg (another process), or HTTP MJPEG encoded in this
  process when imageio-ffmpeg is missing; ``programs``: two other processes, each a
  torch loop of convolutions and matrix products with 2 threads (torch's defaults),
  started before the condition's cells and stopped after them.

Printed and written to ``--out`` (default bench/results/threads-live-cpu-<date>-<commit>.txt):
the median and p90 step (ms) of each policy and condition, the ratio of each median to the
idle step with torch's defaults, and the two goals (adaptive idle within 10% of the
defaults' idle step; adaptive beside the programs at most 3x its idle step).
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

POLICIES = {"defaults": {}, "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
            "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "GOMP_SPINCOUNT=30000": {"GOMP_SPINCOUNT": "30000"}, "adaptive": {}}
CONDITIONS = ("idle", "decoder", "programs")
SIZE = (64, 112)
WARMUP = 2  # the first steps' one-time costs; as many as the adaptive controller skips, so its first round counts


def neighbour() -> None:
    """Another program: a torch loop with 2 threads (torch's defaults otherwise), until killed."""
    import torch

    torch.set_num_threads(2)
    x, w = torch.randn(1, 64, 64, 112), torch.randn(64, 64, 3, 3)
    a = torch.randn(256, 256)
    torch.conv2d(x, w, padding=1)
    print("ready", flush=True)
    while True:
        torch.conv2d(x, w, padding=1)
        a = torch.tanh(a @ a)


def cell(policy: str, condition: str, seconds: float, out: str) -> None:
    """One policy in one condition (this process's environment is the policy's): step times to ``out``."""
    import torch

    import visolo_fast as vf
    from tests.engine.lively import lively_net
    from visolo_fast.sample import sample_frames
    from visolo_fast.threads import ThreadController, ThreadPlan, plan_threads

    net = lively_net(size=SIZE, max_memory_frames=10, max_lost_frames=30)
    tracker = vf.Tracker(vf.Engine(net))
    frames = sample_frames(30, *SIZE)
    plan = plan_threads() if policy == "adaptive" else ThreadPlan((torch.get_num_threads(),), policy, apply=False)
    controller = ThreadController(plan)
    camera = source = None
    transport = ""
    if condition == "decoder":
        from visolo_fast.io.serve import MjpegServer, UdpCamera

        clip, fps = sample_frames(30, 360, 640), 25.0
        count = int(fps * (seconds + 60))
        try:
            camera, transport = UdpCamera(clip, fps, count), "H.264 over UDP (ffmpeg)"
        except ImportError:
            camera, transport = MjpegServer(clip, fps=fps, count=count), "HTTP MJPEG"
        source = vf.open_source(camera.url, timeout=10.0)
    times = []
    try:
        with torch.no_grad():
            end, step = None, 0
            while end is None or time.perf_counter() < end:
                if source is not None:
                    source.poll()  # the newest frame, as segment takes it (the reader decodes them all)
                start = time.perf_counter()
                tracker.step(frames[step % len(frames)])
                seconds_taken = time.perf_counter() - start
                controller.record(seconds_taken)
                step += 1
                if step == WARMUP:
                    end = time.perf_counter() + seconds
                elif step > WARMUP:
                    times.append(seconds_taken)
        decoded = source.read if source is not None else 0
    finally:
        if source is not None:
            source.close()
        if camera is not None:
            camera.close()
    with open(out, "w") as f:
        json.dump({"times": times, "threads": torch.get_num_threads(), "summary": controller.summary(),
                   "decoded": decoded, "transport": transport}, f)


def child_env(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return {**env, **POLICIES[policy]}


def start_programs() -> list[subprocess.Popen]:
    programs = [subprocess.Popen([sys.executable, __file__, "--neighbour"], stdout=subprocess.PIPE, text=True,
                                 env=child_env("defaults")) for _ in range(2)]
    for program in programs:
        if program.stdout.readline().strip() != "ready":
            raise RuntimeError("a neighbour program did not start")
    return programs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds each cell steps, after warm-up "
                                                                    "(default 12: about 5 minutes in all)")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"some of {', '.join(POLICIES)}")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help=f"some of {', '.join(CONDITIONS)}")
    parser.add_argument("--out", help="the report (default bench/results/threads-live-cpu-<date>-<commit>.txt)")
    parser.add_argument("--neighbour", action="store_true", help=argparse.SUPPRESS)  # a neighbour program
    parser.add_argument("--cell", nargs=3, metavar=("POLICY", "CONDITION", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.neighbour:
        neighbour()
        return
    if args.cell:
        cell(*args.cell[:2], args.seconds, args.cell[2])
        return
    policies, conditions = args.policies.split(","), args.conditions.split(",")
    for name, given, known in (("--policies", policies, POLICIES), ("--conditions", conditions, CONDITIONS)):
        if not set(given) <= set(known):
            parser.error(f"{name}: {', '.join(sorted(set(given) - set(known)))} not among {', '.join(known)}")

    import torch

    from bench.common import RESULTS, commit, device_name, write_report

    load = os.getloadavg()
    results, notes, began = {}, [], time.perf_counter()
    for condition in conditions:
        programs = start_programs() if condition == "programs" else []
        try:
            for policy in policies:
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "cell.json")
                    subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--cell", policy,
                                    condition, path], check=True, env=child_env(policy))
                    with open(path) as f:
                        data = json.load(f)
                ms = np.array(data["times"]) * 1000
                results[policy, condition] = (float(np.median(ms)), float(np.percentile(ms, 90)), len(ms))
                print(f"{policy:>24} {condition:>9}: median {results[policy, condition][0]:8.1f} ms, "
                      f"{len(ms)} steps; {data['summary']}", flush=True)
                if policy == "adaptive":
                    notes.append(f"# adaptive, {condition}: {data['summary']}")
                if data["decoded"]:
                    notes.append(f"# {policy}, decoder: {data['decoded']} frames decoded ({data['transport']})")
        finally:
            for program in programs:
                program.kill()
                program.wait()
    base = results.get(("defaults", "idle"), (None,))[0]
    cpu = device_name(torch.device("cpu")).replace(f", {torch.get_num_threads()} threads", "")
    lines = [f"# Tracker.step at 64 x 112 (lively random VisoloNet, input 64 x 112), {cpu}, "
             f"{len(os.sched_getaffinity(0))} usable cores, commit {commit()}, "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, load average {load[0]:.1f} at the start, "
             f"{args.seconds:g} s a cell, {time.perf_counter() - began:.0f} s in all",
             "# median / p90 step ms; x: the median over the idle step with torch's defaults; decoder: a 360 x 640 "
             "25 FPS stream decoded in the process; programs: two torch processes with 2 threads each",
             f"{'policy':>24}" + "".join(f"{c + ' median/p90':>22}{'x':>7}" for c in conditions)]
    for policy in policies:
        row = f"{policy:>24}"
        for condition in conditions:
            median, p90, _ = results[policy, condition]
            row += f"{median:>13.1f} /{p90:>7.1f}" + (f"{median / base:>6.2f}x" if base else f"{'':>7}")
        lines.append(row)
    if ("adaptive", "idle") in results:
        idle = results["adaptive", "idle"][0]
        if base:
            lines.append(f"# goal: adaptive idle within 10% of the defaults' idle step: {idle:.1f} vs {base:.1f} ms "
                         f"({idle / base:.2f}x): {'met' if idle <= 1.1 * base else 'NOT met'}")
        if ("adaptive", "programs") in results:
            busy = results["adaptive", "programs"][0]
            lines.append(f"# goal: adaptive beside the programs at most 3x its idle step: {busy:.1f} ms "
                         f"({busy / idle:.2f}x): {'met' if busy <= 3 * idle else 'NOT met'}")
    write_report("\n".join(lines + notes) + "\n", args.out or os.path.join(
        RESULTS, f"threads-live-cpu-{datetime.datetime.now():%Y%m%d}-{commit()}.txt"))


if __name__ == "__main__":
    main()
