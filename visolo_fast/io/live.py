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
import re
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import cv2
import numpy as np

from visolo_fast.io.video import FrameSource, InputError, _reason, _to_rgb

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# FFmpeg's options for a live stream: no buffering of the packets read while the stream is
# probed, no reordering delay in the decoder (the user's OPENCV_FFMPEG_CAPTURE_OPTIONS wins)
LOW_DELAY = "fflags;nobuffer|flags;low_delay"
_DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}
_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()  # NB: OpenCV reads the options from the environment when a capture opens
_log = logging.getLogger("visolo_fast.io")


class Frame(NamedTuple):
    """A frame of a source."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    time: float  # capture time, time.monotonic(): when the frame was read from its source
    index: int  # its index in the source: frames read before it, dropped ones included


def capture_options(url: str, rtsp_transport: str = "tcp") -> str:
    """The FFmpeg options a stream at ``url`` is opened with, unless the environment sets
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (``key;value|key;value``, which then wins)."""
    if url.lower().startswith(("rtsp://", "rtsps://")):
        return f"rtsp_transport;{rtsp_transport}|{LOW_DELAY}"
    return LOW_DELAY


class _Url(NamedTuple):
    """A URL cut as ``scheme://userinfo@host/rest``."""

    scheme: str  # lower case
    userinfo: str | None  # None: no ``@``
    host: str  # with its port, as written (an IPv6 address in its brackets)
    rest: str  # the path, query and fragment, from the first /, ? or # after the host


def _split_url(url: str) -> _Url | None:
    """``url`` cut into its parts, None if it is not ``scheme://...``; cut on the string, not
    by :func:`urllib.parse.urlsplit`, so that a password holding an unencoded ``/``, ``?``,
    ``#`` or ``@`` stays in the userinfo.

    The userinfo ends at the URL's last ``@``, unless a ``/`` comes before any ``:``
    (``http://host/snap@2x.jpg``: a host, then a path; not ``user:password``): then at the
    last ``@`` before that ``/``, if any. When in doubt it takes too much, never too little:
    in ``rtsp://user:pw@host/a@b`` the userinfo is ``user:pw@host/a``.
    """
    match = _URL.match(url)
    if match is None:
        return None
    after = url[match.end():]
    slash, colon = after.find("/"), after.find(":")
    end = slash if slash >= 0 and not 0 <= colon < slash else len(after)
    at = after.rfind("@", 0, end)
    userinfo, place = (after[:at], after[at + 1:]) if at >= 0 else (None, after)
    host = re.match(r"[^/?#]*", place).group()
    return _Url(url[:match.end() - 3].lower(), userinfo, host, place[len(host):])


