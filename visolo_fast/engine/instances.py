"""Per-frame instance extraction (spec section 5): grids -> scored, de-duplicated masks."""

from __future__ import annotations

from typing import NamedTuple

import torch

from visolo_fast.config import VisoloConfig
from visolo_fast.engine.stages import stage
from visolo_fast.ops import dynamic_masks, mask_intersections
from visolo_fast.ops.mask_dedup import mask_dedup_from_intersections
from visolo_fast.ops.matrix_nms import matrix_nms_from_intersections


class FrameInstances(NamedTuple):
    """One frame's instances, best score first, at the network's input size."""

    masks: torch.Tensor  # bool [K, H, W]
    labels: torch.Tensor  # int64 [K], 0-based
    scores: torch.Tensor  # float32 [K], after re-weighting, mask quality and Matrix NMS
    score_vecs: torch.Tensor  # [K, C]: the un-weighted category scores of each instance's grid
    grids: torch.Tensor  # int64 [K]: the grid each instance comes from

    @property
    def count(self) -> int:
        """K. (NB: ``len()`` of a NamedTuple is its number of fields.)"""
        return self.labels.shape[0]

    def select(self, index: torch.Tensor) -> "FrameInstances":
        return FrameInstances(*(t[index] for t in self))


def _empty(mask_features: torch.Tensor, scores: torch.Tensor) -> FrameInstances:
    h, w = mask_features.shape[-2:]
    long = dict(dtype=torch.int64, device=scores.device)
    return FrameInstances(scores.new_zeros((0, 4 * h, 4 * w), dtype=torch.bool), torch.zeros(0, **long),
                          scores.new_zeros(0, dtype=torch.float32), scores.new_zeros((0, scores.shape[0])),
                          torch.zeros(0, **long))


def _sorted(x: torch.Tensor, limit: int) -> torch.Tensor:
    # NB: stable, so ties keep grid order; the official argsort (on the GPU) leaves ties unordered.
    return torch.argsort(x, descending=True, stable=True)[:limit]


def extract_instances(mask_features: torch.Tensor, kernels: torch.Tensor, scores: torch.Tensor,
                      weight: torch.Tensor | None, config: VisoloConfig, backend: str = "auto") -> FrameInstances:
    """The instances of one frame.

    Args:
        mask_features (Tensor[E, h, w]): the mask features F of the frame.
        kernels (Tensor[E, S]): one 1x1 kernel per grid.
        scores (Tensor[C, S]): sigmoid category scores per grid.
        weight (Tensor[S] or None): the frame's grid weight (None for a video's first frame).
        config: thresholds, NMS settings, and ``official_quirks``.
        backend: for the ops, see :mod:`visolo_fast.backends`.
    """
    score_vecs = scores.t()  # [S, C]
    best, labels = score_vecs.max(dim=1)
    if weight is not None:
        best = best * weight
    best = torch.where(best < config.score_thr, 0.0, best)
    grids = best.nonzero()[:, 0]
    # NB: the official code tests "no grid kept" as grids.sum() == 0, so a frame whose only
    # kept grid is grid 0 has no instances (spec section 8).
    if (grids.sum() == 0) if config.official_quirks else (grids.numel() == 0):
        return _empty(mask_features, scores)
    with stage("masks"):
        masks, areas, quality = dynamic_masks(mask_features, kernels.t()[grids], config.mask_thr, backend)
    inst = FrameInstances(masks, labels[grids], best[grids] * quality.to(best.dtype), score_vecs[grids], grids)
    candidates = None
    if not config.official_quirks:
        # An empty mask has no quality (0 / 0): dropped here rather than let its NaN score into NMS.
        candidates = (areas > 0).nonzero()[:, 0]
        if candidates.numel() == 0:
            return _empty(mask_features, scores)

    with stage("nms"):
        return _suppress(inst, candidates, config, backend)


def _suppress(inst: FrameInstances, candidates: torch.Tensor | None, config: VisoloConfig,
              backend: str) -> FrameInstances:
    """Matrix NMS, the score threshold and cap, and the duplicate removal, over the
    ``candidates`` (indices; None: all) of ``inst``.

    The masks are gathered once, at the end, for the instances kept: in between only
    indices move (a dense frame's 252 masks are 55 MB; sorting them, then selecting the
    NMS survivors, then the de-duplicated ones, were three copies).
    """
    pool = _sorted(inst.scores if candidates is None else inst.scores[candidates], config.nms_pre)
    if candidates is not None:
        pool = candidates[pool]
    # The pairwise intersections, computed once for all masks in their grid order (empty ones
    # cost nothing) and permuted to score order, exact integers: Matrix NMS and the duplicate
    # removal share them.
    inter = mask_intersections(inst.masks, backend)[pool][:, pool]
    decayed = matrix_nms_from_intersections(inter, inst.labels[pool], inst.scores[pool], config.nms_kernel,
                                            config.nms_sigma, backend)
    kept = (decayed >= config.update_thr).nonzero()[:, 0]
    if kept.numel() == 0:
        return inst.select(kept)
    order = kept[_sorted(decayed[kept], config.max_per_frame)]
    final = order[mask_dedup_from_intersections(inter[order][:, order], config.dedup_thr, backend)]
    return inst.select(pool[final])._replace(scores=decayed[final].to(inst.scores.dtype))
