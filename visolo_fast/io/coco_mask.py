"""pycocotools' mask API (COCO RLE), imported when an RLE is first made or read.

NB: not at import time: ``import visolo_fast`` and everything that only runs the network
and the engines (the op tests, the benchmarks, a GPU machine's image without pycocotools)
must work without it; only the RLE functions (results files, the evaluation, the shapes
dataset) need it, and they say so when it is missing."""

from __future__ import annotations

from types import ModuleType


def mask_api(purpose: str) -> ModuleType:
    """``pycocotools.mask``; raises ImportError naming ``purpose`` and the fix when it is not installed."""
    try:
        from pycocotools import mask
    except ImportError as e:
        raise ImportError(f"pycocotools is required for {purpose}: pip install pycocotools") from e
    return mask
