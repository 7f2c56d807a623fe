"""Live sources on the loopback: a generated camera served as HTTP MJPEG (visolo_fast.io.serve)
read through visolo_fast.open_source and the CLI. Newest frame against every frame with a
slow consumer, reconnection after the server restarts, sources that never open, several
streams through one engine, latency."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import visolo_fast as vf
from tests.engine.lively import lively_net
from tests.test_cli import CHATTER, REPO, read_video, refused_line
from visolo_fast import Tracker, save_model
from visolo_fast.cli import main
from visolo_fast.io.captures import ffmpeg_options
from visolo_fast.io.live import LatencyStats, open_source
from visolo_fast.io.urls import redact
from visolo_fast.io.serve import RtspCamera, UdpCamera, read_index, serve_mjpeg, stamp_index
from visolo_fast.io.video import quiet_opencv
from visolo_fast.sample import sample_frames

H, W = 72, 128
BASE = sample_frames(1, H, W)[0]

quiet_opencv()


def stamped(index: int) -> np.ndarray:
    return stamp_index(BASE, index)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "lively.pt"
    save_model(lively_net(4), path)
    return str(path)


def test_stamped_indices_survive_jpeg():
    import cv2

    for index in (0, 1, 255, 4097, 65535):
        ok, data = cv2.imencode(".jpg", stamped(index), [cv2.IMWRITE_JPEG_QUALITY, 70])
        assert read_index(cv2.imdecode(data, cv2.IMREAD_COLOR)) == index


def test_open_source_reads_a_loopback_stream():
    with serve_mjpeg(stamped, fps=30, count=120) as camera:
        start = time.monotonic()
        source = open_source(camera.url)
        assert time.monotonic() - start < 5
        assert (source.live, source.every_frame, source.kind, source.size, source.count) == (True, False, "live stream", (H, W), None)
        frames = []
        with source:
            for frame in source:
                assert isinstance(frame, vf.Frame) and frame.image.shape == (H, W, 3) and frame.image.dtype == np.uint8
                assert frame.time <= time.monotonic()
                frames.append((frame.index, frame.time, read_index(frame.image)))
                if len(frames) == 5:
                    break
        # in order, the index counts every frame read (gaps: frames dropped), the pixels are the camera's
        indices, times, stamps = zip(*frames)
        assert list(indices) == sorted(set(indices)) and list(times) == sorted(times)
        offset = stamps[0] - indices[0]  # frames the camera made before it had a client
        assert offset >= 0 and all(s - i == offset for i, s in zip(indices, stamps))
        # exact: every frame read is counted, with its fate
        assert source.ended and source.taken == len(frames)
        assert source.read == source.taken + source.dropped + source.queued and source.queued <= 1


def run_slow_consumer(every_frame: bool, steps: int = 12, step_s: float = 0.1) -> tuple[list[int], object]:
    """A consumer 3x slower than a 30 FPS camera: per frame taken, how many frames the camera
    was ahead of it when its step ended (frames made - the frame's number in the camera)."""
    with serve_mjpeg(stamped, fps=30, count=300) as camera, open_source(camera.url, every_frame=every_frame) as source:
        lags = []
        for frame in source:
            time.sleep(step_s)  # the model
            lags.append(camera.made - 1 - read_index(frame.image))
            if len(lags) == steps:
                break
    return lags, source


def test_newest_frame_lag_stays_bounded_and_every_frame_lag_grows():
    newest, source = run_slow_consumer(every_frame=False)
    # a step (3 camera frames) + the wait for the newest frame + transport: a few frames, never growing
    assert max(newest[2:]) <= 10, newest
    assert source.dropped > 0 and source.read == 12 + source.dropped + source.queued
    every, source = run_slow_consumer(every_frame=True)
    # every frame, in order: 2 more frames behind the camera at each step (30 FPS against 10)
    assert every[-1] >= every[2] + 12 and every[-1] >= 20, every
    assert all(b >= a for a, b in zip(every[2:], every[3:])), every
    assert source.read >= 12 and source.dropped == 0 and source.queued == source.read - 12  # left in the queue


def test_a_udp_h264_stream_opens():
    """MPEG-TS over UDP (an encoder box's stream), H.264 sent by ffmpeg: opened with the low-delay
    options, frames in the camera's order."""
    with UdpCamera(stamped, fps=30, count=30 * 60) as camera, open_source(camera.url) as source:
        assert (source.live, source.size) == (True, (H, W))
        frames = [source.next(timeout=5) for _ in range(4)]
        assert all(f is not None for f in frames)
        stamps = [read_index(f.image) for f in frames]
        assert stamps == sorted(set(stamps)) and [f.index for f in frames] == sorted(set(f.index for f in frames))
        assert camera.made - 1 - stamps[-1] < 30  # about the newest: less than a second behind


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_an_rtsp_stream_opens_over_tcp_by_default_or_udp(transport):
    """An IP camera's RTSP (H.264 over RTP): RTP in the RTSP connection unless UDP is asked for,
    as the SETUP the server received says."""
    options = {} if transport == "tcp" else {"rtsp_transport": "udp"}
    with RtspCamera(stamped, fps=30, count=30 * 60) as camera, open_source(camera.url, **options) as source:
        frames = [source.next(timeout=5) for _ in range(4)]
        assert all(f is not None for f in frames) and source.size == (H, W)
        stamps = [read_index(f.image) for f in frames]
        assert stamps == sorted(set(stamps)) and camera.made - 1 - stamps[-1] < 30
    setup = next(r for r in camera.requests if r.startswith("SETUP"))
    transports = [line for line in setup.splitlines() if line.startswith("Transport:")]
    assert ("RTP/AVP/TCP" in transports[0]) == (transport == "tcp") and ("client_port=" in transports[0]) == (transport == "udp")
    if transport == "tcp":  # a path the server does not have: the reason from its answer
        with RtspCamera(stamped, fps=30, count=30 * 60) as other, pytest.raises(vf.InputError) as info:
            open_source(other.url.replace("/live", "/other"), timeout=2)
        assert str(info.value) == f"INPUT: cannot open {other.url.replace('/live', '/other')}: not found (RTSP 404 Not Found)"


def test_every_frame_queue_is_bounded_and_the_reader_waits():
    with serve_mjpeg(stamped, fps=30, count=300) as camera, \
            open_source(camera.url, every_frame=True, queue_size=3) as source:
        time.sleep(0.5)  # 15 frames made, the queue holds 3: the reader waits for room
        assert source.read <= 4 and source.waited > 0.2
        first = [source.next(timeout=2) for _ in range(4)]
        assert [f.index for f in first] == [0, 1, 2, 3]  # in order, none dropped
        assert [read_index(f.image) for f in first] == [read_index(first[0].image) + i for i in range(4)]


def test_the_reader_reconnects_after_the_server_restarts():
    lines = []
    port = free_port()
    camera = serve_mjpeg(stamped, fps=30, count=300, port=port)
    source = open_source(camera.url, reconnect=3, log=lines.append)
    try:
        before = [source.next(timeout=2) for _ in range(3)]
        camera.close()
        time.sleep(0.2)
        camera = serve_mjpeg(lambda i: stamped(1000 + i), fps=30, count=300, port=port)  # the camera restarted
        after = source.next(timeout=5)
        while after is not None and read_index(after.image) < 1000:  # frames read before the drop
            after = source.next(timeout=5)
        assert after is not None and after.index > before[-1].index
        assert len(lines) == 2, lines
        assert lines[0] == (f"INPUT {camera.url}: the stream ended or its connection closed; reconnecting in 0.5 s "
                            f"(try 1 of 3)")
        assert lines[1].startswith(f"INPUT {camera.url}: reconnected (try 1, ")
    finally:
        source.close()
        camera.close()


def test_a_stream_that_does_not_come_back_fails_naming_it():
    lines = []
    camera = serve_mjpeg(stamped, fps=30, count=300)
    source = open_source(camera.url, reconnect=2, log=lines.append)
    try:
        assert source.next(timeout=2) is not None
        camera.close()
        start = time.monotonic()
        with pytest.raises(vf.InputError) as info:
            while source.next(timeout=10) is not None:
                pass
        assert time.monotonic() - start < 5  # 0.5 s + 1 s of backoff
        assert str(info.value) == (f"INPUT: {camera.url}: the stream was lost and did not come back after 2 tries in 2 s: "
                                   f"connection refused (127.0.0.1:{camera.port}: no server there)")
        assert [line.split("; ")[1] for line in lines] == ["reconnecting in 0.5 s (try 1 of 2)",
                                                          "reconnecting in 1 s (try 2 of 2)"]
        assert lines[1].startswith(f"INPUT {camera.url}: connection refused")  # each try says why the last failed
        assert source.ended and source.poll() is None  # the error is raised once
    finally:
        source.close()


def test_low_delay_options_and_the_users_win(monkeypatch):
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    probe = {"flags": "low_delay", "analyzeduration": "12000000", "probesize": str(32 << 20), "fpsprobesize": "0"}
    assert ffmpeg_options("rtsp://cam/1") == {**probe, "rtsp_transport": "tcp"}
    assert ffmpeg_options("rtsp://cam/1", "udp", timeout=3) == {**probe, "analyzeduration": "3000000", "rtsp_transport": "udp"}
    assert ffmpeg_options("http://cam/1") == probe  # no fflags nobuffer: it throws the first keyframe away
    assert redact("rtsp://admin:secret@10.1.2.3:8554/live") == "rtsp://admin:***@10.1.2.3:8554/live"
    with serve_mjpeg(stamped, fps=30, count=300) as camera:
        open_source(camera.url).close()
        monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "user_agent;theirs")
        open_source(camera.url).close()
        agents = [line for request in camera.requests for line in request.splitlines() if line.startswith("User-Agent")]
        assert len(agents) == 2 and agents[0].startswith("User-Agent: Lavf") and agents[1] == "User-Agent: theirs"
        assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "user_agent;theirs"


@pytest.mark.parametrize("url, shown", [
    ("rtsp://admin:secret@10.1.2.3:8554/live", "rtsp://admin:***@10.1.2.3:8554/live"),
    ("rtsp://alice:pa/ss@127.0.0.1:8556/live", "rtsp://alice:***@127.0.0.1:8556/live"),
    ("rtsp://alice:pa#ss@cam/live", "rtsp://alice:***@cam/live"),
    ("rtsp://alice:pa?ss@cam/live?channel=1", "rtsp://alice:***@cam/live?channel=1"),
    ("RTSP://alice:p@ss@cam:554/live", "RTSP://alice:***@cam:554/live"),
    ("rtsp://alice:p%40ss%@cam/live", "rtsp://alice:***@cam/live"),
    ("rtsp://alice:secret@[::1]:9/live", "rtsp://alice:***@[::1]:9/live"),
    ("rtsp://alice:secret@[::1]/live", "rtsp://alice:***@[::1]/live"),
    ("rtsp://[::1]:9/live", "rtsp://[::1]:9/live"),
    ("rtsp://cam/live", "rtsp://cam/live"),
    ("http://cam/snap@2x.jpg", "http://cam/snap@2x.jpg"),  # an @ in the path, no userinfo
    ("http://token@cam/snap@2x.jpg", "http://***@cam/snap@2x.jpg"),  # no ':': a token, hidden whole
    ("rtsp://alice:pw@cam/a@b", "rtsp://alice:***@b"),  # user:pw@cam/a or user:pw@cam/a@b? the more is hidden
    ("/dev/video0", "/dev/video0"),
])
def test_redact_hides_the_password_whatever_it_holds(url, shown):
    assert redact(url) == shown


