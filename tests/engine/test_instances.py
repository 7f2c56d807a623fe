"""Per-frame instance extraction (spec section 5) on hand-built frames, and the two
official quirks it reproduces by default (spec section 8)."""

import dataclasses
import math

import pytest
import torch

from tests.engine.scripted import CONFIG, Obj, ScriptedNet
from visolo_fast.engine import extract_instances

FIXED = dataclasses.replace(CONFIG, official_quirks=False)


def extract(objs, weight=None, config=CONFIG):
    """The frame's instances, the same bit for bit from all S grids (fixed) and from those
    that pass the threshold (compact)."""
    out = ScriptedNet([objs]).forward_frame(None)
    args = (out.mask_features[0], out.kernels[0].flatten(1), out.scores[0].flatten(1), weight, config)
    compact, fixed = extract_instances(*args, fixed=False), extract_instances(*args, fixed=True)
    count = int(compact.count)
    assert int(fixed.count) == count and fixed.grids.shape[0] == min(6, config.nms_pre, config.max_per_frame)
    for a, b in zip(compact.take(count), fixed.take(count)):
        assert torch.equal(a, b)
    return compact.take(count)


def quality(box) -> float:
    """The mask-quality score of a box mask: the mean of sigmoid(upsampled logit) inside."""
    out = ScriptedNet([[Obj(grid=1, identity=0, box=box)]]).forward_frame(None)
    logits = torch.nn.functional.interpolate(out.mask_features[:, :1], scale_factor=4, mode="bilinear", align_corners=False)
    p = torch.sigmoid(logits)[0, 0]
    return (p * (p > 0.5)).sum().item() / (p > 0.5).sum().item()


A = Obj(grid=1, identity=0, box=(0, 0, 4, 4), label=2)
B = Obj(grid=3, identity=1, box=(4, 6, 8, 12), label=1, score=0.8)


def test_outputs_per_instance():
    inst = extract([A, B])
    assert inst.count == 2
    assert inst.grids.tolist() == [1, 3] and inst.labels.tolist() == [2, 1]
    assert inst.masks.shape == (2, 32, 48) and inst.masks.dtype == torch.bool
    # the 4 x 4 box, upsampled x4 (the bilinear edge loses a pixel or so)
    assert not inst.masks[0, 16:].any() and not inst.masks[0, :, 16:].any() and inst.masks[0].sum() >= 250
    # the score: category score x mask quality (no weight, no overlap)
    torch.testing.assert_close(inst.scores, torch.tensor([0.9 * quality(A.box), 0.8 * quality(B.box)]))
    # score_vecs: the grid's full, un-weighted category vector
    assert inst.score_vecs[0].tolist() == [0, 0, 0.8999999761581421, 0] and inst.score_vecs[1, 1] == pytest.approx(0.8)


def test_weight_and_threshold():
    weight = torch.ones(6)
    weight[3] = 0.1 / 0.8 - 1e-3  # B's weighted score just under the 0.1 threshold
    assert extract([A, B], weight).grids.tolist() == [1]
    weight[3] = 0.1 / 0.8 + 1e-3
    inst = extract([A, B], weight)
    assert inst.grids.tolist() == [1, 3]
    assert inst.scores[1] == pytest.approx(0.8 * weight[3].item() * quality(B.box), rel=1e-6)
    # the score_vec stays un-weighted
    assert inst.score_vecs[1, 1] == pytest.approx(0.8)


def test_no_grid_above_threshold_gives_an_empty_frame():
    inst = extract([dataclasses.replace(A, score=0.05)])
    assert inst.count == 0 and inst.masks.shape == (0, 32, 48) and inst.score_vecs.shape == (0, 4)


def test_quirk_only_grid_zero_kept_counts_as_empty():
    alone = [dataclasses.replace(A, grid=0)]
    assert extract(alone).count == 0  # official: valid_ind.sum() == 0
    assert extract(alone, config=FIXED).grids.tolist() == [0]
    assert extract(alone + [B]).grids.tolist() == [0, 3]  # grid 0 with company is fine


def test_quirk_one_empty_mask_is_dropped():
    empty = Obj(grid=2, identity=2, box=(0, 0, 0, 0), score=0.95)
    for config in (CONFIG, FIXED):
        assert extract([A, B, empty], config=config).grids.tolist() == [1, 3]


@pytest.mark.parametrize("same_label", [True, False])
def test_quirk_two_empty_masks_wipe_out_the_frame(same_label):
    # Official: their IoU is 0 / 0 = NaN, which Matrix NMS spreads to every score
    # (NaN * label mask is NaN whatever the labels), so nothing passes update_thr.
    e1 = Obj(grid=2, identity=2, box=(0, 0, 0, 0), label=3)
    e2 = Obj(grid=4, identity=3, box=(0, 0, 0, 0), label=3 if same_label else 0)
    assert extract([A, B, e1, e2]).count == 0
    assert extract([A, B, e1, e2], config=FIXED).grids.tolist() == [1, 3]


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_matrix_nms_decays_overlaps_of_one_label(kernel):
    config = dataclasses.replace(CONFIG, nms_kernel=kernel)
    # A2 overlaps A by a third (IoU 8/24) and is covered exactly half (not > 0.5: not a duplicate)
    a2 = Obj(grid=4, identity=1, box=(0, 2, 4, 6), label=A.label, score=0.8)
    inst = extract([A, a2], config=config)
    assert inst.grids.tolist() == [1, 4]
    m = inst.masks.flatten(1).double()
    inter = (m[0] * m[1]).sum()
    iou = (inter / (m[0].sum() + m[1].sum() - inter)).item()
    assert iou == pytest.approx(1 / 3, abs=0.01)
    decay = math.exp(-2.0 * iou**2) if kernel == "gaussian" else 1 - iou
    assert inst.scores[1] == pytest.approx(0.8 * quality(a2.box) * decay, rel=1e-5)
    other_label = extract([A, dataclasses.replace(a2, label=0)], config=config)
    assert other_label.scores[1] == pytest.approx(0.8 * quality(a2.box), rel=1e-6)


def test_duplicates_are_removed_whatever_their_label():
    inside = Obj(grid=4, identity=1, box=(0, 0, 2, 3), label=0, score=0.8)  # inside A, another label
    assert extract([A, inside]).grids.tolist() == [1]
    # the bigger mask is not a duplicate of a better-scored smaller one inside it
    big = Obj(grid=4, identity=1, box=(0, 0, 8, 12), label=0, score=0.85)
    small = dataclasses.replace(A, score=0.95)
    assert extract([small, big]).grids.tolist() == [1, 4]


def test_update_threshold_and_caps():
    objs = [Obj(grid=g, identity=g, box=(0, 2 * g, 2, 2 * g + 2), label=g % 4, score=0.5 + 0.05 * g) for g in range(1, 6)]
    assert extract(objs).grids.tolist() == [5, 4, 3, 2, 1]  # score order
    assert extract(objs, config=dataclasses.replace(CONFIG, max_per_frame=2)).grids.tolist() == [5, 4]
    assert extract(objs, config=dataclasses.replace(CONFIG, nms_pre=3)).grids.tolist() == [5, 4, 3]
    scores = extract(objs).scores.tolist()
    between = (scores[1] + scores[2]) / 2
    assert extract(objs, config=dataclasses.replace(CONFIG, update_thr=between)).grids.tolist() == [5, 4]