def redact(url: str) -> str:
    """``url`` without its password, for messages, logs and thread names:
    ``rtsp://user:***@host/...``; a userinfo without ``:`` (a token, or a user name alone) is
    hidden whole (``rtsp://***@host/...``). Whatever the password holds (``/``, ``#``, ``?``,
    ``@``, ``%``), none of it is kept; the host is kept as written (``[::1]:8554``). Not a URL,
    or no ``@``: ``url`` as it is."""
    parts = _split_url(url)
    if parts is None or parts.userinfo is None:
        return url
    user, colon, _ = parts.userinfo.partition(":")
    return f"{url[:url.index('://') + 3]}{user + ':***' if colon else '***'}@{parts.host}{parts.rest}"


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
    def dropped(self) -> int:
        """Frames read and never handed out: replaced by a newer one before they were taken
        (newest frame), or still waiting when the source was closed. After :meth:`close`,
        ``read == taken + dropped``."""
        return 0

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

    A stream that drops is reopened, up to ``reconnect`` tries with backoff (0.5 s, 1 s,
    2 s, ... 8 s), each said on one line to ``log``; then the source fails with an
    :class:`InputError` that names the stream and the last reason.
    """

    live = True

    def __init__(self, spec: str, kind: str, opener: Callable[[], cv2.VideoCapture], every_frame: bool = False,
                 queue_size: int = 32, reconnect: int = 5, timeout: float = 5.0,
                 log: Callable[[str], None] | None = None, wake: threading.Event | None = None):
        if queue_size < 1 or reconnect < 0 or timeout <= 0:
            raise ValueError(f"open_source: need queue_size >= 1, reconnect >= 0 and timeout > 0, got "
                             f"queue_size={queue_size}, reconnect={reconnect}, timeout={timeout}")
        self.spec, self.kind, self.every_frame, self.count, self.notes = spec, kind, every_frame, None, set()
        self._opener, self._reconnect, self._timeout = opener, reconnect, timeout
        self._log = log or _log.warning
        self._wake = wake
        self._queue: collections.deque[Frame] = collections.deque()
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._read, self._dropped, self._next_index, self._waited = 0, 0, 0, 0.0
        self._waiting_since: float | None = None
        self._error: InputError | None = None
        self._finished = self._ended = False
        capture = opener()
        try:
            first = self._grab(capture, time.monotonic() + timeout)
        except BaseException:
            capture.release()
            raise
        if first is None:
            capture.release()
            raise InputError(f"INPUT: {redact(spec)}: opened, but no frame came within {timeout:g} s")
        self.size = first.image.shape[:2]
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 25.0
        self._put(first)
        self._thread = threading.Thread(target=self._run, args=(capture,), name=f"visolo_fast reader {redact(spec)}",
                                        daemon=True)
        self._thread.start()

    # -- the reader thread --------------------------------------------------------------

    def _grab(self, capture: cv2.VideoCapture, deadline: float) -> Frame | None:
        """The next frame of ``capture``, None if it failed or none came by ``deadline``."""
        while True:
            if not capture.grab():
                return None
            captured = time.monotonic()
            ok, image = capture.retrieve()
            if ok and image is not None:
                frame = Frame(_to_rgb(image, redact(self.spec), self.notes), captured, self._next_index)
                self._next_index += 1
                return frame
            if time.monotonic() > deadline:
                return None

    def _put(self, frame: Frame) -> None:
        with self._cond:
            self._read += 1  # NB: counted with its fate, under the lock: read == taken + dropped (+ waiting)
            if self._stop.is_set():
                self._dropped += 1
                return
            if self.every_frame:
                while len(self._queue) >= self.queue_size and not self._stop.is_set():
                    self._waiting_since = self._waiting_since or time.monotonic()
                    self._cond.wait(0.1)
                if self._waiting_since is not None:
                    self._waited += time.monotonic() - self._waiting_since
                    self._waiting_since = None
                if self._stop.is_set():
                    self._dropped += 1
                    return
            elif self._queue:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(frame)
            self._cond.notify_all()
        if self._wake is not None:
            self._wake.set()

    def _run(self, capture: cv2.VideoCapture) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                frame = self._grab(capture, started + self._timeout)
                if frame is None:
                    capture.release()
                    waited = time.monotonic() - started
                    why = (f"no frame for {waited:.0f} s" if waited >= self._timeout * 0.9
                           else "the stream ended or its connection closed")
                    capture = None
                    capture = self._reopen(why)
                    if capture is None:
                        return
                    continue
                if frame.image.shape[:2] != self.size:
                    raise InputError(f"INPUT: {redact(self.spec)}: frame {frame.index} is {frame.image.shape[0]} x "
                                     f"{frame.image.shape[1]}, the stream's frames were {self.size[0]} x {self.size[1]}")
                self._put(frame)
        except InputError as exc:
            self._error = exc
        except Exception as exc:  # noqa: BLE001 -- handed to the consumer, whatever it is
            self._error = InputError(f"INPUT: {redact(self.spec)}: the reader failed: {type(exc).__name__}: {_reason(exc)}")
        finally:
            if capture is not None:
                capture.release()
            with self._cond:
                self._finished = True
                self._cond.notify_all()
            if self._wake is not None:
                self._wake.set()

    def _reopen(self, why: str) -> cv2.VideoCapture | None:
        """A new capture of the stream after it dropped; None if the source was closed meanwhile."""
        start, last = time.monotonic(), why
        for attempt in range(1, self._reconnect + 1):
            delay = min(0.5 * 2 ** (attempt - 1), 8.0)
            if self._stop.is_set():
                return None
            self._log(f"INPUT {redact(self.spec)}: {last}; reconnecting in {delay:g} s (try {attempt} of {self._reconnect})")
            if self._stop.wait(delay):
                return None
            try:
                capture = self._opener()
            except InputError as exc:
                last = exc.reason if isinstance(exc, OpenError) else str(exc)
                continue
            self._log(f"INPUT {redact(self.spec)}: reconnected (try {attempt}, {time.monotonic() - start:.1f} s after "
                      f"the stream dropped)")
            return capture
        tries = (f"after {self._reconnect} {'try' if self._reconnect == 1 else 'tries'} in {time.monotonic() - start:.0f} s"
                 if self._reconnect else "(reconnection is off)")
        raise InputError(f"INPUT: {redact(self.spec)}: the stream dropped and did not come back {tries}: {last}")

    # -- the consumer -------------------------------------------------------------------

    @property
    def read(self) -> int:
        return self._read

    @property
    def dropped(self) -> int:
        return self._dropped

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
        """Stops the reader; frames still waiting count as dropped. Returns at once if the
        reader is blocked in a read (it then closes its capture when the read returns)."""
        self._stop.set()
        with self._cond:
            self._dropped += len(self._queue)
            self._queue.clear()
            self._ended = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=0.5)


class OpenError(InputError):
    """A source that cannot be opened: ``reason`` says why, in a few words."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _open_url(url: str, timeout: float, rtsp_transport: str, low_delay: bool = True) -> cv2.VideoCapture:
    """An open FFmpeg capture of ``url``, with our low-delay options unless the user set
    theirs (or ``low_delay`` is False: FFmpeg's defaults), and ``timeout`` on opening and on
    each read; else :class:`OpenError`."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout * 1000)]
    start = time.monotonic()
    with _env_lock:
        ours = low_delay and _ENV not in os.environ
        if ours:
            os.environ[_ENV] = capture_options(url, rtsp_transport)
        try:
            capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if ours:
                del os.environ[_ENV]
    if capture.isOpened():
        return capture
    capture.release()
    left = max(0.5, min(3.0, timeout - (time.monotonic() - start)))
    reason = _why_not(url, left)
    raise OpenError(f"INPUT: cannot open {redact(url)}: {reason}", reason)


def _why_not(url: str, timeout: float) -> str:
    """Why FFmpeg could not open ``url``, in a few words: found by connecting to it (and, for
    HTTP and RTSP, asking for it) once."""
    parts = _split_url(url)
    scheme = parts.scheme
    if scheme in ("udp", "rtp"):
        return "timed out: no packets came (is the sender running and sending to this port?)"
    # NB: the host as _split_url cut it: with urlsplit, a password holding a / became a host and port
    place = re.fullmatch(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::(?P<port>\d{0,5}))?", parts.host)
    if place is None or (place["port"] and not 0 < int(place["port"]) < 65536):
        return f"not a valid URL ({parts.host!r} is not a host or host:port)"
    host = place["v6"] if place["v6"] is not None else place["name"]
    port = int(place["port"]) if place["port"] else _DEFAULT_PORTS.get(scheme)
    if not host or not port or scheme == "srt":
        return "FFmpeg cannot open it (no such stream, or a protocol or format it does not read)"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return f"host not found ({host})"
    except ConnectionRefusedError:
        return f"connection refused ({host}:{port}: no server there)"
    except (socket.timeout, TimeoutError):
        return f"timed out (no answer from {host}:{port})"
    except OSError as exc:
        return f"{exc.strerror or exc} ({host}:{port})"
    try:
        with sock:
            sock.settimeout(timeout)
            if scheme in ("https", "rtsps"):
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            if scheme in ("http", "https"):
                target = parts.rest.partition("#")[0]
                target = target if target.startswith("/") else "/" + target
                sock.sendall(f"GET {target} HTTP/1.0\r\nHost: {parts.host}\r\nUser-Agent: visolo_fast\r\n\r\n".encode())
            elif scheme in ("rtsp", "rtsps"):
                sock.sendall(f"DESCRIBE {redact(url)} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
                             f"User-Agent: visolo_fast\r\n\r\n".encode())
            else:
                return f"the server at {host}:{port} accepted the connection, but FFmpeg found no video it can read"
            status = sock.recv(1024).split(b"\r\n", 1)[0].decode("latin-1").strip()
    except ssl.SSLError as exc:
        return f"TLS failed: {exc.reason or exc}"
    except (socket.timeout, TimeoutError):
        return f"timed out (connected to {host}:{port}, no answer)"
    except OSError as exc:
        return f"{exc.strerror or exc} ({host}:{port})"
    code = status.split(" ", 2)
    if len(code) >= 2 and code[1].isdigit():
        number, protocol = int(code[1]), code[0].split("/")[0]
        text = f"{protocol} {' '.join(code[1:])}"
        if number == 404:
            return f"not found ({text})"
        if number in (401, 403):
            credentials = "wrong user or password?" if parts.userinfo else "the server wants user:password@ in the URL"
            return f"{text} ({credentials})"
        if number >= 400:
            return text
        return f"the server answered ({text}), but FFmpeg found no video it can read"
    return f"the server at {host}:{port} answered, but not as {scheme.upper()}"


def _open_camera(spec: str | int, timeout: float) -> cv2.VideoCapture:
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


def is_live(spec: str | int) -> bool:
    """Whether ``spec`` names a live source: a URL (``scheme://``), a camera index that is not
    a path, or a character device (``/dev/video0``)."""
    if isinstance(spec, int):
        return True
    if _URL.match(spec):
        return True
    if spec.isdigit() and not os.path.exists(spec):
        return True
    try:
        return stat.S_ISCHR(os.stat(spec).st_mode)
    except OSError:
        return False


def open_source(spec: str | int, every_frame: bool | None = None, queue_size: int = 32, timeout: float = 5.0,
                reconnect: int = 5, rtsp_transport: str = "tcp", log: Callable[[str], None] | None = None,
                wake: threading.Event | None = None) -> Source:
    """Opens a video source; iterate it for :class:`Frame` s ``(image, time, index)``.

    Args:
        spec: a video file, a folder of .jpg/.png frames, a pipe (FIFO) carrying a video; or a
            live source: a stream URL (rtsp, rtsps, http(s) MJPEG or HLS, udp, tcp, srt, rtmp:
            what the FFmpeg of OpenCV opens), a camera index (``0``) or a device (``/dev/video0``).
            A URL whose stream declares its length (a video file over HTTP) is read as a file.
        every_frame: live sources only: True hands out every frame, in order, through a queue of
            ``queue_size`` frames (the reader waits when it is full); False (the default) the
            newest frame, the others dropped and counted. Files, folders and pipes always give
            every frame.
        timeout: seconds a live source may take to open, and to deliver a frame before it
            counts as lost and is reopened (network streams).
        reconnect: tries to reopen a live source that was lost (backoff 0.5 s, 1 s, 2 s ... 8 s).
        rtsp_transport: ``"tcp"`` (default) or ``"udp"``, for rtsp:// URLs. FFmpeg options
            come from ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` if it is set, else
            :func:`capture_options`: low delay (no buffering, no decoder delay).
        log: called with one line for each reconnection try (default: the ``visolo_fast.io``
            logger, at warning level).
        wake: an event the reader sets whenever a frame is ready or the source ends: wait on one
            event for several sources, then :meth:`Source.poll` each.

    Raises:
        InputError: the source cannot be opened: one line that names it and says why
            (connection refused, not found, timed out, ...), within about ``timeout`` seconds.
    """
    if rtsp_transport not in ("tcp", "udp"):
        raise ValueError(f"open_source: rtsp_transport must be 'tcp' or 'udp', got {rtsp_transport!r}")
    if isinstance(spec, int):
        spec = str(spec)
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
    if _URL.match(spec):
        def opener() -> cv2.VideoCapture:
            return _open_url(spec, timeout, rtsp_transport)

        capture = opener()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:  # a stream of known length (a file over HTTP, an HLS playlist that ends): a file
            # NB: opened again without fflags nobuffer, which drops the frames read while probing: a file's first
            capture.release()
            capture = _open_url(spec, timeout, rtsp_transport, low_delay=False)
            return StoredSource(FrameSource.from_capture(capture, redact(spec), "video file over the network", count))
        first = [capture]

        def reopen() -> cv2.VideoCapture:
            return first.pop() if first else opener()

        return LiveSource(spec, "live stream", reopen, every, queue_size, reconnect, timeout, log, wake)
    return LiveSource(spec, "camera", lambda: _open_camera(spec, timeout), every, queue_size, reconnect, timeout,
                      log, wake)


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