def test_no_part_of_a_password_is_printed_sent_or_named(tmp_path, capsys):
    """Passwords that urlsplit cuts short, to a closed port (the error line), to a server that
    answers 404 (the request for the reason goes to the path after the host) and on a stream
    that opens (its reader thread's name)."""
    port, out = free_port(), ["--timeout", "2", "--out", str(tmp_path / "out")]

    def said(capsys):  # the one line of stderr; nothing of the password anywhere
        printed = capsys.readouterr()
        assert "Zq" not in printed.out + printed.err and "9x" not in printed.out + printed.err, printed
        lines = printed.err.splitlines()
        assert len(lines) == 1, printed.err
        return lines[0]

    for password in ["Zq@9x", "Zq%409x%"]:
        assert main(["segment", f"rtsp://alice:{password}@127.0.0.1:{port}/live", *out]) == 2
        assert said(capsys) == (f"error: INPUT: cannot open rtsp://alice:***@127.0.0.1:{port}/live: connection "
                                f"refused (127.0.0.1:{port}: no server there)")
    # FFmpeg cuts these URLs elsewhere, and where the host is in doubt nothing is connected to
    for password in ["Zq/9x", "Zq#9x", "Zq?9x"]:
        assert main(["segment", f"rtsp://alice:{password}@127.0.0.1:{port}/live", *out]) == 2
        assert said(capsys) == (f"error: INPUT: cannot open rtsp://alice:***@127.0.0.1:{port}/live: FFmpeg cannot "
                                f"open it (a password holding /, ? or # must be percent-encoded: %2F, %3F, %23; an @ "
                                f"in a path, %40)")
    assert main(["segment", f"rtsp://alice:Zq9x@[::1]:{port}/live", *out]) == 2
    assert said(capsys) == (f"error: INPUT: cannot open rtsp://alice:***@[::1]:{port}/live: connection refused "
                            f"(::1:{port}: no server there)")
    with serve_mjpeg(stamped, fps=30, count=300) as camera:
        other = f"http://alice:Zq@9x@127.0.0.1:{camera.port}/other.mjpg"
        assert main(["segment", other, *out]) == 2
        assert said(capsys) == (f"error: INPUT: cannot open http://alice:***@127.0.0.1:{camera.port}/other.mjpg: "
                                f"not found (HTTP 404 Not Found)")
        assert "GET /other.mjpg HTTP/1.0" in [request.splitlines()[0] for request in camera.requests]
        with open_source(camera.url.replace("http://", "http://alice:Zq9x@")) as source:
            names = [thread.name for thread in threading.enumerate() if thread.name.startswith("visolo_fast reader")]
            assert names == [f"visolo_fast reader http://alice:***@127.0.0.1:{camera.port}/stream.mjpg"]
            assert "Zq9x" in source.spec  # kept, to reopen the stream
    assert not (tmp_path / "out").exists()


