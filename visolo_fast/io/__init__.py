"""Results in and out of visolo_fast: YouTube-VIS json."""

from visolo_fast.io.ytvis import encode_rle, to_ytvis

__all__ = ["encode_rle", "to_ytvis"]
