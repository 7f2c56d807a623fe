"""mask_dedup (IoU* > 0.5), intersections included: K blocky random masks of 352 x 624 in
score order."""

import pytest
import torch
from common import nms_inputs

from visolo_fast.ops.mask_dedup import OP, mask_dedup


def check(got, want):
    assert torch.equal(got, want), "the kept masks differ from the reference's"


@pytest.mark.parametrize("K", [100, 252], ids=lambda K: f"K={K}")
def test_mask_dedup(run_op, target, K):
    masks, _, _ = nms_inputs(K, target[1])
    run_op("mask_dedup", f"K={K} 352x624", lambda b: mask_dedup(masks, backend=b), check, OP, dtype="bool")