def test_sources_that_never_open_fail_in_one_line_within_seconds(tmp_path):
    """As a user runs it (a fresh process, FFmpeg's logs as they are): one line naming the URL
    and the reason, in under 10 s, nothing else on stderr."""
    refused = f"127.0.0.1:{free_port()}"
    script = f"""
import sys, time
from visolo_fast.cli import main
from visolo_fast.io.serve import serve_mjpeg
from visolo_fast.sample import sample_frames
camera = serve_mjpeg(sample_frames(1, 72, 128), count=1000)
for url in ["http://{refused}/stream.mjpg", "rtsp://{refused}/live", camera.url.replace("stream", "other"),
            "udp://127.0.0.1:{free_port()}", "rtsp://user:pw@{refused}/live"]:
    start = time.monotonic()
    rc = main(["segment", url, "--timeout", "2", "--out", {str(tmp_path / "out")!r}])
    print("rc", rc, round(time.monotonic() - start, 1), file=sys.stderr, flush=True)
camera.close()
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    err = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120).stderr
    lines = err.splitlines()
    assert len(lines) == 10 and not any(c in err for c in CHATTER), err
    assert lines[0::2] == [
        f"error: INPUT: cannot open http://{refused}/stream.mjpg: connection refused ({refused}: no server there)",
        f"error: INPUT: cannot open rtsp://{refused}/live: connection refused ({refused}: no server there)",
        lines[4].split(": not found")[0] + ": not found (HTTP 404 Not Found)",
        lines[6].split(": no video")[0] + ": no video within 2 s (no packets, or no keyframe yet: a stream's first frame "
                                          "waits for its first keyframe; if they are further apart, raise the timeout)",
        f"error: INPUT: cannot open rtsp://user:***@{refused}/live: connection refused ({refused}: no server there)",
    ], err
    assert lines[4].startswith("error: INPUT: cannot open http://127.0.0.1:") and lines[6].startswith("error: INPUT: cannot open udp://")
    for line in lines[1::2]:
        rc, seconds = line.split()[1:]
        assert rc == "2" and float(seconds) < 10, err
    assert not (tmp_path / "out").exists()


def slow_step(monkeypatch, seconds: float, stop_after: int | None = None) -> list[float]:
    """Tracker.step as a model that takes at least ``seconds`` a frame; Ctrl-C after
    ``stop_after`` frames. Returns the steps' times, as they come."""
    real_step = Tracker.step

    class Times(list):
        config = None  # the model's config as the tracker runs it

    times = Times()

    def step(self, frame):
        if stop_after is not None and len(times) == stop_after:
            raise KeyboardInterrupt
        started = time.monotonic()
        times.config = self.config
        result = real_step(self, frame)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        times.append(time.monotonic() - started)
        return result

    monkeypatch.setattr(Tracker, "step", step)
    return times


