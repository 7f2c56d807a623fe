"""mask_intersections: K blocky random masks of 352 x 624 (about 20% set each)."""

import pytest
import torch
from common import nms_inputs

from visolo_fast.ops.mask_intersections import OP, mask_intersections


def check(got, want):
    assert torch.equal(got, want), "intersection counts differ from the reference"


@pytest.mark.parametrize("K", [100, 252], ids=lambda K: f"K={K}")
def test_mask_intersections(run_op, target, K):
    masks, _, _ = nms_inputs(K, target[1])
    run_op("mask_intersections", f"K={K} 352x624", lambda b: mask_intersections(masks, backend=b), check, OP,
           dtype="bool")
