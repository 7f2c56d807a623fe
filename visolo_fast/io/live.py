"""Frames from any source, each with its capture time and its index in the source: video
files, folders of frames and pipes, read in order, every frame; live sources (network
streams, cameras), read by a thread of their own that decodes continuously while the
model runs.

A live source hands out the newest frame by default: a frame the model could not take
before a newer one came is dropped, and counted. Every frame, in order, through a bounded
queue, on request (``every_frame=True``): the reader then waits when the queue is full.
Files, folders and pipes are never dropped.
"""

from __future__ import annotations

import collections
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import cv2
import numpy as np

from visolo_fast.io.captures import DEFAULT_TIMEOUT, Camera, Capture, OpenError, open_camera, open_file_url, open_stream
from visolo_fast.io.urls import URL, redact
from visolo_fast.io.video import FrameSource, InputError, one_line, quiet_opencv

_log = logging.getLogger("visolo_fast.io")


class Frame(NamedTuple):
    """A frame of a source."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    time: float  # capture time, time.monotonic(): when its data came from the source (network
    # streams: when FFmpeg returned the packet that completed it), or when a file's frame was read
    index: int  # its index in the source: frames read before it, dropped ones included


class Source:
    """Frames of one source, in order: iterate it (each item a :class:`Frame`), or
    :meth:`poll` it. Use it as a context manager, or :meth:`close` it.

    Attributes:
        spec: what was opened; kind: what it is, in words ("video file", "live stream", ...).
        live: a network stream or a camera (read by a thread of its own).
        every_frame: every frame is handed out, in order (always so unless live).
        size: (height, width) of the frames; fps: the source's frame rate (25 if unknown);
        count: its number of frames (None if unknown, live sources).
        notes: conversions made on the way, things worth telling.
    """

    spec: str
    kind: str
    live = False
    every_frame = True
    size: tuple[int, int]
    fps: float
    count: int | None
    notes: set[str]

    @property
    def read(self) -> int:
        """Frames read from the source so far."""
        raise NotImplementedError

    @property
    def taken(self) -> int:
        """Frames handed out so far (by :meth:`poll`, :meth:`next`, iteration)."""
        return self.read

    @property
    def dropped(self) -> int:
        """Frames read and never handed out: replaced by a newer one before they were taken
        (newest frame), or decoded after a stall (their age unknown: see :class:`LiveSource`)."""
        return 0

    @property
    def queued(self) -> int:
        """Frames read and not handed out yet: waiting in the queue, or left in it when the
        source was closed. At any time, ``read == taken + dropped + queued``."""
        return 0

    def counts(self) -> tuple[int, int, int, int]:
        """(read, taken, dropped, queued), taken together: ``read == taken + dropped +
        queued`` holds between them, whatever a reader thread does meanwhile."""
        return self.read, self.taken, self.dropped, self.queued

    @property
    def ended(self) -> bool:
        """No frame will come any more (the source ended, failed or was closed)."""
        raise NotImplementedError

    def poll(self) -> Frame | None:
        """The next frame if one is ready now (the newest, for a live source in newest-frame
        mode), else None at once; None and :attr:`ended` at the end.

        Raises:
            InputError: the source failed (once; it has ended then).
        """
        raise NotImplementedError

    def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting for it up to ``timeout`` seconds (None: as long as it
        takes); None at the end or if none came in time (then :attr:`ended` is False)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.next()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoredSource(Source):
    """A video file, a folder of frames or a pipe: read in order, in the caller's thread,
    when a frame is asked for; never dropped."""

    def __init__(self, frames: FrameSource, kind: str | None = None):
        self._source, self.spec = frames, frames.spec
        self.kind, self.size, self.fps, self.count = kind or frames.kind, tuple(frames.size), frames.fps, frames.count
        self.notes = frames.notes
        self._frames = iter(frames)
        self._read, self._ended = 0, False

    @property
    def read(self) -> int:
        return self._read

    @property
    def ended(self) -> bool:
        return self._ended

    def poll(self) -> Frame | None:
        if self._ended:
            return None
        try:
            image = next(self._frames)
        except StopIteration:
            self._ended = True
            return None
        except BaseException:
            self._ended = True
            raise
        self._read += 1
        return Frame(image, time.monotonic(), self._read - 1)

    def next(self, timeout: float | None = None) -> Frame | None:
        return self.poll()

    def close(self) -> None:
        self._ended = True
        self._source.close()


class LiveSource(Source):
    """A network stream or a camera, decoded continuously by a reader thread.

    Newest frame (the default): the reader keeps one frame, the newest; a frame replaced
    before it was taken is dropped and counted. Every frame: a queue of ``queue_size``
    frames; when it is full the reader waits (a network stream then backs up in its
    transport: TCP holds it, UDP loses it), and :attr:`waited` adds up how long.

    ``timeout`` applies to each phase by itself: opening the stream (FFmpeg's probe waits for
    its first keyframe), its first frame, and each frame after that. A stream that gives no
    frame for ``timeout`` seconds (stalled, frozen) or ends is reopened, up to ``reconnect``
    tries with backoff (0.5 s, 1 s, 2 s, ... 8 s), each said on one line to ``log``; a try
    counts as a success only when a frame came. Then the source fails with an
    :class:`InputError` that names the stream and the last reason.

    A frame of another size than the stream's first (a camera reconfigured, a sender
    restarted) is letterboxed into the first size: scaled to fit, its aspect kept, black bars
    around it; the change is said once to ``log`` and kept in :attr:`notes`. The outputs keep
    one size, and no frame is stretched.

    ``opener(notes)`` opens the source (again, after a loss): a
    :class:`~visolo_fast.io.captures.Capture`, which may add its conversions to ``notes``;
    it raises :class:`~visolo_fast.io.captures.OpenError` where it cannot. The tries are
    counted over reopens that give a frame and then nothing again, and start over once
    frames have come for ``timeout`` seconds after a reopen.
    """

    live = True

    def __init__(self, spec: str, kind: str, opener: Callable[[set[str]], Capture], every_frame: bool = False,
                 queue_size: int = 32, reconnect: int = 5, timeout: float = DEFAULT_TIMEOUT,
                 log: Callable[[str], None] | None = None, wake: threading.Event | None = None):
        self.spec, self.kind, self.every_frame, self.count, self.notes = spec, kind, every_frame, None, set()
        self._opener, self._reconnect, self._timeout = opener, reconnect, timeout
        self._log = log or _log.warning
        self._wake = wake
        self._queue: collections.deque[Frame] = collections.deque()
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._read, self._taken, self._dropped, self._left, self._next_index, self._waited = 0, 0, 0, 0, 0, 0.0
        self._stale = 0  # the current capture's stale frames already counted
        self._waiting_since: float | None = None
        self._error: InputError | None = None
        self._finished = self._ended = False
        self._resized: tuple[int, int] | None = None  # the last other size said
        self.size = None  # the first frame's
        capture = opener(self.notes)
        first = self._first(capture)
        if first is None:
            why = capture.why if capture.why.startswith("no frame") else f"{capture.why} before its first frame"
            raise InputError(f"INPUT: {redact(spec)}: opened, but {why} (a stream's first frame waits for its first "
                             f"keyframe: if they are more than {timeout:g} s apart, raise the timeout)")
        self.size = first.image.shape[:2]
        self.fps = capture.fps
        self._put(first)
        self._thread = threading.Thread(target=self._run, args=(capture,), name=f"visolo_fast reader {redact(spec)}",
                                        daemon=True)
        self._thread.start()

    # -- the reader thread --------------------------------------------------------------

    def _next(self, capture: Capture) -> Frame | None:
        """The capture's next frame (letterboxed to the stream's size), None if none came
        within the timeout or the stream ended; frames it dropped as stale are counted."""
        got = capture.next(self._timeout)
        if capture.stale > self._stale:
            with self._cond:
                stale, self._stale = capture.stale - self._stale, capture.stale
                self._read, self._dropped, self._next_index = self._read + stale, self._dropped + stale, \
                    self._next_index + stale
        if got is None:
            return None
        image, came = got
        if self.size is not None and image.shape[:2] != self.size:
            image = self._letterbox(image)
        frame = Frame(image, came, self._next_index)
        self._next_index += 1
        return frame

    def _first(self, capture: Capture) -> Frame | None:
        """The first frame of a capture just opened; None (the capture released, its
        :attr:`~visolo_fast.io.captures.Capture.why` kept) if none came within the timeout."""
        self._stale = 0
        try:
            frame = self._next(capture)
        except BaseException:
            capture.release()
            raise
        if frame is None:
            capture.release()
        return frame

    def _letterbox(self, image: np.ndarray) -> np.ndarray:
        """``image`` scaled to fit the stream's size, its aspect kept, centred on black."""
        (h, w), (H, W) = image.shape[:2], self.size
        if (h, w) != self._resized:
            self._resized = (h, w)
            line = (f"INPUT {redact(self.spec)}: frame {self._next_index} is {h} x {w}, the stream's frames were "
                    f"{H} x {W}: letterboxed into {H} x {W} (aspect kept, black bars)")
            self._log(line)
            self.notes.add(f"{redact(self.spec)}: frames of another size than the first were letterboxed into "
                           f"{H} x {W}")
        scale = min(H / h, W / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        out = np.zeros((H, W, 3), np.uint8)
        top, left = (H - nh) // 2, (W - nw) // 2
        out[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                                                       else cv2.INTER_LINEAR)
        return out

    def _put(self, frame: Frame) -> None:
        # NB: a frame is counted read with its fate, under the lock (read == taken + dropped +
        # queued at any time): a frame the reader holds while it waits for room, not yet
        with self._cond:
            if self.every_frame:
                while len(self._queue) >= self.queue_size and not self._stop.is_set():
                    self._waiting_since = self._waiting_since or time.monotonic()
                    self._cond.wait(0.1)
                if self._waiting_since is not None:
                    self._waited += time.monotonic() - self._waiting_since
                    self._waiting_since = None
            self._read += 1
            if self._stop.is_set():
                self._left += 1
                return
            if not self.every_frame and self._queue:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(frame)
            self._cond.notify_all()
        if self._wake is not None:
            self._wake.set()

    def _run(self, capture: Capture) -> None:
        # NB: the tries are counted over reopens that gave a frame and then nothing again (a
        # server that sends one frame a connection): they start over only once frames have
        # come for `timeout` seconds after a reopen
        tries, lost, since = 0, 0.0, 0.0
        try:
            while not self._stop.is_set():
                frame = self._next(capture)
                if frame is None:
                    capture.release()
                    why, capture = capture.why, None
                    lost = lost if tries else time.monotonic()
                    opened = self._reopen(why, tries, lost)
                    if opened is None:
                        return
                    capture, frame, tries = opened
                    since = time.monotonic()
                elif tries and time.monotonic() - since >= self._timeout:
                    tries = 0
                self._put(frame)
        except InputError as exc:
            self._error = exc
        except Exception as exc:  # noqa: BLE001 -- handed to the consumer, whatever it is
            self._error = InputError(f"INPUT: {redact(self.spec)}: the reader failed: {type(exc).__name__}: {one_line(exc)}")
        finally:
            if capture is not None:
                capture.release()
            with self._cond:
                self._finished = True
                self._cond.notify_all()
            if self._wake is not None:
                self._wake.set()

    def _reopen(self, why: str, tries: int, lost: float) -> tuple[Capture, Frame, int] | None:
        """The stream opened again, its first frame, and the tries used so far (``tries``
        before this loss, which happened at ``lost``); None if the source was closed meanwhile.
        A try succeeds when a frame comes: an open that gives none within the timeout fails."""
        last = why
        for attempt in range(tries + 1, self._reconnect + 1):
            delay = min(0.5 * 2 ** (attempt - 1), 8.0)
            if self._stop.is_set():
                return None
            self._log(f"INPUT {redact(self.spec)}: {last}; reconnecting in {delay:g} s (try {attempt} of {self._reconnect})")
            if self._stop.wait(delay):
                return None
            try:
                capture = self._opener(self.notes)
            except InputError as exc:
                last = exc.reason if isinstance(exc, OpenError) else str(exc)
                continue
            frame = self._first(capture)
            if frame is None:
                last = f"reopened, but no frame came within {self._timeout:g} s ({capture.why})"
                continue
            self._log(f"INPUT {redact(self.spec)}: reconnected (try {attempt}, {time.monotonic() - lost:.1f} s after "
                      f"the stream was lost)")
            return capture, frame, attempt
        tries = (f"after {self._reconnect} {'try' if self._reconnect == 1 else 'tries'} in {time.monotonic() - lost:.0f} s"
                 if self._reconnect else "(reconnection is off)")
        raise InputError(f"INPUT: {redact(self.spec)}: the stream was lost and did not come back {tries}: {last}")

    # -- the consumer -------------------------------------------------------------------

    @property
    def read(self) -> int:
        return self._read

    @property
    def taken(self) -> int:
        return self._taken

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue) + self._left

    def counts(self) -> tuple[int, int, int, int]:
        with self._cond:
            return self._read, self._taken, self._dropped, len(self._queue) + self._left

    @property
    def waited(self) -> float:
        """Seconds the reader has waited for room in the queue (every frame), so far."""
        since = self._waiting_since
        return self._waited + (time.monotonic() - since if since is not None else 0.0)

    @property
    def ended(self) -> bool:
        return self._ended

    def _take(self) -> Frame | None:
        """Under the lock: the next frame, None if none yet; raises the reader's error at the end."""
        if self._queue:
            frame = self._queue.popleft()
            self._taken += 1
            self._cond.notify_all()  # a reader waiting for room
            return frame
        if self._finished and not self._ended:
            self._ended = True
            if self._error is not None:
                raise self._error
        return None

    def poll(self) -> Frame | None:
        with self._cond:
            return self._take()

    def next(self, timeout: float | None = None) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                frame = self._take()
                if frame is not None or self._ended:
                    return frame
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                # NB: short waits: a Ctrl-C is seen at once
                self._cond.wait(0.1 if left is None else min(left, 0.1))

    def close(self) -> None:
        """Stops the reader; frames still waiting stay counted in :attr:`queued`. Returns at
        once if the reader is blocked in a read (it then closes its capture when the read
        returns)."""
        self._stop.set()
        with self._cond:
            self._left += len(self._queue)
            self._queue.clear()
            self._ended = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=0.5)


