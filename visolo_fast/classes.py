"""Class names of the datasets VISOLO is trained on (index = 0-based label)."""

from __future__ import annotations

import os

# YouTube-VIS 2019 and 2021: category id = index + 1, as the datasets number them.
YTVIS_2019 = (
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake", "monkey", "hand",
    "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear", "motorbike", "giraffe", "leopard",
    "fox", "deer", "owl", "surfboard", "airplane", "truck", "zebra", "tiger", "elephant", "snowboard", "boat", "shark",
    "mouse", "frog", "eagle", "earless_seal", "tennis_racket",
)
YTVIS_2021 = (
    "airplane", "bear", "bird", "boat", "car", "cat", "cow", "deer", "dog", "duck", "earless_seal", "elephant", "fish",
    "flying_disc", "fox", "frog", "giant_panda", "giraffe", "horse", "leopard", "lizard", "monkey", "motorbike",
    "mouse", "parrot", "person", "rabbit", "shark", "skateboard", "snake", "snowboard", "squirrel", "surfboard",
    "tennis_racket", "tiger", "train", "truck", "turtle", "whale", "zebra",
)
# COCO's 80 thing classes in the order of their contiguous ids (VISOLO's pre-training).
COCO = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
BUILT_IN = {"ytvis2019": YTVIS_2019, "ytvis2021": YTVIS_2021, "coco": COCO}


def load_classes(spec: str) -> tuple[str, ...]:
    """A built-in list (``ytvis2019``, ``ytvis2021``, ``coco``) or a text file, one name a line."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    if not os.path.isfile(spec):
        raise ValueError(f"--classes: {spec!r} is neither one of {sorted(BUILT_IN)} nor a file")
    try:
        with open(spec, encoding="utf-8") as f:
            names = tuple(line.strip() for line in f if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--classes: cannot read {spec}: {exc}") from None
    if not names:
        raise ValueError(f"--classes: {spec} lists no class names (one name a line)")
    return names
