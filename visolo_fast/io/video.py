"""Frames in and out: video files, folders of images and cameras (through OpenCV)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class InputError(ValueError):
    """An input that cannot be read as a video: the message says which and why."""


def _natural_key(name: str):
    """frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _to_rgb(image: np.ndarray, name: str, notes: set[str]) -> np.ndarray:
    """An OpenCV image (gray, BGR or BGRA) as RGB; what was converted goes to `notes`."""
    if image.ndim == 2 or image.shape[2] == 1:
        notes.add(f"grayscale frames (such as {name}) converted to RGB")
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        notes.add(f"RGBA frames (such as {name}): alpha dropped")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FrameSource:
    """The frames of a video file, a folder of images or a camera, RGB uint8, one at a time.

    ``count`` is the number of frames (None for a camera), ``fps`` the frame rate (25 if
    unknown), ``size`` (height, width); ``notes`` collects conversions made on the way.
    """

    def __init__(self, spec: str):
        self.spec, self.notes = spec, set()
        self._files: list[str] | None = None
        self._capture = None
        if spec.isdigit() and not os.path.exists(spec):
            self._capture = cv2.VideoCapture(int(spec))
            if not self._capture.isOpened():
                raise InputError(f"INPUT: cannot open camera {spec}")
            self.kind, self.count = f"camera {spec}", None
        elif os.path.isdir(spec):
            files = sorted((f for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)
            if not files:
                raise InputError(f"INPUT: the folder {spec} has no {'/'.join(IMAGE_EXTENSIONS)} frames")
            self._files = [os.path.join(spec, f) for f in files]
            self.kind, self.count = f"folder of {len(files)} frames", len(files)
        elif os.path.isfile(spec):
            self._capture = cv2.VideoCapture(spec)
            if not self._capture.isOpened():
                raise InputError(f"INPUT: OpenCV cannot open the video {spec}")
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.kind, self.count = "video file", count if count > 0 else None
        else:
            raise InputError(f"INPUT: no such file, folder or camera: {spec}")
        first = self._read_first()
        self.size = first.shape[:2]
        self._first = first
        fps = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0
        self.fps = fps if fps and fps > 0 else 25.0

    def _read_first(self) -> np.ndarray:
        if self._files is not None:
            return self._read_file(self._files[0])
        ok, image = self._capture.read()
        if not ok or image is None:
            raise InputError(f"INPUT: OpenCV cannot decode a frame of {self.spec}")
        return _to_rgb(image, self.spec, self.notes)

    def _read_file(self, path: str) -> np.ndarray:
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"INPUT: cannot read the image {path}")
        if image.dtype != np.uint8:
            raise InputError(f"INPUT: {path} is {image.dtype}, frames must be 8-bit images")
        return _to_rgb(image, os.path.basename(path), self.notes)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self._first
        if self._files is not None:
            for path in self._files[1:]:
                frame = self._read_file(path)
                if frame.shape[:2] != self.size:
                    raise InputError(f"INPUT: {path} is {frame.shape[0]} x {frame.shape[1]}, the first frame is "
                                     f"{self.size[0]} x {self.size[1]}: all frames must have one size")
                yield frame
            return
        while True:
            ok, image = self._capture.read()
            if not ok:
                return
            yield _to_rgb(image, self.spec, self.notes)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()


class VideoWriter:
    """An mp4 written frame by frame from RGB uint8 frames (OpenCV, mp4v codec)."""

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        self.path = path
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
        if not self._writer.isOpened():
            raise OSError(f"cannot write the video {path} (OpenCV VideoWriter, mp4v)")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
