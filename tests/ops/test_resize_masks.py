"""resize_masks: the official final resize of binary masks."""

import pytest
import torch
import torch.nn.functional as F

from visolo_fast.ops import resize_masks


@pytest.mark.parametrize("size", [(360, 640), (100, 37), (352, 624), (1, 1)])
def test_reference_is_the_official_resize(size):
    g = torch.Generator().manual_seed(size[0])
    masks = torch.rand((3, 88, 156), generator=g) > 0.6
    got = resize_masks(masks, size)
    want = F.interpolate(masks.float()[None], size=size, mode="bilinear", align_corners=False)[0] >= 0.5
    assert got.dtype == torch.bool and torch.equal(got, want)


def test_no_masks():
    assert resize_masks(torch.zeros((0, 8, 8), dtype=torch.bool), (4, 6)).shape == (0, 4, 6)


def test_bad_input():
    with pytest.raises(TypeError, match="bool"):
        resize_masks(torch.zeros((2, 8, 8)), (4, 4))
    with pytest.raises(ValueError, match="size must be"):
        resize_masks(torch.zeros((2, 8, 8), dtype=torch.bool), (4, 0))
