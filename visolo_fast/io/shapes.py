"""A small YouTube-VIS-layout dataset of moving shapes with ground-truth masks, generated
deterministically (the same files on every machine): for trying the dataset mode and the
evaluator end to end without downloading YouTube-VIS.

Layout, as YouTube-VIS train::

    ROOT/JPEGImages/<video>/00000.jpg ...
    ROOT/annotations.json    videos (file_names, height, width, length), categories
                             (YouTube-VIS 2019's 40, ids 1..40), annotations (one per
                             object: category_id, iscrowd, segmentations / areas / bboxes,
                             one COCO RLE or None per frame)

Objects move, enter late and leave early (their frames before and after are None), and
one passes behind another, so the evaluation's spatio-temporal IoU sees every case.
"""

from __future__ import annotations

import json
import os

import numpy as np

from visolo_fast.classes import YTVIS_2019
from visolo_fast.io.coco_mask import mask_api


def _shape_mask(kind: str, cy: float, cx: float, r: float, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "disc":
        return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    return (abs(yy - cy) < r) & (abs(xx - cx) < 1.4 * r)  # a box


def make_shapes_dataset(root: str | os.PathLike, num_videos: int = 3, num_frames: int = 6,
                        size: tuple[int, int] = (72, 128), seed: int = 0) -> str:
    """Writes the dataset under ``root`` and returns the path of its annotations json.

    Video v has ``num_frames + v`` frames of ``size`` (height, width) and 2-3 objects.
    """
    if num_videos < 1 or num_frames < 2 or min(size) < 16:
        raise ValueError(f"make_shapes_dataset: need num_videos >= 1, num_frames >= 2 and a size of at least "
                         f"16 x 16, got {num_videos} videos, {num_frames} frames, {size[0]} x {size[1]}")
    mask_utils = mask_api("the shapes dataset's annotations (COCO RLE)")
    from PIL import Image  # NB: here, not at import: `import visolo_fast` works without Pillow
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    videos, annotations = [], []
    for v in range(num_videos):
        name, length = f"shapes{v:03d}", num_frames + v
        os.makedirs(os.path.join(root, "JPEGImages", name), exist_ok=True)
        background = np.stack([80 + 30 * np.sin(xx / (11 + v)), 100 + 25 * np.cos(yy / 9), 90 + 0 * xx], -1)
        objects = []
        for k in range(2 + v % 2):
            objects.append({
                "kind": ("disc", "box")[k % 2],
                "colour": rng.integers(120, 255, 3),
                "category_id": int(rng.integers(1, len(YTVIS_2019) + 1)),
                "start": (0, 1, 0)[k] if v % 2 else 0,  # in odd videos object 1 enters late
                "end": length - (k == 2),  # a third object leaves before the end
                "pos": rng.uniform([0.25 * h, 0.2 * w], [0.75 * h, 0.8 * w]),
                "vel": rng.uniform(-0.06, 0.06, 2) * (h, w),
                "r": float(rng.uniform(0.12, 0.22) * h),
            })
        tracks = [[None] * length for _ in objects]
        for t in range(length):
            image, taken = background.copy(), np.zeros((h, w), bool)
            for k, obj in enumerate(objects):  # the first object is in front
                if not obj["start"] <= t < obj["end"]:
                    continue
                cy, cx = obj["pos"] + t * obj["vel"]
                mask = _shape_mask(obj["kind"], cy, cx, obj["r"], h, w) & ~taken
                taken |= mask
                image[mask] = obj["colour"]
                if mask.any():
                    tracks[k][t] = mask
            noise = rng.normal(0, 4, image.shape)
            Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8)).save(
                os.path.join(root, "JPEGImages", name, f"{t:05d}.jpg"), quality=95)
        video_id = v + 1
        videos.append({"id": video_id, "width": w, "height": h, "length": length,
                       "file_names": [f"{name}/{t:05d}.jpg" for t in range(length)]})
        for k, obj in enumerate(objects):
            segs, areas, boxes = [], [], []
            for mask in tracks[k]:
                if mask is None:
                    segs.append(None), areas.append(None), boxes.append(None)
                    continue
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                segs.append({"size": [h, w], "counts": rle["counts"].decode("ascii")})
                areas.append(int(mask_utils.area(rle)))
                boxes.append([float(b) for b in mask_utils.toBbox(rle)])
            annotations.append({"id": len(annotations) + 1, "video_id": video_id, "category_id": obj["category_id"],
                                "iscrowd": 0, "width": w, "height": h, "length": 1,
                                "segmentations": segs, "areas": areas, "bboxes": boxes})
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(YTVIS_2019)]
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump({"info": {"description": "visolo_fast moving shapes"}, "licenses": [], "videos": videos,
                   "categories": categories, "annotations": annotations}, f)
    return path
