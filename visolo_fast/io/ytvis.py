"""YouTube-VIS json: the results format (spec section 7: one entry per track, COCO RLE per
frame) and the datasets' videos and categories.

The C++ tracker mirrors these rules in cpp/src/ytvis.cpp (COCO RLE and results.json): a
change here is made there too (tests/cpp/tracker_parity.py compares the two).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from visolo_fast.io.coco_mask import mask_api


def encode_rle(masks: torch.Tensor) -> list[dict | None]:
    """COCO RLEs of binary masks, ``counts`` as an ASCII string; None for an empty mask.

    Args:
        masks (bool Tensor[N, H, W]): one track's masks, frame by frame.
    """
    masks = masks.cpu()
    present = masks.flatten(1).any(1).tolist()
    # NB: pycocotools wants column-major uint8 [H, W, N]; encoding only the non-empty frames.
    frames = [t for t, p in enumerate(present) if p]
    rles: list[dict | None] = [None] * len(present)
    if frames:
        stacked = np.asfortranarray(masks[frames].permute(1, 2, 0).numpy().astype(np.uint8))
        for t, rle in zip(frames, mask_api("COCO RLE results (YouTube-VIS json)").encode(stacked)):
            rles[t] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return rles


def track_entry(video_id, score: float, label: int, segmentations: list[dict | None],
                category_ids: Sequence[int] | None = None) -> dict:
    """One track's entry of a YouTube-VIS results list.

    Args:
        video_id: the dataset's id of the video.
        score: the track's score; label: its label, 0-based.
        segmentations: one COCO RLE (or None: no mask) per frame of the video.
        category_ids: the dataset's category id of each label (default: label + 1, as
            YouTube-VIS 2019 / 2021).
    """
    if category_ids is not None and not 0 <= label < len(category_ids):
        raise ValueError(f"category_ids has {len(category_ids)} ids, label {label} has none")
    return {
        "video_id": video_id,
        "category_id": int(category_ids[label]) if category_ids is not None else label + 1,
        "score": float(score),
        "segmentations": segmentations,
    }


def to_ytvis(scores: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, video_id,
             category_ids: Sequence[int] | None = None) -> list[dict]:
    """The YouTube-VIS results list of one video.

    Args:
        scores (Tensor[K]), labels (int64 Tensor[K], 0-based), masks (bool Tensor[K, N, H, W]): the tracks.
        video_id: the dataset's id of the video.
        category_ids: the dataset's category id of each label (default: label + 1, as
            YouTube-VIS 2019 / 2021).
    """
    labels = labels.tolist()
    if category_ids is not None:
        bad = [label for label in labels if not 0 <= label < len(category_ids)]
        if bad:
            raise ValueError(f"to_ytvis: category_ids has {len(category_ids)} ids, labels {sorted(set(bad))} have none")
    return [track_entry(video_id, score, label, encode_rle(track_masks), category_ids)
            for score, label, track_masks in zip(scores.tolist(), labels, masks)]


class ResultsRecorder:
    """Collects a stream's frame results as COCO RLEs (a few hundred bytes per instance
    and frame, not masks), and writes the YouTube-VIS results list at the end."""

    def __init__(self) -> None:
        self.frames = 0
        self._rles: dict[int, dict[int, dict]] = {}

    def add(self, result) -> None:
        """A :class:`visolo_fast.FrameResult`."""
        for track, rle in zip(result.track_ids.tolist(), encode_rle(result.masks)):
            if rle is not None:
                self._rles.setdefault(track, {})[result.index] = rle
        self.frames = max(self.frames, result.index + 1)

    def entries(self, scores: torch.Tensor, labels: torch.Tensor, video_id,
                category_ids: Sequence[int] | None = None) -> list[dict]:
        """One entry per track, entry k for track k, ``segmentations`` over the frames recorded.

        Args:
            scores, labels (Tensor[K]): the tracks' categories (``Tracker.track_categories()``).
        """
        return [track_entry(video_id, float(scores[track]), int(labels[track]),
                            [self._rles.get(track, {}).get(t) for t in range(self.frames)], category_ids)
                for track in range(len(labels))]

    def results(self, tracker, video_id, category_ids: Sequence[int] | None = None) -> list[dict]:
        """The results list of the video that ``tracker`` (a :class:`visolo_fast.Tracker`) has
        run and this recorder has recorded: one entry per track, with the tracks' categories
        so far; empty when it has no track."""
        if not tracker.num_tracks:
            return []
        scores, labels = tracker.track_categories()
        return self.entries(scores.cpu(), labels.cpu(), video_id, category_ids)


class DatasetError(ValueError):
    """A dataset json that is not YouTube-VIS, or whose frames are not all there: the message
    says which entry and what is wrong."""


@dataclass(frozen=True)
class Video:
    """One video of a YouTube-VIS json: ``files`` are the frames' paths, in order."""

    id: int | str
    files: tuple[str, ...]
    height: int
    width: int


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class YtvisDataset:
    """The videos and categories of a YouTube-VIS (2019, 2021, OVIS) json, frames under
    ``images``. Labels are the categories sorted by id (label l <-> ``category_ids[l]``),
    as detectron2 maps them for VISOLO's training."""

    def __init__(self, annotations: str | os.PathLike, images: str | os.PathLike):
        self.annotations, self.images = str(annotations), str(images)
        try:
            with open(annotations, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise DatasetError(f"--annotations: cannot read {annotations}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"--annotations: {annotations} is not a json file ({exc})") from None
        what = f"--annotations: {annotations} is not a YouTube-VIS json"
        if not isinstance(data, dict) or not isinstance(data.get("videos"), list) or not isinstance(data.get("categories"), list):
            found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
            raise DatasetError(f"{what}: it needs lists 'videos' and 'categories', found {found}")
        categories = data["categories"]
        if not categories or not all(isinstance(c, dict) and _positive_int(c.get("id")) for c in categories):
            raise DatasetError(f"{what}: 'categories' must be a non-empty list of {{'id': positive int, 'name': ...}}")
        categories = sorted(categories, key=lambda c: c["id"])
        self.category_ids = tuple(c["id"] for c in categories)
        self.category_names = tuple(str(c.get("name", c["id"])) for c in categories)
        if len(set(self.category_ids)) != len(self.category_ids):
            raise DatasetError(f"{what}: category ids repeat: {sorted(self.category_ids)}")
        self.videos: list[Video] = []
        seen = set()
        for index, video in enumerate(data["videos"]):
            if not isinstance(video, dict):
                raise DatasetError(f"{what}: videos[{index}] is a {type(video).__name__}, not an object")
            names, vid = video.get("file_names"), video.get("id")
            problem = None
            if not isinstance(vid, (int, str)) or isinstance(vid, bool):
                problem = f"has no 'id' (got {vid!r})"
            elif vid in seen:
                problem = f"repeats the id {vid!r}"
            elif not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
                problem = "needs 'file_names', a non-empty list of paths relative to --images"
            elif not (_positive_int(video.get("height")) and _positive_int(video.get("width"))):
                problem = f"needs 'height' and 'width', positive ints (got {video.get('height')!r} x {video.get('width')!r})"
            if problem:
                raise DatasetError(f"{what}: videos[{index}] {problem}")
            seen.add(vid)
            self.videos.append(Video(vid, tuple(os.path.join(self.images, n) for n in names),
                                     video["height"], video["width"]))
        if not self.videos:
            raise DatasetError(f"{what}: 'videos' is empty")

    @property
    def num_frames(self) -> int:
        return sum(len(v.files) for v in self.videos)

    def missing_files(self) -> list[tuple[Video, str]]:
        """Every listed frame that is not a file, with its video."""
        return [(video, path) for video in self.videos for path in video.files if not os.path.isfile(path)]
