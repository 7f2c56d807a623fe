"""Overlays: each track in its own stable colour, filled and outlined, with its class and score."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour of its own for each track id, the same in every frame."""
    hue = (track_id * 0.618033988749895) % 1.0  # golden-ratio steps: neighbours differ
    hsv = np.uint8([[[int(hue * 179), 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_overlay(frame: np.ndarray, masks: np.ndarray, track_ids: Sequence[int], labels: Sequence[int],
                 scores: Sequence[float], class_names: Sequence[str], alpha: float = 0.45) -> np.ndarray:
    """The frame with each instance drawn.

    Args:
        frame (uint8 [H, W, 3] RGB), masks (bool [K, H, W]), track_ids, labels, scores (K each).
        class_names: the name of each label.
    """
    out = frame.copy()
    for mask, track, label in zip(masks, track_ids, labels):
        colour = np.array(track_colour(int(track)), dtype=np.float32)
        out[mask] = (out[mask] * (1 - alpha) + colour * alpha).astype(np.uint8)
    for mask, track, label, score in zip(masks, track_ids, labels, scores):
        colour = track_colour(int(track))
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 2)
        ys, xs = np.nonzero(mask)
        if len(ys):
            name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))
            text = f"{int(track)} {name} {float(score):.2f}"
            # at the mask's centre (masks that touch one corner would share a corner label)
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            org = (int(np.clip(xs.mean() - tw / 2, 0, max(out.shape[1] - tw, 0))), int(np.clip(ys.mean(), th, out.shape[0] - 2)))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out
