"""mask_dedup: the reference against the official per-pair loop."""

import pytest
import torch

from tests.ops.test_matrix_nms import random_case
from visolo_fast.ops import mask_dedup


def official_loop(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """The official duplicate removal, pair by pair on float masks (zeroing the removed)."""
    m = masks.float().clone()
    for i in range(len(m) - 1):
        if m[i].sum() == 0:
            continue
        for j in range(i + 1, len(m)):
            if (m[i] * m[j]).sum() / m[j].sum() > threshold:
                m[j] = 0
    return m.flatten(1).sum(1) > 0


@pytest.mark.parametrize("K", [0, 1, 2, 9, 40, 100])
@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_reference_matches_the_official_loop(K, threshold):
    masks, _, _ = random_case(K, 1, seed=K)
    if K > 3:
        masks[3] = False  # an empty mask is never kept
        masks[2] = masks[1]  # an identical pair
    keep = mask_dedup(masks, threshold)
    assert keep.dtype == torch.bool and keep.shape == (K,)
    assert torch.equal(keep, official_loop(masks, threshold))


def test_exactly_half_covered_is_kept():
    masks = torch.zeros((2, 4, 4), dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 1:3] = True  # half of mask 1 lies in mask 0
    assert mask_dedup(masks).tolist() == [True, True]
    masks[1, 2, 0] = False  # now 4 of 7 pixels: > 0.5
    assert mask_dedup(masks).tolist() == [True, False]


def test_removed_masks_remove_nothing():
    # 1 is a duplicate of 0; 2 is covered by 1 but not by 0: 2 stays
    masks = torch.zeros((3, 1, 10), dtype=torch.bool)
    masks[0, 0, 0:6] = True
    masks[1, 0, 2:8] = True
    masks[2, 0, 6:9] = True
    assert mask_dedup(masks).tolist() == [True, False, True]


def test_bad_input():
    with pytest.raises(TypeError, match="masks must be a bool"):
        mask_dedup(torch.zeros((2, 4)))
