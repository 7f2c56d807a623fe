"""A camera on the loopback, for examples, tests and benchmarks of live sources: generated
frames served as HTTP MJPEG (``multipart/x-mixed-replace``, what network cameras serve),
from threads of this process, or sent as H.264 in MPEG-TS over UDP through an ffmpeg
binary (imageio-ffmpeg's); for a bounded number of frames.

Frame numbers can be drawn into the frames (:func:`stamp_index`, read back with
:func:`read_index`), so that a client can tell from the pixels which frame of the camera
it holds, and how far behind the camera it is.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

_BOUNDARY = b"visolo_fast_frame"
_BLOCK = 8  # px: one bit of a stamped index, aligned on the JPEG's 8 x 8 blocks
_BITS = (2, 8)  # rows x columns of bits: 16 bits, frames >= 16 x 64


def stamp_index(frame: np.ndarray, index: int) -> np.ndarray:
    """``frame`` (uint8 [H, W, 3], H >= 16, W >= 64) with ``index`` (0 <= index < 65536)
    drawn in its top-left 16 x 64 pixels, black and white 8 x 8 blocks that survive JPEG."""
    rows, cols = _BITS
    if frame.shape[0] < rows * _BLOCK or frame.shape[1] < cols * _BLOCK or not 0 <= index < 2 ** (rows * cols):
        raise ValueError(f"stamp_index: need a frame of at least {rows * _BLOCK} x {cols * _BLOCK} and 0 <= index < "
                         f"{2 ** (rows * cols)}, got {frame.shape[0]} x {frame.shape[1]} and {index}")
    out = frame.copy()
    for bit in range(rows * cols):
        r, c = divmod(bit, cols)
        out[r * _BLOCK:(r + 1) * _BLOCK, c * _BLOCK:(c + 1) * _BLOCK] = 255 if index >> bit & 1 else 0
    return out


def read_index(frame: np.ndarray) -> int:
    """The index :func:`stamp_index` drew into ``frame`` (after lossy coding too)."""
    rows, cols = _BITS
    index = 0
    for bit in range(rows * cols):
        r, c = divmod(bit, cols)
        centre = frame[r * _BLOCK + 2:(r + 1) * _BLOCK - 2, c * _BLOCK + 2:(c + 1) * _BLOCK - 2]
        index |= int(centre.mean() > 127) << bit
    return index


class MjpegServer:
    """Serves generated frames as HTTP MJPEG on ``url``, as a network camera does.

    The frames are made on the server's own clock, ``fps`` a second, whether or not a client
    reads them; each client gets the newest frame whenever it can take one (a client slower
    than the clock misses frames, as with a camera). After ``count`` frames the server closes
    its connections and stops by itself; :meth:`close` stops it sooner. Any path other than
    ``path`` is answered ``404 Not Found``.

    ``times[i]`` is the time (``time.monotonic()``) frame i was made; ``made`` is the number
    of frames made so far; ``requests`` holds each client's request (its head, as sent).
    """

    def __init__(self, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], fps: float = 25.0,
                 count: int | None = None, host: str = "127.0.0.1", port: int = 0, path: str = "/stream.mjpg",
                 quality: int = 90):
        """
        Args:
            frames: uint8 RGB [H, W, 3] frames, served in turn (and again from the first, up to
                ``count``), or a function of the frame number that returns one.
            fps: frames made a second.
            count: frames made in all (default: ``len(frames)``; needed with a function).
            port: 0 for a free one; a port given is reused at once (a server restarted on it).
        """
        if count is None:
            if callable(frames):
                raise ValueError("MjpegServer: count is needed when frames is a function")
            count = len(frames)
        if count < 1 or fps <= 0:
            raise ValueError(f"MjpegServer: need count >= 1 and fps > 0, got count={count}, fps={fps}")
        self._frame = frames if callable(frames) else (lambda i: frames[i % len(frames)])
        self.fps, self.count, self.path, self.quality = float(fps), int(count), path, int(quality)
        self.times: list[float] = []
        self.requests: list[str] = []
        self._latest: tuple[int, bytes] | None = None
        self._done = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self.host, self.port = host, self._listener.getsockname()[1]
        self.url = f"http://{host}:{self.port}{path}"
        self._threads = [threading.Thread(target=self._make, name="mjpeg-clock", daemon=True),
                         threading.Thread(target=self._accept, name="mjpeg-accept", daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def made(self) -> int:
        return len(self.times)

    def _make(self) -> None:
        start = time.monotonic()
        for index in range(self.count):
            if self._stop.wait(max(0.0, start + index / self.fps - time.monotonic())):
                break
            rgb = self._frame(index)
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            with self._cond:
                self.times.append(time.monotonic())
                self._latest = (index, data.tobytes())
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def _accept(self) -> None:
        try:
            while not self._stop.is_set() and not self._done:
                try:
                    conn, _ = self._listener.accept()
                except (socket.timeout, BlockingIOError):
                    continue
                thread = threading.Thread(target=self._serve, args=(conn,), name="mjpeg-client", daemon=True)
                self._clients.append(conn)
                self._threads.append(thread)
                thread.start()
        except OSError:  # the listener was closed
            pass
        finally:
            self._listener.close()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(2.0)
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 8192:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                self.requests.append(request.split(b"\r\n\r\n")[0].decode("latin-1"))
                target = request.split(b" ", 2)[1].decode("latin-1") if request.count(b" ") >= 2 else ""
                if target.split("?")[0] != self.path:
                    conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\n"
                             b"Content-Type: multipart/x-mixed-replace; boundary=" + _BOUNDARY + b"\r\n\r\n")
                conn.settimeout(None)
                sent = -1
                while True:
                    with self._cond:
                        while not self._stop.is_set() and not self._done and (self._latest is None or self._latest[0] == sent):
                            self._cond.wait(0.1)
                        if self._stop.is_set() or self._latest is None or self._latest[0] == sent:
                            return
                        sent, data = self._latest
                    conn.sendall(b"--" + _BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
            except OSError:  # the client went away, or close() shut the connection
                return

    def close(self) -> None:
        """Stops making frames and closes every connection (at once: clients see the stream drop)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for conn in list(self._clients):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)

    def __enter__(self) -> "MjpegServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve_mjpeg(frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], fps: float = 25.0, count: int | None = None,
                port: int = 0) -> MjpegServer:
    """A started :class:`MjpegServer` on 127.0.0.1: ``frames`` at ``fps``, ``count`` frames
    in all (default ``len(frames)``), then it stops by itself. Use it as a context manager
    (``with serve_mjpeg(frames) as camera: ... camera.url``) to stop it on the way out."""
    return MjpegServer(frames, fps=fps, count=count, port=port)


