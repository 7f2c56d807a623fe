"""matrix_nms (gaussian, sigma 2), intersections included: K blocky random masks of
352 x 624 with 4 labels, sorted by score."""

import pytest
import torch
from common import nms_inputs

from visolo_fast.ops.matrix_nms import OP, matrix_nms


def check(got, want):
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("K", [100, 252], ids=lambda K: f"K={K}")
def test_matrix_nms(run_op, target, K):
    masks, labels, scores = nms_inputs(K, target[1])
    run_op("matrix_nms", f"K={K} 352x624", lambda b: matrix_nms(masks, labels, scores, backend=b), check, OP,
           dtype="bool")
