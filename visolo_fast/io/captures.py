"""What a live source's reader thread reads: decoded frames of a network stream (FFmpeg
through PyAV) or of a camera (OpenCV), each with when its data came; how a stream is
opened (FFmpeg's options, its timeouts) and a camera, and why either could not be."""

from __future__ import annotations

import collections
import errno
import os
import sys
import time

import cv2
import numpy as np

from visolo_fast.io.urls import redact, why_not
from visolo_fast.io.video import InputError, one_line, to_rgb

ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # the user's FFmpeg options, in OpenCV's syntax: key;value|key;value
# A stream's first frame waits for its first keyframe, which cameras send every 1-10 s (x264's
# default: every 250 frames): long enough for a 10 s interval, and the open that precedes it.
DEFAULT_TIMEOUT = 12.0
PROBE_BYTES = 32 << 20  # what FFmpeg may read while it looks for the first keyframe: 10 s at 25 Mbit/s


def ffmpeg_options(url: str, rtsp_transport: str = "tcp", timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
    """The FFmpeg options a stream at ``url`` is opened with, unless the environment sets
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (``key;value|key;value``, which then wins).

    Low delay without losing the first keyframe: no reordering delay in the decoder
    (``flags low_delay``), and no ``fflags nobuffer``, which would throw away the packets read
    while the stream is probed (its first keyframe among them: the first frame would then wait
    for the next one, 10 s later on many cameras). The probe may last ``timeout``, so that a
    stream whose keyframes are that far apart opens, and ends with the first keyframe: no
    frames read to measure the frame rate (``fpsprobesize 0``), which would be handed out
    late, their age hidden (0.4 s for a 25 FPS H.264 stream)."""
    if ENV in os.environ:
        pairs = [item.split(";", 1) for item in os.environ[ENV].split("|") if item]
        return {key: value for key, value in (p + [""] if len(p) == 1 else p for p in pairs)}
    options = {"flags": "low_delay", "analyzeduration": str(int(timeout * 1e6)), "probesize": str(PROBE_BYTES),
               "fpsprobesize": "0"}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = rtsp_transport
    return options


class Capture:
    """What a :class:`LiveSource`'s reader reads: decoded frames of a network stream or a camera.

    Attributes:
        fps: the source's frame rate (25 if unknown).
        why: why the last :meth:`next` returned None, in a few words.
        stale: frames decoded after a stall so far: read, and dropped (their age is unknown).
    """

    fps: float
    why = ""
    stale = 0

    def next(self, timeout: float) -> tuple[np.ndarray, float] | None:
        """The next frame, uint8 [H, W, 3] RGB, and when its data came (time.monotonic()); None
        if none came within ``timeout`` seconds or the source ended (:attr:`why` says which)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class Camera(Capture):
    """A camera, through OpenCV."""

    def __init__(self, capture: cv2.VideoCapture, name: str, notes: set[str]):
        self._capture, self._name, self._notes = capture, name, notes
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 25.0

    def next(self, timeout: float) -> tuple[np.ndarray, float] | None:
        start = time.monotonic()
        while True:
            if not self._capture.grab():
                waited = time.monotonic() - start
                self.why = f"no frame for {timeout:g} s" if waited >= timeout * 0.9 else "the camera stopped"
                return None
            captured = time.monotonic()
            ok, image = self._capture.retrieve()
            if ok and image is not None:
                return to_rgb(image, self._name, self._notes), captured
            if captured - start > timeout:
                self.why = f"no frame for {timeout:g} s"
                return None

    def release(self) -> None:
        self._capture.release()


class NetworkStream(Capture):
    """A network stream, demuxed and decoded by FFmpeg through PyAV (which sees each frame's
    own size, and when each packet came; OpenCV rescales every frame to the first frame's
    size, silently, and stamps the frames it flushes after a stall as new).

    A frame's time is when FFmpeg returned the packet that completed it. The frames a decoder
    still held when the stream stalled (read timed out) come out after it, seconds old: they
    are dropped and counted in :attr:`stale`.
    """

    def __init__(self, container):
        import av

        self._av, self._container = av, container
        stream = container.streams.video[0]
        stream.codec_context.flags |= av.codec.context.Flags.low_delay
        # NB: slice threads only: frame threads hold a frame per thread back, a frame of delay each
        stream.codec_context.thread_type = av.codec.context.ThreadType.SLICE
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate and 0 < rate < 1000 else 25.0
        self._packets = container.demux(stream)
        self._ready: collections.deque[tuple[object, float]] = collections.deque()
        self._held: list = []  # frames out of a flush: in time if the stream ended, stale if it stalled
        self._last = time.monotonic()  # when the newest packet came
        self._done = False

    def next(self, timeout: float) -> tuple[np.ndarray, float] | None:
        av, start = self._av, time.monotonic()
        while not self._ready and not self._done:
            if time.monotonic() - start >= timeout:  # packets, but no frame in them (no keyframe, broken)
                self.why, self._done = f"no frame for {timeout:g} s", True
                break
            asked = time.monotonic()
            try:
                packet = next(self._packets)
            except StopIteration:  # the end of the stream: the frames it flushed are its last
                self._ready.extend((frame, self._last) for frame in self._held)
                self.why, self._done = "the stream ended or its connection closed", True
                break
            except av.ExitError:  # FFmpeg's read waited `timeout` (the interrupt of av.open's timeout)
                self.stale += len(self._held)
                self.why, self._done = f"no frame for {timeout:g} s", True
                break
            except (av.FFmpegError, OSError) as exc:
                self.stale += len(self._held)
                closed = getattr(exc, "errno", None) in (errno.EIO, errno.ECONNRESET, errno.EPIPE)
                self.why = "the stream ended or its connection closed" if closed else f"the stream failed ({one_line(exc)})"
                self._done = True
                break
            flush = packet.size == 0  # what the demuxer sends, whatever the reason, as it stops
            came = time.monotonic()
            # NB: a packet that took the whole timeout to come was cut short by it: the demuxer
            # hands out what it held (MPEG-TS completes a packet when the next one starts)
            stalled = not flush and came - asked >= 0.9 * timeout
            if not flush:
                self._last = came
            try:
                frames = packet.decode()
            except av.FFmpegError:  # a damaged packet (a lost UDP datagram): the decoder goes on
                continue
            if flush:
                self._held.extend(frames)
            elif stalled:
                self.stale += len(frames)
                self.why, self._done = f"no frame for {timeout:g} s", True
            else:
                self._ready.extend((frame, self._last) for frame in frames)
        if not self._ready:
            return None
        frame, came = self._ready.popleft()
        return frame.to_ndarray(format="rgb24"), came

    def release(self) -> None:
        self._packets.close()
        self._container.close()


class OpenError(InputError):
    """A source that cannot be opened: ``reason`` says why, in a few words."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def open_stream(url: str, timeout: float, rtsp_transport: str) -> NetworkStream | None:
    """A network stream, opened by FFmpeg (PyAV) with :func:`ffmpeg_options` and ``timeout``
    on opening (PyAV gives it to the connection and to the probe each) and on each read;
    None if it declares a length (a file, to be read by OpenCV in order); else
    :class:`OpenError`."""
    try:
        import av
    except ImportError:
        raise OpenError(f"INPUT: cannot open {redact(url)}: network streams are read through PyAV, which is not "
                        f"installed: pip install av", "PyAV is not installed") from None
    start = time.monotonic()
    try:
        container = av.open(url, options=ffmpeg_options(url, rtsp_transport, timeout), timeout=(timeout, timeout))
    except (av.FFmpegError, OSError) as exc:
        waited = time.monotonic() - start
        reason = why_not(url, max(0.5, min(3.0, timeout - waited)))
        if isinstance(exc, av.ExitError) and reason.startswith(("the server answered", "the server at", "timed out: no")):
            # NB: the server is there: the probe waited for a video it can decode, a keyframe
            reason = (f"no video within {timeout:g} s (no packets, or no keyframe yet: a stream's first frame waits "
                      f"for its first keyframe; if they are further apart, raise the timeout)")
        raise OpenError(f"INPUT: cannot open {redact(url)}: {reason}", reason) from None
    try:
        if not container.streams.video:
            raise OpenError(f"INPUT: cannot open {redact(url)}: it holds no video", "it holds no video")
        video = container.streams.video[0]
        if video.codec_context is None:
            reason = f"no decoder for its video ({video.codec.name if video.codec else 'an unknown codec'})"
            raise OpenError(f"INPUT: cannot open {redact(url)}: {reason}", reason)
        if video.frames > 0 or (container.duration or 0) > 0:
            container.close()
            return None
        return NetworkStream(container)
    except BaseException:
        container.close()
        raise


def open_file_url(url: str, timeout: float) -> cv2.VideoCapture:
    """A video file over the network, opened by OpenCV (read in order, as a file)."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout * 1000)]
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if capture.isOpened():
        return capture
    capture.release()
    reason = why_not(url, min(3.0, timeout))
    raise OpenError(f"INPUT: cannot open {redact(url)}: {reason}", reason)


def open_camera(spec: str | int, timeout: float) -> cv2.VideoCapture:
    """An open capture of a camera (an index or a device path), else :class:`OpenError`."""
    if isinstance(spec, int) or spec.isdigit():
        device, capture = f"/dev/video{int(spec)}", cv2.VideoCapture(int(spec))
    else:
        device, capture = spec, cv2.VideoCapture(spec, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture = cv2.VideoCapture(spec)
    if capture.isOpened():
        return capture
    capture.release()
    reason = "not a camera OpenCV can open (busy, or not a capture device)"
    if sys.platform.startswith("linux"):
        if not os.path.exists(device):
            reason = f"no {device}"
        elif not os.access(device, os.R_OK | os.W_OK):
            reason = f"permission denied on {device} (is this user in the 'video' group?)"
        else:
            reason = f"{device} is busy, or not a capture device"
    name = f"camera {spec}" if isinstance(spec, int) or spec.isdigit() else f"the camera {spec}"
    raise OpenError(f"INPUT: cannot open {name}: {reason}", reason)