@pytest.mark.parametrize("every_frame", [False, True], ids=["newest", "every-frame"])
def test_segment_a_live_stream_from_the_cli(tmp_path, weights, capsys, monkeypatch, every_frame):
    steps = slow_step(monkeypatch, 0.15, stop_after=6)  # a model slower than the camera; Ctrl-C after 6 frames
    out, log = tmp_path / "out", tmp_path / "latency.csv"
    with serve_mjpeg(stamped, fps=30, count=30 * 120) as camera:  # stops by itself after 2 minutes
        started = time.monotonic()
        status = main(["segment", camera.url, "--weights", weights, "--out", str(out), "--latency-log", str(log),
                       *(["--every-frame", "--queue-size", "64"] if every_frame else [])])
        ended = time.monotonic()
    assert status == 130
    printed = capsys.readouterr()
    mode = "every frame through a queue of 64" if every_frame else "newest frame: the others dropped"
    assert f"input: {camera.url} (live stream, {mode}, 72 x 128, 25 FPS)" in printed.out
    assert ("note: a live input: the model's memory is capped at 10 frames (--max-memory-frames) and a track lost for "
            "more than 30 frames ends (--max-lost-frames)") in printed.out
    assert (steps.config.max_memory_frames, steps.config.max_lost_frames) == (10, 30)
    assert "interrupted after 6 frames" in printed.out
    summary = next(line for line in printed.out.splitlines() if line.startswith("input ("))
    # every frame read, accounted for: the sources are closed before the summary
    read, processed, dropped, queued = (int(summary.split(": ", 1)[1].split()[i]) for i in (0, 3, 6, 9))
    # the 7th frame was taken into the step that Ctrl-C stopped
    assert summary.startswith(f"input ({camera.url}): {read} read = 6 processed + {dropped} dropped + {queued} still "
                              f"queued at the end + 1 stopped in the model; latency capture -> result p50 ")
    assert read == processed + dropped + queued + 1 and processed == 6 and "p99" in summary
    assert (dropped == 0 and queued > 0) if every_frame else (dropped > 0 and queued <= 1), summary
    assert "dropped" in printed.err and "latency p50" in printed.err  # the progress line
    rows = log.read_text().splitlines()
    assert rows[0] == "input,frame,source_frame,capture_s,result_s,latency_ms" and len(rows) == 7
    values = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    assert len(read_video(str(out / "overlay.mp4"))) == 6  # the outputs of the frames done, each once
    if not every_frame:
        # in real time (test_a_realtime_overlay_keeps_to_the_clock): each frame from its capture,
        # to a tick (the log's times: to a microsecond); as long as the run from the first
        # capture to the close of the files, which came after the last result and before main
        # returned (capture_s counts from a start after `started`)
        import av

        with av.open(str(out / "overlay.mp4")) as container:
            stream = container.streams.video[0]
            tick = float(stream.time_base)
            starts = np.array([frame.time for frame in container.decode(stream)])
            duration = stream.duration * tick
        assert np.abs(starts - (values[:, 3] - values[0, 3])).max() <= tick / 2 + 1e-6, (starts, values[:, 3])
        shortest, longest = values[-1, 4] - values[0, 3], ended - started - values[0, 3]
        assert shortest - tick <= duration <= longest + tick, (duration, shortest, longest)
    assert list(values[:, 1]) == list(range(6))
    latency = values[:, 5] / 1000
    assert np.allclose(latency, values[:, 4] - values[:, 3], atol=1e-5) and (latency > 0).all()
    waited = latency - np.array(steps)  # capture -> the step's start: how long the frame waited for the model
    if every_frame:
        assert list(values[:, 2]) == list(range(6))  # none dropped
        assert waited[-1] > waited[1] + 0.3, (latency, steps)  # each frame waits longer (0.15 s a step at 30 FPS)
    else:
        assert (np.diff(values[:, 2]) > 1).all()  # frames the model could not take were dropped
        assert waited[1:].max() < 0.25, (latency, steps)  # at most a frame interval, whatever the step took


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_command_with_its_files_whole(tmp_path, weights, signum, status):
    """``python -m visolo_fast segment`` on a live stream, stopped by SIGTERM (a service
    manager's stop) as by Ctrl-C: the files of the frames done are closed and whole, and the
    process ends killed by SIGTERM (or with status 130 for SIGINT)."""
    if signum == signal.SIGINT and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here, and so in the child (Python keeps an ignored SIGINT ignored)")
    out, log = tmp_path / "out", tmp_path / "latency.csv"
    # The real entry point, its step slowed to 0.3 s: the signal, sent 0.1 s after a frame's
    # row, comes during a step (as it mostly does: the model's step is the run's time)
    script = f"""
import runpy, sys, time
from visolo_fast import Tracker
real_step = Tracker.step
def step(self, frame):
    result = real_step(self, frame)
    time.sleep(0.3)
    return result
Tracker.step = step
sys.argv = ["visolo_fast", "segment", sys.argv[1], "--every-frame", "--weights", {weights!r}, "--out", {str(out)!r},
            "--latency-log", {str(log)!r}]
runpy.run_module("visolo_fast", run_name="__main__")
"""
    with serve_mjpeg(stamped, fps=30, count=30 * 120) as camera, open(tmp_path / "stdout", "w") as stdout:
        child = subprocess.Popen([sys.executable, "-c", script, camera.url], cwd=REPO, stdout=stdout,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while child.poll() is None and time.monotonic() < deadline and \
                    (not log.exists() or len(log.read_text().splitlines()) < 4):
                time.sleep(0.02)
            time.sleep(0.1)
            child.send_signal(signum)
            assert child.wait(timeout=60) == status
        finally:
            if child.poll() is None:
                child.kill()
    printed = (tmp_path / "stdout").read_text()
    rows = log.read_text().splitlines()[1:]
    done = len(rows)
    assert done >= 3 and f"interrupted after {done} frames" in printed, printed
    assert all(len(row.split(",")) == 6 for row in rows)
    assert len(read_video(str(out / "overlay.mp4"))) == done  # closed: its index (moov) written, every frame read back
    entries = json.loads((out / "results.json").read_text())
    assert entries and all(len(entry["segmentations"]) == done for entry in entries)


def test_a_realtime_overlay_keeps_to_the_clock(tmp_path):
    """Frames captured at uneven times (0.1 to 5 frame intervals apart at 25 FPS) and shown in
    real time: the overlay holds each frame once, in order, shown from its capture (counted
    from the first, to half a tick of the video's timescale) to the next one's, the last one
    until the files close."""
    import av
    import torch

    from visolo_fast import FrameResult
    from visolo_fast.io.outputs import RunOutputs

    fps, frames = 25.0, 30
    gaps = np.random.default_rng(0).uniform(0.1, 5, frames - 1) / fps
    first = time.monotonic() - gaps.sum() - 0.2  # the last frame was captured 0.2 s ago
    captures = first + np.concatenate([[0], np.cumsum(gaps)])
    outputs = RunOutputs(str(tmp_path), fps, (H, W), ["thing"], save_masks=False, realtime=True)
    for k in range(frames):
        none = FrameResult(k, torch.zeros(0, dtype=torch.int64), torch.zeros(0, H, W, dtype=torch.bool),
                           torch.zeros(0, dtype=torch.int64), torch.zeros(0))
        outputs.add(stamped(k), none, float(captures[k]))
    before = time.monotonic()
    outputs.close(Tracker(lively_net(4)))
    after = time.monotonic()
    assert not outputs.notes
    with av.open(outputs.overlay) as container:
        stream = container.streams.video[0]
        tick = float(stream.time_base)
        starts = np.array([frame.time for frame in container.decode(stream)])
        duration = stream.duration * tick
    assert np.abs(starts - (captures - first)).max() <= tick / 2
    assert before - first - tick / 2 <= duration <= after - first + tick / 2
    assert [read_index(image) for image in read_video(outputs.overlay)] == list(range(frames))
    with pytest.raises(ValueError, match="needs each frame's capture time"):
        outputs.add(stamped(0), none)


def test_several_streams_go_through_one_engine_in_one_batch(tmp_path, weights, capsys, monkeypatch):
    calls = []
    real = vf.step_many

    def step_many(trackers, frames):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(len(trackers))
        assert len({id(t.engine) for t in trackers}) == 1
        return real(trackers, frames)

    monkeypatch.setattr(vf, "step_many", step_many)
    out = tmp_path / "out"
    with serve_mjpeg(stamped, fps=30, count=3600) as one, serve_mjpeg(lambda i: stamped(5000 + i), fps=30, count=3600) as two:
        assert main(["segment", one.url, two.url, "--weights", weights, "--out", str(out)]) == 130
    printed = capsys.readouterr().out
    assert f"input 0: {one.url}" in printed and f"-> {out / '0'}{os.sep}" in printed
    assert calls and max(calls) == 2  # both streams in one pass
    for number in (0, 1):
        frames = len(read_video(str(out / str(number) / "overlay.mp4")))
        assert frames >= 1 and f"input {number} (" in printed
    assert "interrupted after" in printed and "frames of 2 inputs" in printed


def test_a_pipe_is_read_in_order(tmp_path, weights, capsys):
    """A FIFO carrying a video (here an MJPEG AVI) is read as a file: every frame, in order."""
    import cv2

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(5):
        writer.write(cv2.cvtColor(stamped(i), cv2.COLOR_RGB2BGR))
    writer.release()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(clip.read_bytes())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with open_source(str(fifo)) as source:
        assert (source.live, source.kind) == (False, "pipe")
        assert [read_index(f.image) for f in source] == [0, 1, 2, 3, 4]
    feeder.join(timeout=5)
    with pytest.raises(ValueError, match="not a live source"):
        open_source(str(clip), every_frame=False)


def test_a_video_file_over_http_is_read_as_a_file(tmp_path):
    """A URL whose stream declares its length: every frame, in order, from the first."""
    import functools
    import http.server

    import cv2

    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(6):
        writer.write(cv2.cvtColor(stamped(i), cv2.COLOR_RGB2BGR))
    writer.release()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with open_source(f"http://127.0.0.1:{server.server_address[1]}/clip.avi") as source:
            assert (source.live, source.kind, source.count) == (False, "video file over the network", 6)
            assert [(f.index, read_index(f.image)) for f in source] == [(i, i) for i in range(6)]
    finally:
        server.shutdown()
        server.server_close()


def test_latency_percentiles_within_one_percent():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(np.log(0.04), 0.3, 5000), rng.uniform(0.5, 2.0, 50)])
    stats = LatencyStats()
    for v in values:
        stats.add(float(v))
    for q in (50, 95, 99):
        assert abs(stats.percentile(q) / np.percentile(values, q, method="inverted_cdf") - 1) < 0.01
    assert stats.percentile(100) == values.max() and stats.count == len(values)
    assert np.isnan(LatencyStats().percentile(50))
    merged = LatencyStats.merged([stats, stats])
    assert merged.count == 2 * len(values) and merged.percentile(50) == stats.percentile(50)


