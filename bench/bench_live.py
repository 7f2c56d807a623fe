"""Live sources end to end: a generated camera on the loopback, a model slower than the
camera, the newest frame against every frame.

    python bench/bench_live.py [--seconds 30] [--fps 30] [--size 360x640] [--input-size 176x320]
                               [--transports http,udp,rtsp-tcp,rtsp-udp] [--queue-size 32] [--weights model_final.pth]

The camera makes frames on its own clock, each with its number drawn into its pixels
(visolo_fast.io.serve.stamp_index), and notes when it made each one. It is served:

- http: HTTP MJPEG from Python (visolo_fast.io.serve), as network cameras serve it;
- udp: H.264 (x264, zerolatency) in MPEG-TS over UDP, the frames piped into the ffmpeg
  binary of imageio-ffmpeg (visolo_fast.io.serve.UdpCamera);
- rtsp-tcp, rtsp-udp: the same H.264 in RTP, served by the small RTSP server of
  visolo_fast.io.serve.RtspCamera, RTP in the RTSP connection (the default) or over UDP;
- udp and rtsp are skipped, with a message, when imageio-ffmpeg is not installed.

For each transport and mode, one stream is read with visolo_fast.open_source and stepped
through a Tracker for ``--seconds`` (after a warm-up on other frames), and reported:
frames processed, dropped (while running) and read; latency capture -> result (the frame
taken from the source -> its result ready) and camera -> result (the camera made the
frame -> its result ready, through encoding, transport and decoding), p50 / p95 / p99;
and at the end, the age of the newest processed frame (how far behind the camera the
last result is: seconds and camera frames), and the steps run at each torch thread count
(chosen as ``segment`` chooses it: visolo_fast.threads, adapted to the step's time unless
OMP_NUM_THREADS, OMP_WAIT_POLICY or GOMP_SPINCOUNT is set). The report goes to
bench/results/live-cpu-<date>-<commit>.txt (or -cuda-).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import visolo_fast as vf  # noqa: E402
from bench.common import RESULTS, commit, device_name, write_report  # noqa: E402
from visolo_fast.io.serve import MjpegServer, RtspCamera, UdpCamera, read_index, stamp_index  # noqa: E402
from visolo_fast.io.video import quiet_opencv  # noqa: E402
from visolo_fast.sample import sample_frames  # noqa: E402
from visolo_fast.threads import ThreadController, plan_threads  # noqa: E402


def percentiles(values: list[float]) -> str:
    if not values:
        return "      -       -       -"
    p = np.percentile(np.array(values) * 1000, [50, 95, 99])
    return f"{p[0]:7.0f} {p[1]:7.0f} {p[2]:7.0f}"


def run(engine, camera, url: str, every_frame: bool, seconds: float, queue_size: int, rtsp_transport: str) -> dict:
    source = vf.open_source(url, every_frame=every_frame, queue_size=queue_size, timeout=10.0, reconnect=0,
                            rtsp_transport=rtsp_transport)
    tracker = vf.Tracker(engine)
    capture, e2e, stamps = [], [], []
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    threads = ThreadController(plan_threads(device=engine.device))  # torch's thread count as segment chooses it
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            frame = source.next(timeout=10.0)
            if frame is None:
                raise RuntimeError(f"{url}: no frame for 10 s")
            began = time.perf_counter()
            tracker.step(frame.image)
            sync()
            threads.record(time.perf_counter() - began)
            done = time.monotonic()
            stamp = read_index(frame.image)
            capture.append(done - frame.time)
            e2e.append(done - camera.times[stamp])
            stamps.append(stamp)
        at_end = time.monotonic()
        dropped, read, waited = source.dropped, source.read, getattr(source, "waited", 0.0)
        newest_made = camera.made - 1
    finally:
        threads.close()
        source.close()
    return {"processed": len(capture), "dropped": dropped, "read": read, "waited": waited, "capture": capture,
            "e2e": e2e, "age_s": at_end - camera.times[stamps[-1]], "age_frames": newest_made - stamps[-1],
            "step_ms": 1000 * seconds / max(1, len(capture)), "threads": threads.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds each run is stepped (default 30)")
    parser.add_argument("--fps", type=float, default=30.0, help="the camera's frame rate (default 30)")
    parser.add_argument("--size", default="360x640", help="the camera's HxW (default 360x640)")
    parser.add_argument("--input-size", default="176x320", help="the network's input HxW (default 176x320; "
                                                                  "352x624 is the official)")
    parser.add_argument("--transports", default="http,udp,rtsp-tcp,rtsp-udp",
                        help="http, udp, rtsp-tcp, rtsp-udp (default all)")
    parser.add_argument("--queue-size", type=int, default=32, help="the every-frame queue (default 32)")
    parser.add_argument("--weights", help="a checkpoint (default: random weights, seeded)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", help="the report (default bench/results/live-<device>-<date>-<commit>.txt)")
    args = parser.parse_args()
    quiet_opencv()
    h, w = (int(v) for v in args.size.split("x"))
    ih, iw = (int(v) for v in args.input_size.split("x"))
    device = torch.device(args.device)
    if args.weights:
        net = vf.load_model(args.weights, device=device)
        net.config = vf.VisoloConfig(**{**net.config.to_dict(), "input_size": (ih, iw), "max_memory_frames": 10})
    else:
        torch.manual_seed(0)
        net = vf.VisoloNet(vf.VisoloConfig(input_size=(ih, iw), max_memory_frames=10)).eval().to(device)
    engine = vf.Engine(net)
    warm = vf.Tracker(engine)
    clip = sample_frames(30, h, w)
    for frame in clip[:3]:
        warm.step(frame)

    def frame_at(index: int) -> np.ndarray:
        return stamp_index(clip[index % len(clip)], index)

    count = int(args.fps * (args.seconds + 60))  # the camera stops by itself a minute after a run's end
    lines = []
    for transport in args.transports.split(","):
        for every_frame in (False, True):
            if transport == "http":
                camera = MjpegServer(frame_at, fps=args.fps, count=count)
            elif transport in ("udp", "rtsp-tcp", "rtsp-udp"):
                try:
                    camera = (UdpCamera if transport == "udp" else RtspCamera)(frame_at, args.fps, count)
                except ImportError:
                    lines.append(f"{transport:10} skipped: imageio-ffmpeg is not installed (pip install imageio-ffmpeg: "
                                 f"its ffmpeg binary encodes the stream)")
                    print(lines[-1], flush=True)
                    break
            else:
                raise SystemExit(f"--transports: {transport!r} is not http, udp, rtsp-tcp or rtsp-udp")
            try:
                result = run(engine, camera, camera.url, every_frame, args.seconds, args.queue_size,
                             "udp" if transport == "rtsp-udp" else "tcp")
            finally:
                camera.close()
            mode = f"every frame (queue {args.queue_size})" if every_frame else "newest frame"
            lines.append(f"{transport:10} {mode:22} {result['processed']:9d} {result['dropped']:7d} {result['read']:6d} "
                         f"{percentiles(result['capture'])}  {percentiles(result['e2e'])}  "
                         f"{result['age_s'] * 1000:8.0f} {result['age_frames']:6d}  {result['step_ms']:7.0f}")
            print(lines[-1], flush=True)
            lines.append(f"{'':10} {result['threads']}")
            print(lines[-1], flush=True)
            if every_frame and result["waited"] > 0:
                lines.append(f"{'':10} NB: the reader waited {result['waited']:.1f} s for room in the queue: the "
                             f"stream backed up in its transport meanwhile (capture -> result does not see it)")
                print(lines[-1], flush=True)
    cpu_flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in cpu_flags]
    load = os.getloadavg()
    header = [
        f"# {device_name(device)} [{' '.join(flags)}], commit {commit()}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, load average {load[0]:.1f} before the runs end",
        f"# camera {h} x {w} at {args.fps:g} FPS on 127.0.0.1; network input {ih} x {iw}, fast engine float32, "
        f"{'weights ' + os.path.basename(args.weights) if args.weights else 'random weights'}, memory capped at 10 "
        f"frames; {args.seconds:g} s a run",
        "# latency in ms: capture -> result (the frame taken from the source -> its result), camera -> result (the "
        "camera made it -> its result); age at end: the newest processed frame, behind the camera (ms, frames); "
        "step ms: the run's seconds / frames processed",
        f"{'transport':10} {'mode':22} {'processed':>9} {'dropped':>7} {'read':>6} "
        f"{'cap p50':>7} {'p95':>7} {'p99':>7}  {'cam p50':>7} {'p95':>7} {'p99':>7}  {'age ms':>8} {'frames':>6}  "
        f"{'step ms':>7}",
    ]
    write_report("\n".join(header + lines) + "\n",
                 args.out or os.path.join(RESULTS, f"live-{device.type}-{datetime.datetime.now():%Y%m%d}-{commit()}.txt"))


if __name__ == "__main__":
    main()
