"""The files of a ``segment`` or ``demo`` run in its output folder, written as frames finish:
``overlay.mp4`` (the frames with the tracks drawn), ``results.json`` (YouTube-VIS results of
the video) and, if asked, ``masks/NNNNNN.png`` (pixel = track id + 1).

The overlay holds one frame per processed frame, at the source's frame rate: the video's own
time for a file, a folder, a pipe or a live source read frame by frame. A live source read
newest frame first drops frames, so its overlay is in real time instead (a variable frame
rate): each processed frame is shown from its capture to the next one's, the last one until
the files are closed; the overlay lasts as long as the run did from its first capture.

A folder holds one run's files: the first finished frame of a run replaces those of an
earlier run. Mask PNGs carry a text chunk that marks them as ours, so that only files this
package wrote are ever removed; files of other names are left alone.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence

import numpy as np

from visolo_fast.io.video import VideoWriter
from visolo_fast.io.ytvis import ResultsRecorder
from visolo_fast.viz import draw_overlay, track_colour

OVERLAY, RESULTS, MASKS = "overlay.mp4", "results.json", "masks"
_MASK_NAME = re.compile(r"\d{6,}\.png")
_MARK = ("Software", "visolo_fast segment")  # the PNG text chunk that tells our mask files from others


def save_mask_png(path: str, track_ids: Sequence[int], masks: np.ndarray, size: tuple[int, int]) -> None:
    """An indexed PNG: pixel value = track id + 1 of the best-scored instance there, 0 where
    no track (16-bit past 255 tracks).

    Args:
        track_ids (K), masks (bool [K, H, W]): a frame's instances, best score first.
        size: (H, W).
    """
    from PIL import Image, PngImagePlugin  # NB: here: `import visolo_fast` works without Pillow

    ids = np.zeros(size, dtype=np.int64)
    # NB: instances come best first; painted in reverse, the best ends on top
    for track, mask in reversed(list(zip(track_ids, masks))):
        ids[mask] = track + 1
    if ids.max() < 256:
        image = Image.fromarray(ids.astype(np.uint8), mode="P")
        image.putpalette([0, 0, 0] + [c for t in range(255) for c in track_colour(t)])
    else:
        image = Image.fromarray(ids.astype(np.uint16))
    info = PngImagePlugin.PngInfo()
    info.add_text(*_MARK)
    image.save(path, pnginfo=info)


def is_our_mask(path: str) -> bool:
    """Whether ``path`` is a mask PNG that :func:`save_mask_png` wrote (reads its header only)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get(_MARK[0]) == _MARK[1]
    except Exception:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError... for other files
        return False


def mask_files(out_dir: str) -> tuple[list[str], list[str]]:
    """The files named as our masks (NNNNNN.png) in ``out_dir/masks``, sorted: (ours, others)."""
    folder = os.path.join(out_dir, MASKS)
    if not os.path.isdir(folder):
        return [], []
    paths = [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if _MASK_NAME.fullmatch(name)]
    ours = {path for path in paths if os.path.isfile(path) and is_our_mask(path)}
    return [path for path in paths if path in ours], [path for path in paths if path not in ours]


class RunOutputs:
    """Writes a run's files into ``out_dir`` frame by frame.

    The files are made with the first finished frame (a run stopped before it leaves the
    folder as it was); then the earlier run's mask PNGs go (``removed`` counts them), the
    overlay is opened and ``masks/`` made. :meth:`close` closes the overlay and writes
    ``results.json``.

    ``realtime`` (a live source, newest frame): the overlay follows the wall clock. Each
    frame's overlay image is written once, and :meth:`close` gives each its time in the
    file (:func:`visolo_fast.io.mp4.set_frame_times`): from its capture to the next frame's,
    the last one until the close. If the file cannot be rewritten so, it plays at ``fps``
    and ``notes`` says so.
    """

    def __init__(self, out_dir: str, fps: float, size: tuple[int, int], class_names: Sequence[str],
                 save_masks: bool, realtime: bool = False):
        self.out_dir, self.fps, self.size = out_dir, fps, tuple(size)
        self.class_names, self.save_masks, self.realtime = class_names, save_masks, realtime
        self.overlay = os.path.join(out_dir, OVERLAY)
        self.results = os.path.join(out_dir, RESULTS)
        self.masks = os.path.join(out_dir, MASKS)
        self.frames, self.removed = 0, 0
        self.notes: set[str] = set()
        self._writer: VideoWriter | None = None
        self._recorder = ResultsRecorder()

    def _start(self) -> None:
        """Clears the earlier run's files that this run would not replace, opens the overlay."""
        ours, _ = mask_files(self.out_dir)
        for path in ours:
            os.remove(path)
        self.removed = len(ours)
        if ours and not os.listdir(self.masks):
            os.rmdir(self.masks)
        self._writer = VideoWriter(self.overlay, self.fps, self.size)  # OSError: cannot write it
        if self.save_masks:
            os.makedirs(self.masks, exist_ok=True)

    def add(self, frame: np.ndarray, result, captured: float | None = None) -> None:
        """A finished frame: ``frame`` (uint8 [h, w, 3] RGB, resized to ``size`` if it is not),
        its :class:`visolo_fast.FrameResult` and, for a ``realtime`` overlay, its capture time
        (``time.monotonic()``, :attr:`visolo_fast.Frame.time`)."""
        if self.realtime and captured is None:
            raise ValueError("RunOutputs.add: a realtime overlay needs each frame's capture time")
        if self._writer is None:
            self._start()
        if frame.shape[:2] != self.size:
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((self.size[1], self.size[0]), Image.BILINEAR))
        masks, track_ids = result.masks.cpu().numpy(), result.track_ids.tolist()
        image = draw_overlay(frame, masks, track_ids, result.labels.tolist(), result.scores.tolist(), self.class_names)
        self._writer.write(image, captured if self.realtime else None)
        self._recorder.add(result)
        if self.save_masks:
            save_mask_png(os.path.join(self.masks, f"{result.index:06d}.png"), track_ids, masks, self.size)
        self.frames += 1

    def close(self, tracker) -> None:
        """Closes the overlay and writes ``results.json`` (one entry per track of ``tracker``,
        the :class:`visolo_fast.Tracker` that made the frames); nothing if no frame was added."""
        if self._writer is None:
            return
        self._writer.close(time.monotonic() if self.realtime else None)  # realtime: the last frame until now
        self.notes |= self._writer.notes
        with open(self.results, "w") as f:
            json.dump(self._recorder.results(tracker, video_id=1), f)

    def files(self) -> str:
        """The files written, for messages: ``OUT/overlay.mp4, OUT/results.json and OUT/masks/``."""
        return f"{self.overlay}, {self.results}" + (f" and {self.masks}/" if self.save_masks else "")
