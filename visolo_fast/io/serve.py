"""A camera on the loopback, for examples, tests and benchmarks of live sources: generated
frames served as HTTP MJPEG (``multipart/x-mixed-replace``, what network cameras serve),
from threads of this process; or H.264 encoded by an ffmpeg binary (imageio-ffmpeg's), sent
in MPEG-TS over UDP or served over RTSP (RTP over the RTSP connection or over UDP) by a small
RTSP server of this module; for a bounded number of frames.

Frame numbers can be drawn into the frames (:func:`stamp_index`, read back with
:func:`read_index`), so that a client can tell from the pixels which frame of the camera
it holds, and how far behind the camera it is.
"""

from __future__ import annotations

import os
import signal
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

    What goes wrong with real cameras, on request: :meth:`pause` freezes the stream (the
    connections stay open, nothing is sent) until :meth:`resume`; ``per_client`` frames at
    most are sent to each client, which then gets nothing more on a connection kept open.
    """

    def __init__(self, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], fps: float = 25.0,
                 count: int | None = None, host: str = "127.0.0.1", port: int = 0, path: str = "/stream.mjpg",
                 quality: int = 90, per_client: int | None = None):
        """
        Args:
            frames: uint8 RGB [H, W, 3] frames, served in turn (and again from the first, up to
                ``count``), or a function of the frame number that returns one.
            fps: frames made a second.
            count: frames made in all (default: ``len(frames)``; needed with a function).
            port: 0 for a free one; a port given is reused at once (a server restarted on it).
            per_client: frames sent to a client at most (None: all), then its connection is
                held open and silent.
        """
        if count is None:
            if callable(frames):
                raise ValueError("MjpegServer: count is needed when frames is a function")
            count = len(frames)
        if count < 1 or fps <= 0:
            raise ValueError(f"MjpegServer: need count >= 1 and fps > 0, got count={count}, fps={fps}")
        self._frame = frames if callable(frames) else (lambda i: frames[i % len(frames)])
        self.fps, self.count, self.path, self.quality = float(fps), int(count), path, int(quality)
        self.per_client = per_client
        self._running = threading.Event()
        self._running.set()
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
                sent, frames = -1, 0
                while True:
                    if self.per_client is not None and frames >= self.per_client:
                        self._stop.wait()  # held open, silent
                        return
                    while not self._running.wait(0.1):  # paused: held open, silent
                        if self._stop.is_set():
                            return
                    with self._cond:
                        while not self._stop.is_set() and not self._done and (self._latest is None or self._latest[0] == sent):
                            self._cond.wait(0.1)
                        if self._stop.is_set() or self._latest is None or self._latest[0] == sent:
                            return
                        sent, data = self._latest
                    conn.sendall(b"--" + _BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                    frames += 1
            except OSError:  # the client went away, or close() shut the connection
                return

    def pause(self) -> None:
        """Freezes the stream: no client is sent anything (their connections stay open)."""
        self._running.clear()

    def resume(self) -> None:
        """Ends :meth:`pause`: each client is sent the newest frame again."""
        self._running.set()

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
    """Generated frames sent as H.264 (x264, zerolatency, a keyframe every ``keyframes``
    seconds) in MPEG-TS over UDP to ``url`` (``udp://127.0.0.1:PORT``, a free port unless
    ``port`` is given), as an encoder box does: the frames are piped into ffmpeg on the
    camera's clock, ``fps`` a second, ``count`` in all, then it stops by itself. ``times[i]``:
    when frame i was handed to ffmpeg. :meth:`pause` freezes the encoder (SIGSTOP), as a
    server that hangs, until :meth:`resume`.

    Needs an ffmpeg binary: ``ffmpeg`` (a path), else imageio-ffmpeg's (``pip install
    imageio-ffmpeg``).
    """

    def __init__(self, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], fps: float = 25.0,
                 count: int | None = None, keyframes: float = 1.0, port: int | None = None, ffmpeg: str | None = None):
        if port is None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.url = f"udp://127.0.0.1:{self.port}"
        self._start(frames, fps, count, ["-f", "mpegts", f"{self.url}?pkt_size=1316"], keyframes, ffmpeg)

    def _start(self, frames, fps: float, count: int | None, output: list[str], keyframes: float,
               ffmpeg: str | None) -> None:
        """Starts ffmpeg, encoding to ``output``, and the thread that feeds it the frames."""
        if ffmpeg is None:
            try:
                import imageio_ffmpeg
            except ImportError:
                raise ImportError(f"{type(self).__name__} needs an ffmpeg binary: pip install imageio-ffmpeg") from None
            ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        if count is None:
            if callable(frames):
                raise ValueError(f"{type(self).__name__}: count is needed when frames is a function")
            count = len(frames)
        self._frame = frames if callable(frames) else (lambda i: frames[i % len(frames)])
        self.fps, self.count = float(fps), int(count)
        self.times: list[float] = []
        self._stop = threading.Event()
        h, w = self._frame(0).shape[:2]
        self._process = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
             "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", "-c:v", "libx264",
             "-preset", "ultrafast", "-tune", "zerolatency", "-g", f"{max(1, round(self.fps * keyframes))}", "-crf", "20",
             "-pix_fmt", "yuv420p", *output],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._feed, name="ffmpeg-camera", daemon=True)
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

    def pause(self) -> None:
        """Freezes the encoder (SIGSTOP): nothing is sent, as from a server that hangs."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Ends :meth:`pause` (SIGCONT)."""
        self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stops sending and ends ffmpeg."""
        self._stop.set()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # paused: its input would never drain
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


class RtspCamera(UdpCamera):
    """Generated frames served over RTSP on ``url`` (``rtsp://127.0.0.1:PORT/live``), as an IP
    camera serves them: ffmpeg encodes H.264 (x264, zerolatency) into RTP packets, which a small
    RTSP server here hands to each client that PLAYs, interleaved in its RTSP connection
    (``RTP/AVP/TCP``) or to its UDP ports (``RTP/AVP``), whichever its SETUP asks for. Any other
    path is answered ``404 Not Found``. ``count`` frames at ``fps``, then it stops by itself.

    Needs an ffmpeg binary: imageio-ffmpeg's (``pip install imageio-ffmpeg``).
    """

    def __init__(self, frames: Sequence[np.ndarray] | Callable[[int], np.ndarray], fps: float = 25.0,
                 count: int | None = None, path: str = "/live", keyframes: float = 1.0, ffmpeg: str | None = None):
        import tempfile

        self._rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._rtp.bind(("127.0.0.1", 0))
        self._rtp.settimeout(0.1)
        self._rtcp = None
        rtp_port = self._rtp.getsockname()[1]
        try:  # ffmpeg sends RTCP to the next port: take it, so that its reports land somewhere
            self._rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._rtcp.bind(("127.0.0.1", rtp_port + 1))
        except OSError:
            self._rtcp.close()
            self._rtcp = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self.port, self.path = self._listener.getsockname()[1], path
        self.url = f"rtsp://127.0.0.1:{self.port}{path}"
        self.requests: list[str] = []
        self._players: dict[int, Callable[[bytes], None]] = {}
        self._lock = threading.Lock()
        self._sdp_dir = tempfile.mkdtemp(prefix="visolo_fast_rtsp_")
        self._sdp_path = os.path.join(self._sdp_dir, "stream.sdp")
        self._start(frames, fps, count, ["-f", "rtp", "-sdp_file", self._sdp_path,
                                         f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200"], keyframes, ffmpeg)
        self._servers = [threading.Thread(target=self._relay, name="rtsp-relay", daemon=True),
                         threading.Thread(target=self._accept, name="rtsp-accept", daemon=True)]
        for thread in self._servers:
            thread.start()

    def _sdp(self) -> str:
        """ffmpeg's SDP of the stream (written when it starts), as an RTSP server describes it."""
        deadline = time.monotonic() + 10
        while not (os.path.exists(self._sdp_path) and os.path.getsize(self._sdp_path)) and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(self._sdp_path) as f:
            lines = [line.strip() for line in f if line.strip()]
        out = []
        for line in lines:
            if line.startswith("m=video"):
                out.append("m=video 0 RTP/AVP " + line.split()[-1])
                out.append("a=control:trackID=0")
            elif not line.startswith(("c=", "SDP:")):
                out.append(line)
        return "\r\n".join(out[:1] + ["c=IN IP4 0.0.0.0"] + out[1:]) + "\r\n"

    def _relay(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._rtp.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                players = list(self._players.items())
            for key, send in players:
                try:
                    send(packet)
                except OSError:
                    with self._lock:
                        self._players.pop(key, None)

    def _accept(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    conn, address = self._listener.accept()
                except (socket.timeout, BlockingIOError):
                    continue
                threading.Thread(target=self._serve, args=(conn, address), name="rtsp-client", daemon=True).start()
        except OSError:
            pass
        finally:
            self._listener.close()

    def _serve(self, conn: socket.socket, address) -> None:
        key, buffer, session = id(conn), b"", f"{id(conn) & 0xFFFFFFF:08d}"
        send_lock = threading.Lock()
        udp, pending = None, None
        conn.settimeout(0.2)
        try:
            while not self._stop.is_set():
                while buffer[:1] == b"$" and len(buffer) >= 4:  # the client's RTCP, interleaved: skipped
                    size = 4 + int.from_bytes(buffer[2:4], "big")
                    if len(buffer) < size:
                        break
                    buffer = buffer[size:]
                if b"\r\n\r\n" not in buffer or buffer[:1] == b"$":
                    try:
                        chunk = conn.recv(65536)
                    except socket.timeout:
                        continue
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                text = head.decode("latin-1")
                self.requests.append(text)
                lines = text.split("\r\n")
                method, target = (lines[0].split(" ") + ["", ""])[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length", "0") or 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                reply = [f"CSeq: {headers.get('cseq', '0')}"]
                body = b""
                status = "200 OK"
                path = "/" + target.split("://", 1)[-1].split("/", 1)[-1] if "://" in target else target
                if method not in ("OPTIONS", "TEARDOWN", "GET_PARAMETER") and not path.split("?")[0].startswith(self.path):
                    status = "404 Not Found"
                elif method == "OPTIONS":
                    reply.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER")
                elif method == "DESCRIBE":
                    body = self._sdp().encode()
                    reply += [f"Content-Base: {self.url}/", "Content-Type: application/sdp"]
                elif method == "SETUP":
                    transport = headers.get("transport", "")
                    if "RTP/AVP/TCP" in transport:
                        channel = int(transport.split("interleaved=")[1].split("-")[0]) if "interleaved=" in transport else 0

                        def send(packet: bytes, channel=channel) -> None:
                            with send_lock:
                                conn.sendall(b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet)

                        reply.append(f"Transport: RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}")
                    else:
                        ports = transport.split("client_port=")[1].split(";")[0].split("-")
                        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        udp.bind(("127.0.0.1", 0))
                        target_address = (address[0], int(ports[0]))

                        def send(packet: bytes, udp=udp, target_address=target_address) -> None:
                            udp.sendto(packet, target_address)

                        server = udp.getsockname()[1]
                        reply.append(f"Transport: RTP/AVP;unicast;client_port={ports[0]}-{ports[-1]};"
                                     f"server_port={server}-{server + 1}")
                    reply.append(f"Session: {session};timeout=60")
                    pending = send
                elif method == "PLAY":
                    reply += [f"Session: {session}", "Range: npt=0.000-"]
                    with self._lock:
                        if pending is not None:
                            self._players[key] = pending
                elif method == "TEARDOWN":
                    reply.append(f"Session: {session}")
                    with self._lock:
                        self._players.pop(key, None)
                elif method != "GET_PARAMETER":
                    status = "405 Method Not Allowed"
                message = f"RTSP/1.0 {status}\r\n" + "\r\n".join(reply)
                message += f"\r\nContent-Length: {len(body)}\r\n\r\n" if body else "\r\n\r\n"
                with send_lock:
                    conn.sendall(message.encode() + body)
        except OSError:
            return
        finally:
            with self._lock:
                self._players.pop(key, None)
            if udp is not None:
                udp.close()
            conn.close()

    def close(self) -> None:
        """Stops the camera and the server, and closes every connection."""
        super().close()
        for thread in self._servers:
            thread.join(timeout=2.0)
        for sock in (self._rtp, self._rtcp):
            if sock is not None:
                sock.close()
        import shutil

        shutil.rmtree(self._sdp_dir, ignore_errors=True)
