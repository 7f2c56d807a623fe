"""The bundled sample: a short synthetic clip generated deterministically (no file to
ship, the same pixels on every machine): textured background, three objects moving,
one occluding another."""

from __future__ import annotations

import numpy as np


def sample_frames(num_frames: int = 8, height: int = 360, width: int = 640) -> list[np.ndarray]:
    """Returns ``num_frames`` uint8 RGB frames, each [height, width, 3]."""
    if num_frames < 1 or height < 16 or width < 16:
        raise ValueError(f"sample_frames: need num_frames >= 1 and a size of at least 16 x 16, "
                         f"got {num_frames} frames of {height} x {width}")
    rng = np.random.default_rng(2022)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([90 + 40 * np.sin(xx / 53), 110 + 30 * np.cos(yy / 41), 80 + 20 * np.sin((xx + yy) / 67)], -1)
    background += rng.normal(0, 6, background.shape)
    frames = []
    for t in range(num_frames):
        img = background.copy()
        # A red disc crossing left to right.
        cy, cx, r = 0.55 * height, (0.15 + 0.06 * t) * width, 0.12 * height
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = (220, 40, 40)
        # A blue box drifting up, passing behind the disc.
        top, left = int((0.6 - 0.03 * t) * height), int(0.45 * width)
        box = np.zeros((height, width), bool)
        box[max(top, 0): top + int(0.25 * height), left: left + int(0.18 * width)] = True
        img[box & ((yy - cy) ** 2 + (xx - cx) ** 2 >= r**2)] = (40, 60, 210)
        # A yellow ellipse, still, at the right.
        img[((yy - 0.3 * height) / (0.1 * height)) ** 2 + ((xx - 0.8 * width) / (0.07 * width)) ** 2 < 1] = (230, 210, 50)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames
