"""Stream URLs: told apart from paths, cut into their parts on the string (a password may hold
any character), shown without their password, and, when FFmpeg cannot open one, why not,
in a few words (found by connecting to it once)."""

from __future__ import annotations

import re
import socket
import ssl
from typing import NamedTuple

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}


class Url(NamedTuple):
    """A URL cut as ``scheme://userinfo@host/rest``."""

    scheme: str  # lower case
    userinfo: str | None  # None: no ``@``
    host: str  # with its port, as written (an IPv6 address in its brackets)
    rest: str  # the path, query and fragment, from the first /, ? or # after the host


def split_url(url: str) -> Url | None:
    """``url`` cut into its parts, None if it is not ``scheme://...``; cut on the string, not
    by :func:`urllib.parse.urlsplit`, so that a password holding an unencoded ``/``, ``?``,
    ``#`` or ``@`` stays in the userinfo.

    The userinfo ends at the URL's last ``@``, unless a ``/`` comes before any ``:``
    (``http://host/snap@2x.jpg``: a host, then a path; not ``user:password``): then at the
    last ``@`` before that ``/``, if any. When in doubt it takes too much, never too little:
    in ``rtsp://user:pw@host/a@b`` the userinfo is ``user:pw@host/a``.
    """
    match = URL.match(url)
    if match is None:
        return None
    after = url[match.end():]
    slash, colon = after.find("/"), after.find(":")
    end = slash if slash >= 0 and not 0 <= colon < slash else len(after)
    at = after.rfind("@", 0, end)
    userinfo, place = (after[:at], after[at + 1:]) if at >= 0 else (None, after)
    host = re.match(r"[^/?#]*", place).group()
    return Url(url[:match.end() - 3].lower(), userinfo, host, place[len(host):])


def redact(url: str) -> str:
    """``url`` without its password, for messages, logs and thread names:
    ``rtsp://user:***@host/...``; a userinfo without ``:`` (a token, or a user name alone) is
    hidden whole (``rtsp://***@host/...``). Whatever the password holds (``/``, ``#``, ``?``,
    ``@``, ``%``), none of it is kept; the host is kept as written (``[::1]:8554``). Not a URL,
    or no ``@``: ``url`` as it is."""
    parts = split_url(url)
    if parts is None or parts.userinfo is None:
        return url
    user, colon, _ = parts.userinfo.partition(":")
    return f"{url[:url.index('://') + 3]}{user + ':***' if colon else '***'}@{parts.host}{parts.rest}"


def why_not(url: str, timeout: float) -> str:
    """Why FFmpeg could not open ``url``, in a few words: found by connecting to it (and, for
    HTTP and RTSP, asking for it) once."""
    parts = split_url(url)
    scheme = parts.scheme
    if scheme in ("udp", "rtp"):
        return "timed out: no packets came (is the sender running and sending to this port?)"
    if parts.userinfo is not None and any(c in parts.userinfo for c in "/?#"):
        # NB: no connection: the host is in doubt (a password's / or an @ in the path), and
        # FFmpeg cuts such a URL elsewhere anyway
        return ("FFmpeg cannot open it (a password holding /, ? or # must be percent-encoded: %2F, %3F, %23; "
                "an @ in a path, %40)")
    # NB: the host as split_url cut it: with urlsplit, a password holding a / became a host and port
    place = re.fullmatch(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::(?P<port>\d{0,5}))?", parts.host)
    if place is None or (place["port"] and not 0 < int(place["port"]) < 65536):
        return f"not a valid URL ({parts.host!r} is not a host or host:port)"
    host = place["v6"] if place["v6"] is not None else place["name"]
    port = int(place["port"]) if place["port"] else DEFAULT_PORTS.get(scheme)
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
