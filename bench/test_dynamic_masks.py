"""dynamic_masks at the official 88 x 156 x 256 mask features (masks of 352 x 624), K
kernels, threshold 0.5, for random kernels (masks of half the frame, salt-and-pepper) and
object-like ones (smooth blobs of a few percent of the frame)."""

import pytest
import torch
from common import dynamic_masks_inputs

from visolo_fast.ops.dynamic_masks import OP, dynamic_masks


def check(got, want):
    """Masks equal but for a few pixels within float rounding of the threshold (the
    compiled backends compare logits, the reference probabilities), areas that count the
    returned masks, qualities close (NaN where empty)."""
    (masks, areas, quality), (ref_masks, _, ref_quality) = got, want
    assert masks.shape == ref_masks.shape and masks.dtype == torch.bool
    differ = int((masks != ref_masks).sum())
    assert differ <= max(4, masks.numel() // 100_000), f"{differ} mask pixels differ from the reference"
    assert torch.equal(areas, masks.flatten(1).sum(1))
    nonempty = areas > 0
    assert torch.isnan(quality[~nonempty]).all()
    torch.testing.assert_close(quality[nonempty], ref_quality[nonempty], rtol=5e-5, atol=1e-6)


@pytest.mark.parametrize("K", [100, 252], ids=lambda K: f"K={K}")
@pytest.mark.parametrize("kind", ["random", "objects"])
def test_dynamic_masks(run_op, target, kind, K):
    features, kernels = dynamic_masks_inputs(kind, K, target[1])
    run_op("dynamic_masks", f"K={K} 88x156x256 {kind}", lambda b: dynamic_masks(features, kernels, 0.5, backend=b),
           check, OP)
