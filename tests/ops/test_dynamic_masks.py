"""dynamic_masks: the reference against float64 math written out."""

import pytest
import torch
import torch.nn.functional as F

from visolo_fast.ops import dynamic_masks


def by_hand(features, kernels, threshold):
    f, k = features.double(), kernels.double()
    if k.shape[0] == 0:
        empty = torch.zeros((0, 4 * f.shape[1], 4 * f.shape[2]), dtype=torch.float64)
        return empty > threshold, empty
    logits = torch.einsum("ke,ehw->khw", k, f)
    probs = torch.sigmoid(F.interpolate(logits[None], scale_factor=4, mode="bilinear", align_corners=False)[0])
    masks = probs > threshold
    return masks, probs


@pytest.mark.parametrize("K,h,w", [(0, 5, 7), (1, 1, 1), (7, 5, 7), (12, 22, 39)])
def test_reference_matches_float64(K, h, w):
    g = torch.Generator().manual_seed(K + h)
    features = torch.randn(16, h, w, generator=g)
    kernels = torch.randn(K, 16, generator=g) * 0.3
    masks, areas, quality = dynamic_masks(features, kernels, 0.5)
    assert masks.shape == (K, 4 * h, 4 * w) and masks.dtype == torch.bool
    assert areas.dtype == torch.int64 and quality.dtype == torch.float32
    want_masks, probs = by_hand(features, kernels, 0.5)
    near = (probs - 0.5).abs() < 1e-6  # float32 may fall either side here
    assert torch.equal(masks[~near], want_masks[~near])
    assert torch.equal(areas, masks.flatten(1).sum(1))
    want_quality = (probs * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)
    nonempty = areas > 0
    torch.testing.assert_close(quality[nonempty].double(), want_quality[nonempty], rtol=1e-5, atol=1e-6)
    assert torch.isnan(quality[~nonempty]).all()


def test_batched_equals_one_by_one():
    features = torch.randn(3, 8, 5, 6)
    kernels = torch.randn(3, 4, 8)
    masks, areas, quality = dynamic_masks(features, kernels)
    assert masks.shape == (3, 4, 20, 24)
    for b in range(3):
        m, a, q = dynamic_masks(features[b], kernels[b])
        assert torch.equal(masks[b], m) and torch.equal(areas[b], a)
        torch.testing.assert_close(quality[b], q, equal_nan=True)


def test_empty_mask_has_nan_quality():
    features = -torch.ones(2, 3, 3)
    masks, areas, quality = dynamic_masks(features, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert areas.tolist() == [0, 144] and torch.isnan(quality[0]) and quality[1] > 0.7


def test_bad_input():
    with pytest.raises(ValueError, match="features"):
        dynamic_masks(torch.zeros(8, 5), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="do not fit"):
        dynamic_masks(torch.zeros(8, 5, 5), torch.zeros(2, 7))
    with pytest.raises(TypeError, match="floating-point"):
        dynamic_masks(torch.zeros(8, 5, 5, dtype=torch.int64), torch.zeros(2, 8))