def test_the_readme_live_example_runs_and_says_what_it_did(capsys, tmp_path, monkeypatch):
    """The README's example of a live source (tests/test_readme.py runs it too): it prints
    one line per frame, in order of the source, then read = taken + dropped + queued."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "open_source" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6, lines
    indices = [int(line.split()[0]) for line in lines[:5]]
    assert indices == sorted(set(indices)) and all(line.split()[2] == "ms" for line in lines[:5])
    read, taken, dropped, queued = (int(word) for word in lines[5].split()[::2])
    assert lines[5] == f"{read} read: {taken} taken, {dropped} dropped, {queued} queued"
    assert taken == 5 and read == taken + dropped + queued


def test_live_options_that_do_nothing_are_refused_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("visolo_fast.cli.open_source", lambda *_, **__: pytest.fail("the input was opened first"))
    out = ["--out", str(tmp_path / "out")]
    cases = [
        (["http://127.0.0.1:9/x", "--queue-size", "8"],
         "error: --queue-size: it sizes the --every-frame queue, and no --every-frame was given"),
        (["http://127.0.0.1:9/x", "--rtsp-transport", "udp"],
         "error: --rtsp-transport udp: it is for rtsp:// inputs, and none was given"),
        (["http://127.0.0.1:9/x", "--latency-log", str(tmp_path)],
         f"error: --latency-log: cannot write to {tmp_path}: a folder, not a file"),
    ]
    for argv, line in cases:
        assert main(["segment", *argv, *out]) == 2
        assert refused_line(capsys) == line
    for argv, message in [(["--timeout", "0"], "must be a number of seconds > 0"), (["--reconnect", "-1"], "must be 0 or more"),
                          (["--queue-size", "0"], "must be at least 1")]:
        assert main(["segment", "http://127.0.0.1:9/x", *argv, *out]) == 2
        assert refused_line(capsys).startswith(f"error: {argv[0]}: {message}")
    assert not (tmp_path / "out").exists()


def test_caps_for_live_inputs_only_unless_asked(tmp_path, weights, capsys, monkeypatch):
    from tests.test_cli import frames_folder

    configs = []
    real_step = Tracker.step

    def step(self, frame):
        configs.append((self.config.max_memory_frames, self.config.max_lost_frames))
        return real_step(self, frame)

    monkeypatch.setattr(Tracker, "step", step)
    folder, out = frames_folder(tmp_path / "frames", 2), str(tmp_path / "out")
    assert main(["segment", folder, "--weights", weights, "--out", out]) == 0
    assert main(["segment", folder, "--weights", weights, "--out", out, "--max-lost-frames", "4"]) == 0
    def interrupt(self, frame):  # Ctrl-C at the live input's first frame
        configs.append((self.config.max_memory_frames, self.config.max_lost_frames))
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "step", interrupt)
    with serve_mjpeg(stamped, fps=30, count=30 * 60) as camera:
        assert main(["segment", camera.url, "--weights", weights, "--out", out, "--max-memory-frames", "none",
                     "--max-lost-frames", "7"]) == 130
    assert configs == [(None, None)] * 2 + [(None, 4)] * 2 + [(None, 7)]
    assert "note: a live input" not in capsys.readouterr().out  # nothing capped that was not asked for
