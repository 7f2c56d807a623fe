"""What real streams do to a live source, on the loopback: keyframes seconds apart, servers
that accept and then send nothing (or one frame, then nothing), a sender restarted at
another size, a server that freezes. Each through the project's test cameras
(visolo_fast.io.serve, encoded by imageio-ffmpeg's ffmpeg) and, for keyframes, through the
system's ffmpeg where it is installed (.ci/run installs Debian's)."""

import shutil
import time

import numpy as np
import pytest

import visolo_fast as vf
from tests.test_live import H, W, stamped
from visolo_fast.io.live import open_source
from visolo_fast.io.serve import MjpegServer, RtspCamera, UdpCamera, read_index, stamp_index

FPS = 25


@pytest.mark.parametrize("camera, keyframes", [
    ("udp", 1.0), ("udp", 4.0), ("udp", 10.0), ("rtsp", 10.0), ("system ffmpeg, udp, -g 250", 10.0),
])
def test_a_stream_opens_at_its_next_keyframe(camera, keyframes):
    """Joined a second after a keyframe, a stream's first frame is its next keyframe: 10 s
    apart (x264's default, -g 250 at 25 FPS) opens with the default timeout, about 9 s
    later. (``fflags nobuffer`` threw away the keyframe FFmpeg read while probing: the first
    frame then waited for the one after, 19 s later, and the 5 s timeout gave up first.)"""
    ffmpeg = None
    if camera.startswith("system"):
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            pytest.skip("no ffmpeg on the PATH (Debian's ffmpeg package; .ci/run installs it)")
    make = RtspCamera if camera == "rtsp" else UdpCamera
    gop = round(FPS * keyframes)
    with make(stamped, fps=FPS, count=FPS * 60, keyframes=keyframes, ffmpeg=ffmpeg) as sender:
        while sender.made < FPS:  # the first keyframe went a second ago
            time.sleep(0.01)
        start, joined = time.monotonic(), sender.made
        with open_source(sender.url) as source:
            frame = source.next(timeout=30)
            waited = time.monotonic() - start
            assert frame is not None and source.size == (H, W)
            made = read_index(frame.image)
    print(f"{camera}: a keyframe every {keyframes:g} s, first frame {waited:.2f} s after the open")
    # the first frame is the first keyframe made after the open, not the one after it (which
    # a probe that throws its packets away waits for)
    assert made % gop == 0 and made <= gop * (joined // gop + 1), (made, joined, gop)
    assert waited < keyframes + 5


def test_reconnect_tries_count_until_frames_flow_again():
    """A server that accepts every connection and sends one frame, then nothing: each reopen
    gives a frame, but no stream; the tries are not counted afresh after each such reopen,
    and the source ends after ``reconnect`` of them with the last reason."""
    lines = []
    with MjpegServer(stamped, fps=FPS, count=FPS * 60, per_client=1) as server:
        source = open_source(server.url, timeout=1, reconnect=2, log=lines.append)
        start = time.monotonic()
        with pytest.raises(vf.InputError) as info:
            while source.next(timeout=30) is not None:
                pass
        elapsed = time.monotonic() - start
    assert str(info.value) == (f"INPUT: {server.url}: the stream was lost and did not come back after 2 tries in "
                               f"{str(info.value).split(' in ')[1].split(' s:')[0]} s: no frame for 1 s")
    tries = [line.split("; ")[1] for line in lines if "reconnecting" in line]
    assert tries == ["reconnecting in 0.5 s (try 1 of 2)", "reconnecting in 1 s (try 2 of 2)"], lines
    assert elapsed < 10 and len(server.requests) == 3  # the first open, then two tries
    assert source.taken == 3  # one frame a connection


def test_a_server_that_accepts_and_sends_nothing_fails_its_open():
    """Connected, the HTTP header sent, no frame: the open itself times out (as a reopen's
    would: a try that fails), and says so in one line."""
    with MjpegServer(stamped, fps=FPS, count=FPS * 60, per_client=0) as server:
        start = time.monotonic()
        with pytest.raises(vf.InputError) as info:
            open_source(server.url, timeout=1.5)
        assert time.monotonic() - start < 6
    assert str(info.value).startswith(f"INPUT: cannot open {server.url}: no video within 1.5 s"), info.value


def test_a_stream_that_stops_sending_is_reopened_when_it_gives_frames_again():
    """Frozen for 3 s, the stream is noticed within the timeout ("no frame for 1 s"), and the
    reopen that gives a frame succeeds; the tries then start over."""
    lines = []
    with MjpegServer(stamped, fps=FPS, count=FPS * 60) as server:
        with open_source(server.url, timeout=1, reconnect=5, log=lines.append) as source:
            assert source.next(timeout=5) is not None
            server.pause()
            paused = time.monotonic()
            while not lines and time.monotonic() < paused + 10:
                source.poll()
                time.sleep(0.02)
            noticed = time.monotonic() - paused
            time.sleep(2)
            server.resume()
            resumed = time.monotonic()
            while len(lines) < 2 or "reconnected" not in lines[-1]:
                assert source.next(timeout=10) is not None, lines
            after = source.next(timeout=5)
            assert after is not None and after.time >= resumed
    assert noticed < 1 + 2 and lines[0].endswith("no frame for 1 s; reconnecting in 0.5 s (try 1 of 5)"), lines
    assert "(try 1, " in lines[-1] or "(try 2, " in lines[-1] or "(try 3, " in lines[-1], lines


def test_a_frozen_encoder_is_noticed_and_no_frame_hides_its_age():
    """An H.264 sender frozen (SIGSTOP) for 3 s: the reader says "no frame for N s" within the
    timeout, and every frame handed out is as old as it is: its capture time is within a
    fraction of a second of when the camera made it, the frames a decoder flushes after the
    stall included (dropped, or stamped with when their packets came: never as new)."""
    lines = []
    with UdpCamera(stamped, fps=FPS, count=FPS * 60) as sender:
        with open_source(sender.url, timeout=1.5, reconnect=5, log=lines.append, every_frame=True) as source:
            frames = [source.next(timeout=5)]
            sender.pause()
            paused = time.monotonic()
            while not lines and time.monotonic() < paused + 10:
                frame = source.next(timeout=0.05)
                frames += [frame] if frame is not None else []
            noticed = time.monotonic() - paused
            time.sleep(1.5)
            sender.resume()
            while len(frames) < 40:
                frame = source.next(timeout=10)
                assert frame is not None, lines
                frames.append(frame)
    assert noticed < 1.5 + 2, (noticed, lines)
    assert "no frame for 1.5 s; reconnecting" in lines[0], lines
    ages = [frame.time - sender.times[read_index(frame.image)] for frame in frames]
    assert max(ages) < 1.0, ([(read_index(f.image), round(a, 2)) for f, a in zip(frames, ages)], lines)
    indices = [read_index(frame.image) for frame in frames]
    assert indices == sorted(set(indices))


def letterboxed(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What a frame of another size should become: scaled to fit ``size``, centred on black."""
    import cv2

    (h, w), (H_, W_) = image.shape[:2], size
    scale = min(H_ / h, W_ / w)
    nh, nw = round(h * scale), round(w * scale)
    out = np.zeros((H_, W_, 3), np.uint8)
    top, left = (H_ - nh) // 2, (W_ - nw) // 2
    out[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                                                   else cv2.INTER_LINEAR)
    return out


@pytest.mark.parametrize("other", [(128, 128), (48, 128)], ids=["taller", "wider"])
def test_a_sender_restarted_at_another_size_is_letterboxed_never_stretched(other):
    """A UDP sender restarted on the same port at another size within a second: the stream
    goes on without a reconnect, its new frames letterboxed into the first size (bars at the
    sides for a taller frame, above and below for a wider one), said once."""
    lines = []
    taller = np.full((*other, 3), 200, np.uint8)
    with UdpCamera(stamped, fps=FPS, count=FPS * 60) as first:
        source = open_source(first.url, timeout=10, log=lines.append, every_frame=True)
    try:
        assert source.next(timeout=5) is not None and source.size == (H, W)
        with UdpCamera(lambda i: stamp_index(taller, i), fps=FPS, count=FPS * 60, port=first.port):
            frame = source.next(timeout=5)
            while frame is not None and frame.image[H // 2, W // 2].mean() < 150:  # the first sender's last frames
                frame = source.next(timeout=5)
            assert frame is not None, lines
            later = [source.next(timeout=5) for _ in range(3)]
    finally:
        source.close()
    expected = letterboxed(np.full((*other, 3), 200, np.uint8), (H, W))
    for got in [frame, *later]:
        assert got.image.shape == (H, W, 3)
        bars = expected.max(axis=2) == 0
        assert bars.any() and got.image[bars].max() == 0, "black bars"
        centre = got.image[H // 4:3 * H // 4, W // 2 + 8:W // 2 + 16].astype(int)  # beside the stamp
        assert np.abs(centre - 200).max() < 12, "the picture in the middle, not stretched"
    size_lines = [line for line in lines if "letterboxed" in line]
    assert len(size_lines) == 1 and f"is {other[0]} x {other[1]}, the stream's frames were {H} x {W}" in size_lines[0]
    assert any("letterboxed" in note for note in source.notes)
    assert not any("reconnect" in line for line in lines), lines


def test_the_python_api_is_as_quiet_as_the_cli_and_the_environment_wins(tmp_path):
    """open_source in a fresh process (FFmpeg reads its log level once): a damaged file and a
    camera that is not there raise their one-line InputError, and nothing else reaches
    stderr; with the user's OPENCV_LOG_LEVEL, OpenCV's own warnings come through."""
    import os
    import subprocess
    import sys

    from tests.test_cli import CHATTER, REPO

    (tmp_path / "ftyp.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(4000))
    script = ("import sys\nimport visolo_fast as vf\n"
              f"for spec in [{str(tmp_path / 'ftyp.mp4')!r}, '97']:\n"
              "    try:\n        vf.open_source(spec)\n"
              "    except vf.InputError as exc:\n        print(exc, file=sys.stderr, flush=True)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    err = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120).stderr
    assert err.splitlines() == [
        f"INPUT: OpenCV cannot open the video {tmp_path / 'ftyp.mp4'} (not a video, or a damaged or incomplete file)",
        "INPUT: cannot open camera 97: no /dev/video97"], err
    loud = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**env, "OPENCV_LOG_LEVEL": "WARNING"},
                          capture_output=True, text=True, timeout=120).stderr
    assert any(c in loud for c in CHATTER) and len(loud.splitlines()) > 2, loud


def test_an_input_that_fails_still_gets_its_summary(tmp_path, capsys):
    """A single live input lost for good (reconnection off): the error, and before it the
    summary that accounts for every frame read and the latency log written."""
    from tests.engine.lively import lively_net
    from visolo_fast.cli import main
    from visolo_fast.io.serve import serve_mjpeg

    weights = tmp_path / "lively.pt"
    vf.save_model(lively_net(4), weights)
    log = tmp_path / "latency.csv"
    with serve_mjpeg(stamped, fps=FPS, count=FPS * 3) as camera:  # ends after 3 s
        status = main(["segment", camera.url, "--weights", str(weights), "--out", str(tmp_path / "out"),
                       "--reconnect", "0", "--latency-log", str(log)])
    printed = capsys.readouterr()
    assert status == 2
    assert printed.err.splitlines()[-1].startswith(f"error: INPUT: {camera.url}: the stream was lost and did not come "
                                                   f"back (reconnection is off): the stream ended or its connection "
                                                   f"closed; stopped there: ")
    summary = next(line for line in printed.out.splitlines() if line.startswith("input ("))
    read, processed, dropped, queued = (int(summary.split(": ", 1)[1].split()[i]) for i in (0, 3, 6, 9))
    assert processed > 0 and read == processed + dropped + queued, summary
    rows = log.read_text().splitlines()
    assert f"wrote {log} ({processed} rows: capture -> result of each frame)" in printed.out and len(rows) == processed + 1