def is_live(spec: str | int) -> bool:
    """Whether ``spec`` names a live source: a URL (``scheme://``), a camera index that is not
    a path, or a character device (``/dev/video0``)."""
    if isinstance(spec, int):
        return True
    if URL.match(spec):
        return True
    if spec.isdigit() and not os.path.exists(spec):
        return True
    try:
        return stat.S_ISCHR(os.stat(spec).st_mode)
    except OSError:
        return False


def open_source(spec: str | int, every_frame: bool | None = None, queue_size: int = 32,
                timeout: float = DEFAULT_TIMEOUT, reconnect: int = 5, rtsp_transport: str = "tcp",
                log: Callable[[str], None] | None = None, wake: threading.Event | None = None) -> Source:
    """Opens a video source; iterate it for :class:`Frame` s ``(image, time, index)``.

    OpenCV's and FFmpeg's own log lines are silenced (:func:`~visolo_fast.io.video.quiet_opencv`;
    ``OPENCV_LOG_LEVEL`` and ``OPENCV_FFMPEG_LOGLEVEL`` set in the environment win): what goes
    wrong is said by the :class:`InputError` raised, or by ``log``.

    Args:
        spec: a video file, a folder of .jpg/.png frames, a pipe (FIFO) carrying a video; or a
            live source: a stream URL (rtsp, rtsps, http(s) MJPEG or HLS, udp, tcp, srt, rtmp:
            what FFmpeg opens, through PyAV), a camera index (``0``) or a device
            (``/dev/video0``, through OpenCV). A URL whose stream declares its length (a video
            file over HTTP) is read as a file.
        every_frame: live sources only: True hands out every frame, in order, through a queue of
            ``queue_size`` frames (the reader waits when it is full); False (the default) the
            newest frame, the others dropped and counted. Files, folders and pipes always give
            every frame.
        timeout: seconds each phase of a network stream may take: opening it (FFmpeg gives
            it to the connection and to the probe, which waits for the first keyframe, each),
            its first frame, and each frame after that (a stream silent that long is
            reopened). The default, 12 s, lets a stream with a keyframe every 10 s open. A
            camera waits for a frame as long as its driver does (V4L2: 10 s).
        reconnect: tries to reopen a live source that was lost (backoff 0.5 s, 1 s, 2 s ... 8 s);
            a try succeeds when a frame comes.
        rtsp_transport: ``"tcp"`` (default) or ``"udp"``, for rtsp:// URLs. FFmpeg options
            come from ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` if it is set, else
            :func:`~visolo_fast.io.captures.ffmpeg_options`: low delay without losing the first keyframe.
        log: called with one line for each reconnection try and for a change of frame size
            (default: the ``visolo_fast.io`` logger, at warning level).
        wake: an event the reader sets whenever a frame is ready or the source ends: wait on one
            event for several sources, then :meth:`Source.poll` each.

    Raises:
        InputError: the source cannot be opened: one line that names it and says why
            (connection refused, not found, timed out, ...), within about twice ``timeout``
            seconds (at once when the host refuses or is not found).
    """
    if rtsp_transport not in ("tcp", "udp"):
        raise ValueError(f"open_source: rtsp_transport must be 'tcp' or 'udp', got {rtsp_transport!r}")
    if queue_size < 1 or reconnect < 0 or timeout <= 0:
        raise ValueError(f"open_source: need queue_size >= 1, reconnect >= 0 and timeout > 0, got "
                         f"queue_size={queue_size}, reconnect={reconnect}, timeout={timeout}")
    if isinstance(spec, int):
        spec = str(spec)
    quiet_opencv()
    if not is_live(spec):
        if every_frame is False:
            raise ValueError(f"open_source: {spec} is not a live source: its frames are never dropped "
                             f"(every_frame=False is for network streams and cameras)")
        try:
            mode = os.stat(spec).st_mode
        except OSError:
            mode = 0
        if stat.S_ISFIFO(mode):
            capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
            if not capture.isOpened():
                capture.release()
                raise InputError(f"INPUT: OpenCV cannot read a video from the pipe {spec}")
            return StoredSource(FrameSource.from_capture(capture, spec, "pipe"))
        return StoredSource(FrameSource(spec))
    every = bool(every_frame)
    if URL.match(spec):
        stream = open_stream(spec, timeout, rtsp_transport)
        if stream is None:  # a stream of known length (a file over HTTP, an HLS playlist that ends): a file
            capture = open_file_url(spec, timeout)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            return StoredSource(FrameSource.from_capture(capture, redact(spec), "video file over the network",
                                                         count if count > 0 else None))
        first = [stream]

        def opener(_notes: set[str]) -> Capture:
            if first:
                return first.pop()
            again = open_stream(spec, timeout, rtsp_transport)
            if again is None:
                raise OpenError(f"INPUT: {redact(spec)}: it came back as a stream of known length (a file), no longer "
                                f"live", "it came back as a file, no longer live")
            return again

        return LiveSource(spec, "live stream", opener, every, queue_size, reconnect, timeout, log, wake)
    return LiveSource(spec, "camera", lambda notes: Camera(open_camera(spec, timeout), spec, notes), every,
                      queue_size, reconnect, timeout, log, wake)


