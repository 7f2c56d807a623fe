"""Per-frame instance extraction (spec section 5): grids -> scored, de-duplicated masks.

The extraction ends with how many instances a frame has, a number the host needs (the
association decides on it) but that depends on the data. So it runs at sizes known in
advance and leaves that number on the device: :class:`InstanceSlots` holds a fixed number
of slots, best first, of which the first ``count`` are instances. The host reads ``count``
once, with the frame's association rows (:mod:`visolo_fast.engine.tracker`), and then takes
the instances with slices of known length. Until then nothing waits for the device, and on
a GPU the whole extraction can be part of one CUDA graph.

Two ways in, one computation (:func:`_select`): ``fixed=True`` makes masks for all S grids
(a GPU's choice: no size depends on the data); ``fixed=False`` first picks the grids above
the score threshold (a ``nonzero``, free on the CPU) and makes masks for those only, which
is faster where few grids pass.
"""

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


class InstanceSlots(NamedTuple):
    """A frame's instances before the host knows how many: Q slots, best first, the first
    ``count`` of them instances (Q = the most a frame can have: ``min(candidates, nms_pre,
    max_per_frame)``). The masks stay those of the M candidates until then: gathering the
    kept ones takes the count (a dense frame's Q = 100 slots are 22 MB of masks at 352 x 624)."""

    masks: torch.Tensor  # bool [M, H, W]: every candidate's mask
    index: torch.Tensor  # int64 [Q]: each slot's candidate (its mask)
    labels: torch.Tensor  # int64 [Q]
    scores: torch.Tensor  # float32 [Q]
    score_vecs: torch.Tensor  # [Q, C]
    grids: torch.Tensor  # int64 [Q]
    count: torch.Tensor  # int64 []: K <= Q, on the device

    def take(self, count: int) -> FrameInstances:
        """The first ``count`` slots (``count`` as read on the host): slices and a gather by
        an index of known length, nothing waits."""
        return FrameInstances(self.masks[self.index[:count]], self.labels[:count], self.scores[:count],
                              self.score_vecs[:count], self.grids[:count])


def extract_instances(mask_features: torch.Tensor, kernels: torch.Tensor, scores: torch.Tensor,
                      weight: torch.Tensor | None, config: VisoloConfig, backend: str = "auto",
                      fixed: bool = False) -> InstanceSlots:
    """The instances of one frame.

    Args:
        mask_features (Tensor[E, h, w]): the mask features F of the frame.
        kernels (Tensor[E, S]): one 1x1 kernel per grid.
        scores (Tensor[C, S]): sigmoid category scores per grid.
        weight (Tensor[S] or None): the frame's grid weight (None for a video's first frame).
        config: thresholds, NMS settings, and ``official_quirks``.
        backend: for the ops, see :mod:`visolo_fast.backends`.
        fixed: masks for all S grids, so that no size depends on the data (no host
            synchronisation, traceable into one graph); else for the grids above the
            score threshold only (a ``nonzero``: faster on the CPU).
    """
    score_vecs = scores.t()  # [S, C]
    best, labels = score_vecs.max(dim=1)
    if weight is not None:
        best = best * weight
    best = torch.where(best < config.score_thr, 0.0, best)
    passed = best != 0
    if config.official_quirks:
        # NB: the official code tests "no grid kept" as grids.sum() == 0, so a frame whose only
        # kept grid is grid 0 has no instances (spec section 8).
        passed = passed & ((passed * torch.arange(passed.shape[0], device=passed.device)).sum() != 0)
    if fixed:
        grids = torch.arange(best.shape[0], device=best.device)
    else:
        grids = passed.nonzero()[:, 0]
        passed = passed[grids]
    with stage("masks", not fixed):
        masks, areas, quality = dynamic_masks(mask_features, kernels.t()[grids], config.mask_thr, backend)
    if not config.official_quirks:
        # An empty mask has no quality (0 / 0): dropped here rather than let its NaN score into NMS.
        passed = passed & (areas > 0)
    with stage("nms", not fixed):
        slots, decayed, count = _select(masks, labels[grids], (best[grids] * quality.to(best.dtype)), passed, config,
                                        backend)
    return InstanceSlots(masks, slots, labels[grids[slots]], decayed.to(best.dtype), score_vecs[grids[slots]],
                         grids[slots], count)


def _sorted(x: torch.Tensor, limit: int) -> torch.Tensor:
    # NB: stable, so ties keep grid order; the official argsort (on the GPU) leaves ties unordered.
    return torch.argsort(x, descending=True, stable=True)[:limit]


def _select(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, passed: torch.Tensor,
            config: VisoloConfig, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matrix NMS, the score threshold and cap, and the duplicate removal over the M
    candidates that ``passed``, at sizes that depend on M only.

    Args:
        masks (bool Tensor[M, H, W]), labels (int64 Tensor[M]), scores (float32 Tensor[M]),
        passed (bool Tensor[M]): the candidates, and which of them take part.

    Returns:
        (slots, decayed, count): int64 Tensor[Q], the kept candidates best first, then the
        others; float32 Tensor[Q], their scores after Matrix NMS; int64 Tensor[], how many kept.

    Every step orders the candidates that take part first (the others get -inf), and every
    step's result for candidate i depends on the candidates before it only (Matrix NMS's
    decay of a mask by better-scored ones, the greedy duplicate removal): on that prefix
    this is exactly the computation over the candidates that take part alone. Only indices
    move; the masks are gathered once, for the instances kept (:meth:`InstanceSlots.take`).
    """
    pool = _sorted(torch.where(passed, scores, float("-inf")), config.nms_pre)  # NB: NaN (official quirks) sorts first
    taking = passed[pool]
    # The pairwise intersections, computed once for all masks in candidate order (empty ones
    # cost nothing) and permuted to score order, exact integers: Matrix NMS and the duplicate
    # removal share them. Those of candidates not taking part become those of disjoint
    # one-pixel masks: their 0 / 0 IoUs (empty masks) would be NaN, which Matrix NMS spreads
    # through its column maxima to every score.
    inter = mask_intersections(masks, backend)[pool][:, pool]
    both = taking[:, None] & taking[None, :]
    inter = torch.where(both, inter, torch.eye(pool.shape[0], dtype=inter.dtype, device=inter.device))
    decayed = matrix_nms_from_intersections(inter, labels[pool], scores[pool], config.nms_kernel, config.nms_sigma,
                                            backend)
    kept = taking & (decayed >= config.update_thr)
    order = _sorted(torch.where(kept, decayed, float("-inf")), config.max_per_frame)
    final = mask_dedup_from_intersections(inter[order][:, order], config.dedup_thr, backend) & kept[order]
    # The survivors first, in score order (a stable sort of "not kept"), as slots of known number.
    first = torch.argsort((~final).to(torch.uint8), stable=True)
    return pool[order[first]], decayed[order[first]], final.sum()
