"""Frames in and out: video files, folders of images and pipes (through OpenCV and Pillow);
mp4 out. Live sources (network streams, cameras) are read by :mod:`visolo_fast.io.live`."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np

from visolo_fast.io.mp4 import Mp4Error, set_frame_size, set_frame_times

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# PIL modes of 8-bit images (anything else, such as I;16 or F, is refused)
_8BIT_MODES = {"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "La", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
# How a whole file of each format ends (looked for in its last KiB: a file cut short lacks it)
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


class InputError(ValueError):
    """An input that cannot be read as a video: the message says which and why."""


def quiet_opencv() -> None:
    """Silences OpenCV's and FFmpeg's own logging (``moov atom not found``, V4L2 warnings), so
    that an input OpenCV cannot read is one :class:`InputError`, not C-level lines on stderr.

    FFmpeg's level is read when OpenCV first opens a file with it: call this before the
    process's first ``cv2.VideoCapture``/``VideoWriter``. ``OPENCV_LOG_LEVEL`` and
    ``OPENCV_FFMPEG_LOGLEVEL`` set in the environment are kept.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _natural_key(name: str):
    """frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def to_rgb(image: np.ndarray, name: str, notes: set[str]) -> np.ndarray:
    """An OpenCV image (gray, BGR or BGRA) as RGB; what was converted goes to `notes`."""
    if image.ndim == 2 or image.shape[2] == 1:
        notes.add(f"grayscale frames (such as {name}) converted to RGB")
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        notes.add(f"RGBA frames (such as {name}): alpha dropped")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pilto_rgb(image: Image.Image, name: str, notes: set[str]) -> np.ndarray:
    """A decoded PIL image as RGB uint8; what was converted goes to `notes`."""
    if image.mode in ("1", "L"):
        notes.add(f"grayscale frames (such as {name}) converted to RGB")
    elif "A" in image.mode or image.mode in ("RGBa", "La"):
        notes.add(f"RGBA frames (such as {name}): alpha dropped")
    elif image.mode not in ("RGB", "P"):
        notes.add(f"{image.mode} frames (such as {name}) converted to RGB")
    return np.array(image if image.mode == "RGB" else image.convert("RGB"))  # NB: np.asarray would be read-only


def _ends_whole(path: str, fmt: str | None) -> bool:
    """Whether the file ends as a whole JPEG or PNG does (True for other formats): cheap, reads
    the last KiB only."""
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 1024))
        return marker in f.read()


class FrameSource:
    """The frames of a video file or a folder of images, RGB uint8, one at a time, in order.

    ``count`` is the number of frames (None if unknown), ``fps`` the frame rate (25 if
    unknown), ``size`` (height, width); ``notes`` collects conversions made on the way.
    Cameras and network streams: :func:`visolo_fast.open_source`.

    A folder is checked when opened, before any frame is decoded: every file's size and
    bit depth (from its header) and, for JPEG and PNG, that it is not cut short. Frames are
    decoded with PIL, which raises on a damaged file where libjpeg would print
    ``Premature end of JPEG file`` and return a grey-padded frame.
    """

    def __init__(self, spec: str):
        self.spec, self.notes, self.what = spec, set(), "INPUT"
        self._files: list[str] | None = None
        self._capture = None
        if os.path.isdir(spec):
            files = sorted((f for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)
            if not files:
                raise InputError(f"INPUT: the folder {spec} has no {'/'.join(IMAGE_EXTENSIONS)} frames")
            self._files = [os.path.join(spec, f) for f in files]
            self.kind, self.count = f"folder of {len(files)} frames", len(files)
            self._check_files()
        elif os.path.isfile(spec):
            self._capture = cv2.VideoCapture(spec)
            if not self._capture.isOpened():
                raise InputError(f"INPUT: OpenCV cannot open the video {spec} (not a video, or a damaged or "
                                 f"incomplete file)")
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.kind, self.count = "video file", count if count > 0 else None
        elif os.path.exists(spec) or (spec.isdigit() and not os.path.exists(spec)) or "://" in spec:
            raise InputError(f"INPUT: {spec} is not a video file or a folder of frames: open cameras, devices, pipes "
                             f"and streams with visolo_fast.open_source")
        else:
            raise InputError(f"INPUT: no such file, folder, camera or stream URL: {spec}")
        self._open()

    @classmethod
    def from_files(cls, files: list[str], what: str) -> "FrameSource":
        """The frames of a list of image files, checked as a folder's are; errors begin with
        ``what`` (such as ``video 12``) instead of ``INPUT``."""
        if not files:
            raise InputError(f"{what}: no frames")
        source = cls.__new__(cls)
        source.spec, source.notes, source.what, source._capture = what, set(), what, None
        source._files, source.kind, source.count = list(files), f"{len(files)} frames", len(files)
        source._check_files()
        source._open()
        return source

    @classmethod
    def from_capture(cls, capture: cv2.VideoCapture, spec: str, kind: str, count: int | None = None) -> "FrameSource":
        """The frames of an open OpenCV capture (a pipe, a video file over the network), read
        in order; ``count`` frames if known."""
        source = cls.__new__(cls)
        source.spec, source.notes, source.what, source._files = spec, set(), "INPUT", None
        source._capture, source.kind, source.count = capture, kind, count
        try:
            source._open()
        except BaseException:
            capture.release()
            raise
        return source

    def _open(self) -> None:
        first = self._read_first()
        self.size = first.shape[:2]
        self._first = first
        fps = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0
        self.fps = fps if fps and fps > 0 else 25.0

    def _check_files(self) -> None:
        """Every file of the folder has the first one's size, 8 bits a channel and (JPEG, PNG)
        its end: from the headers and the last KiB, without decoding (a file that seems cut
        short is decoded to be sure)."""
        from PIL import Image  # NB: here, not at import: `import visolo_fast` works without Pillow (a GPU image's)

        first = None
        for index, path in enumerate(self._files):
            try:
                with Image.open(path) as image:
                    size, mode, fmt = (image.height, image.width), image.mode, image.format
            except Exception as exc:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError... for bad files
                raise InputError(f"{self.what}: frame {index} ({path}) is not an image PIL can read: {one_line(exc)}") from None
            if mode not in _8BIT_MODES:
                raise InputError(_not_8bit(self.what, path, index, mode))
            if first is None:
                first = size
            elif size != first:
                raise InputError(f"{self.what}: frame {index} ({path}) is {size[0]} x {size[1]}, frame 0 "
                                 f"({os.path.basename(self._files[0])}) is {first[0]} x {first[1]}: "
                                 f"all frames must have one size")
            if not _ends_whole(path, fmt):
                self._decode(path, index)

    def _read_first(self) -> np.ndarray:
        if self._files is not None:
            return self._read_file(self._files[0], 0)
        ok, image = self._capture.read()
        if not ok or image is None:
            raise InputError(f"INPUT: OpenCV cannot decode a frame of {self.spec}")
        return to_rgb(image, self.spec, self.notes)

    def _decode(self, path: str, index: int) -> Image.Image:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                return image
        except FileNotFoundError:
            raise InputError(f"{self.what}: frame {index} ({path}) is gone (deleted while reading the folder?)") from None
        except Exception as exc:  # noqa: BLE001 -- PIL: OSError (truncated), SyntaxError (broken PNG), ...
            raise InputError(f"{self.what}: frame {index} ({path}) cannot be decoded, the file is damaged or cut short: "
                             f"{one_line(exc)}") from None

    def _read_file(self, path: str, index: int) -> np.ndarray:
        image = self._decode(path, index)
        if image.mode not in _8BIT_MODES:
            raise InputError(_not_8bit(self.what, path, index, image.mode))
        return _pilto_rgb(image, os.path.basename(path), self.notes)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self._first
        if self._files is not None:
            for index, path in enumerate(self._files[1:], start=1):
                frame = self._read_file(path, index)
                if frame.shape[:2] != self.size:  # checked when opened; the file may have changed since
                    raise InputError(f"{self.what}: frame {index} ({path}) is {frame.shape[0]} x {frame.shape[1]}, frame 0 is "
                                     f"{self.size[0]} x {self.size[1]}: all frames must have one size")
                yield frame
            return
        read = 1
        while True:
            ok, image = self._capture.read()
            if not ok:
                break
            read += 1
            yield to_rgb(image, self.spec, self.notes)
        if self.count is not None and read < self.count:
            self.notes.add(f"the video file declares {self.count} frames, OpenCV decoded {read}: "
                           f"a damaged or cut-short file?")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()


def _not_8bit(what: str, path: str, index: int, mode: str) -> str:
    return (f"{what}: frame {index} ({path}) has 16-bit, 32-bit or float pixels (PIL mode {mode}): frames must be "
            f"8-bit images (gray, RGB or RGBA)")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class VideoWriter:
    """An mp4 written frame by frame from RGB uint8 frames of ``size`` (height, width): OpenCV,
    mp4v codec, the frames' exact size; ``fps`` frames a second, or each frame for its own time
    if :meth:`write` is given them (a variable frame rate).

    NB: OpenCV's FFmpeg writer drops the last column or row of a frame of odd width or height;
    such frames are written padded by one column or row (a copy of the last) and the file
    then declares the true size, which decoders crop to (:mod:`visolo_fast.io.mp4`). If the
    file's layout cannot be rewritten, it keeps the padded size (or, with frame times, plays at
    ``fps``) and ``notes`` says so.
    """

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        self.path, self.size, self.notes = path, (int(size[0]), int(size[1])), set()
        self._pad = (self.size[0] % 2, self.size[1] % 2)
        coded = (self.size[1] + self._pad[1], self.size[0] + self._pad[0])  # OpenCV: (width, height)
        self._fps = fps
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, coded)
        if not self._writer.isOpened():
            raise OSError(f"cannot write the video {path} (OpenCV VideoWriter, mp4v)")
        self.frames = 0
        self._times: list[float] = []  # each frame's start, if given

    def write(self, rgb: np.ndarray, at: float | None = None) -> None:
        """Writes ``rgb`` as the next frame, shown from ``at`` (seconds, any clock: such as
        ``time.monotonic()``, later than the previous frame's) to the next frame's ``at`` or
        the ``end`` given to :meth:`close`; the video starts at the first frame's. ``at`` is
        given for every frame or for none (then each lasts 1 / ``fps``)."""
        if self.frames and (at is not None) != bool(self._times):
            raise ValueError(f"VideoWriter: give every frame of {self.path} its time, or none")
        if rgb.shape[:2] != self.size:
            raise ValueError(f"VideoWriter: frames of {self.path} are {self.size[0]} x {self.size[1]}, "
                             f"got {rgb.shape[0]} x {rgb.shape[1]}")
        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if at is not None:
            self._times.append(at)
        self.frames += 1

    def close(self, end: float | None = None) -> None:
        """Closes the file; ``end``: when the last frame stops showing, on the clock of the
        frames' times (needed if they were given)."""
        if self._writer is None:
            return
        if self._times and end is None:
            raise ValueError(f"VideoWriter.close: the frames of {self.path} have times: give the end of the last")
        self._writer.release()
        self._writer = None
        if any(self._pad) and self.frames:
            try:
                set_frame_size(self.path, *self.size)
            except (Mp4Error, IndexError, struct.error) as exc:
                self.notes.add(f"{self.path} is {self.size[0] + self._pad[0]} x {self.size[1] + self._pad[1]}, "
                               f"the frames {self.size[0]} x {self.size[1]} with their last row or column repeated "
                               f"(the codec's header could not be set to the odd size: {exc})")
        if self._times:
            try:
                set_frame_times(self.path, [*self._times, end])
            except (Mp4Error, IndexError, struct.error, ValueError, OSError) as exc:  # NB: the file stays playable
                self.notes.add(f"{self.path} plays at {self._fps:g} frames a second, not at the frames' own times "
                               f"(its index could not be rewritten: {exc})")