class LatencyStats:
    """Latencies (seconds) in a histogram of fixed size: percentiles within 1% of the true
    value for latencies from 10 us to 1000 s, however long the run; extremes exact."""

    _LOW, _STEP, _BINS = 1e-5, 1.01, 1852  # 1e-5 * 1.01 ** 1852 > 1000 s

    def __init__(self):
        self._counts = np.zeros(self._BINS + 2, np.int64)
        self.count, self.total, self.min, self.max = 0, 0.0, float("inf"), 0.0

    def add(self, seconds: float) -> None:
        if seconds < self._LOW:
            b = 0
        else:
            b = min(self._BINS + 1, 1 + int(np.log(seconds / self._LOW) / np.log(self._STEP)))
        self._counts[b] += 1
        self.count += 1
        self.total += seconds
        self.min, self.max = min(self.min, seconds), max(self.max, seconds)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100), in seconds (NaN without any latency)."""
        if not self.count:
            return float("nan")
        rank = max(1, int(np.ceil(q / 100 * self.count)))
        b = int(np.searchsorted(np.cumsum(self._counts), rank))
        if b == 0:
            value = self._LOW
        else:  # the bin's geometric middle
            value = self._LOW * self._STEP ** (b - 0.5)
        return float(min(max(value, self.min), self.max))

    @classmethod
    def merged(cls, stats: list["LatencyStats"]) -> "LatencyStats":
        """The latencies of several, as one."""
        out = cls()
        for s in stats:
            out._counts += s._counts
            out.count, out.total = out.count + s.count, out.total + s.total
            out.min, out.max = min(out.min, s.min), max(out.max, s.max)
        return out

    def summary(self) -> str:
        """``p50 41 ms, p95 55 ms, p99 70 ms``."""
        return ", ".join(f"p{q} {self.percentile(q) * 1000:.0f} ms" for q in (50, 95, 99))