class UdpCamera:
    """Generated frames sent as H.264 (x264, zerolatency, a key frame a second) in MPEG-TS
    over UDP to ``url`` (``udp://127.0.0.1:PORT``, a free port), as an encoder box does:
    the frames are piped into ffmpeg on the camera's clock, ``fps`` a second, ``count`` in
    all, then it stops by itself. ``times[i]``: when frame i was handed to ffmpeg.

    Needs an ffmpeg binary: imageio-ffmpeg's (``pip install imageio-ffmpeg``).
    """

    def __init__(self, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], fps: float = 25.0,
                 count: int | None = None):
        try:
            import imageio_ffmpeg
        except ImportError:
            raise ImportError("UdpCamera needs an ffmpeg binary: pip install imageio-ffmpeg") from None
        if count is None:
            if callable(frames):
                raise ValueError("UdpCamera: count is needed when frames is a function")
            count = len(frames)
        self._frame = frames if callable(frames) else (lambda i: frames[i % len(frames)])
        self.fps, self.count = float(fps), int(count)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"udp://127.0.0.1:{self.port}"
        self.times: list[float] = []
        self._stop = threading.Event()
        h, w = self._frame(0).shape[:2]
        self._process = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
             "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", "-c:v", "libx264",
             "-preset", "ultrafast", "-tune", "zerolatency", "-g", f"{max(1, round(self.fps))}", "-crf", "20",
             "-pix_fmt", "yuv420p", "-f", "mpegts", f"{self.url}?pkt_size=1316"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._feed, name="udp-camera", daemon=True)
        self._thread.start()

    @property
    def made(self) -> int:
        return len(self.times)

    def _feed(self) -> None:
        start = time.monotonic()
        try:
            for index in range(self.count):
                if self._stop.wait(max(0.0, start + index / self.fps - time.monotonic())):
                    break
                data = np.ascontiguousarray(self._frame(index), dtype=np.uint8).tobytes()
                self.times.append(time.monotonic())
                self._process.stdin.write(data)
                self._process.stdin.flush()
        except (OSError, ValueError):  # ffmpeg went away, or close() closed its input
            pass
        finally:
            try:
                self._process.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stops sending and ends ffmpeg."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self._process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5.0)

    def __enter__(self) -> "UdpCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
