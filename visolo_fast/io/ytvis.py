"""The YouTube-VIS results format (spec section 7): one entry per track, COCO RLE per frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils


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
        for t, rle in zip(frames, mask_utils.encode(stacked)):
            rles[t] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return rles


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
    return [
        {
            "video_id": video_id,
            "category_id": int(category_ids[label]) if category_ids is not None else label + 1,
            "score": float(score),
            "segmentations": encode_rle(track_masks),
        }
        for score, label, track_masks in zip(scores.tolist(), labels, masks)
    ]


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
        out = []
        for track in range(len(labels)):
            label = int(labels[track])
            frames = self._rles.get(track, {})
            out.append({
                "video_id": video_id,
                "category_id": int(category_ids[label]) if category_ids is not None else label + 1,
                "score": float(scores[track]),
                "segmentations": [frames.get(t) for t in range(self.frames)],
            })
        return out
