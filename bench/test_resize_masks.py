"""resize_masks: K = 100 object-like masks (what dynamic_masks makes) from 352 x 624 to
720 x 1280, threshold 0.5."""

import torch
import torch.nn.functional as F
from common import object_masks

from visolo_fast.ops.resize_masks import OP, resize_masks

K, SIZE = 100, (720, 1280)


def test_resize_masks(run_op, target):
    masks = object_masks(K, target[1])

    def check(got, want):
        # NB: an interpolated value of exactly 0.5 (halfway between a 0 and a 1) may round
        # either way; nothing else may differ.
        assert got.shape == want.shape and got.dtype == torch.bool
        differ = got != want
        if differ.any():
            values = F.interpolate(masks.cpu()[None].float(), size=SIZE, mode="bilinear", align_corners=False)[0]
            assert not (differ & ((values - 0.5).abs() > 1e-6)).any(), "a pixel away from the threshold differs"

    run_op("resize_masks", f"K={K} 352x624 to 720x1280", lambda b: resize_masks(masks, SIZE, backend=b), check, OP,
           dtype="bool")
