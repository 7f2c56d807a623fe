"""Online video instance segmentation: frames in, tracked instances out (spec sections 3-7).

A frame's instances are final one frame late: the association of frame t with
the tracks needs frame t + 1's similarity matrix (t -> t + 1), and the grid
weight of frame t is computed from the memory as it stands after frame t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from visolo_fast import backends
from visolo_fast.engine.association import Candidate, match_candidates, match_previous
from visolo_fast.engine.frames import FastFrames, Ran, ReferenceFrames
from visolo_fast.engine.instances import FrameInstances, extract_instances
from visolo_fast.engine.runner import NetworkRunner, ieee_float32
from visolo_fast.engine.stages import stage
from visolo_fast.io.ytvis import to_ytvis
from visolo_fast.ops import resize_masks
from visolo_fast.preprocess import preprocess


class FrameResult(NamedTuple):
    """One frame's tracked instances, best score first, at the output size."""

    index: int  # the frame's index in the video
    track_ids: torch.Tensor  # int64 [K_t]: the track of each instance (0, 1, ... in order of appearance)
    masks: torch.Tensor  # bool [K_t, H, W]
    labels: torch.Tensor  # int64 [K_t], 0-based: this frame's label of each instance
    scores: torch.Tensor  # float32 [K_t]: this frame's score of each instance


@dataclass(frozen=True)
class VideoResult:
    """A whole video's tracks (spec section 7); track k is the k-th to appear."""

    scores: torch.Tensor  # float32 [K]: the track's category score, averaged over its frames
    labels: torch.Tensor  # int64 [K], 0-based
    masks: torch.Tensor  # bool [K, N, H, W]: empty in the frames where the track is absent

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to_ytvis(self, video_id, category_ids: Sequence[int] | None = None) -> list[dict]:
        """The YouTube-VIS results list: one entry per track, a COCO RLE (ASCII counts) or
        None per frame; ``category_id`` = ``category_ids[label]``, or label + 1 by default."""
        return to_ytvis(self.scores, self.labels, self.masks, video_id, category_ids)


class _Previous(NamedTuple):
    """What the association needs of the last finalised frame's instances."""

    index: int
    grids: torch.Tensor  # int64 [k]
    tracks: list[int]
    state: object  # the frame's Ran.state, for its embeddings
    rows: torch.Tensor | None  # [k, S]: their similarity with every grid of the next frame


def _check_size(size, what: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if not (isinstance(size, Sequence) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise ValueError(f"{what} must be (height, width), two positive integers, or None; got {size!r}")
    return int(size[0]), int(size[1])


class Tracker:
    """Streams a video through VISOLO: :meth:`step` each frame, then :meth:`flush`.

    No masks are kept: frame results are handed out, not stored (unless
    ``keep_video=True``). What grows is what the official algorithm keeps: the
    model's memory (one more entry every 5 frames, unless ``VisoloConfig.max_memory_frames``
    caps it), per track a running sum of its category scores, and per lost instance not
    re-identified yet (a candidate) its query embedding (dim / 2 floats).

    The fast engine's network runner is shared by the model's trackers with the same
    settings and rebuilt when the model's weights change; a tracker keeps the runner it
    was created with (a converted copy of the weights, where there is one, stays as it was).
    """

    def __init__(self, net, output_size: tuple[int, int] | None = None, backend: str = "auto", keep_video: bool = False,
                 dtype: torch.dtype = torch.float32, compile: bool | str = False, cuda_graphs: bool = False):
        """
        Args:
            net (VisoloNet): the network, with its config.
            output_size: (height, width) of the output masks; default each frame's own size.
            backend: ``"reference"`` runs the reference engine (the official structure in plain
                PyTorch, float32); any other runs the fast engine with the ops on that backend
                (``"auto"``: the fastest available), see :mod:`visolo_fast.backends`.
            keep_video: keep every frame result so :meth:`video_result` can assemble the
                whole video (memory grows with the video).
            dtype: the network's dtype in the fast engine: float32, float16 or bfloat16 (thresholds,
                NMS and the association stay float32). Reduced precision can change a
                decision near a threshold: README, "Performance".
            compile: run the network's passes through ``torch.compile`` (fast engine); True for
                its default backend (inductor), or the name of a ``torch.compile`` backend.
            cuda_graphs: replay the network's passes from CUDA graphs (fast engine, model on a GPU).
        """
        if backend not in backends.BACKENDS:
            raise ValueError(f"Tracker: backend must be one of {backends.BACKENDS}, got {backend!r}")
        self.net, self.config, self.backend = net, net.config, backend
        self.output_size = _check_size(output_size, "Tracker: output_size")
        self.device = next(net.parameters()).device
        if backend == "reference":
            if dtype != torch.float32 or compile or cuda_graphs:
                raise ValueError(f"Tracker: the reference engine (backend='reference') runs in float32 without compile "
                                 f"or CUDA graphs, got dtype={dtype}, compile={compile}, cuda_graphs={cuda_graphs}; "
                                 f"use backend='auto' for the fast engine")
            self._frames = ReferenceFrames(net)
        else:
            try:
                runner = NetworkRunner.get(net, dtype, backend, compile, cuda_graphs)
            except ValueError as exc:
                raise ValueError(f"Tracker: {exc}") from None
            self._frames = FastFrames(runner, backend, self.config.max_memory_frames)
        self._pending: Ran | None = None  # the last frame the network ran on, not final yet
        self._previous: _Previous | None = None
        self._candidates: list[Candidate] = []
        self._sums = torch.zeros((0, self.config.num_classes), dtype=torch.float64, device=self.device)
        self._counts = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._frame_size: tuple[int, int] | None = None
        self._kept: list[FrameResult] | None = [] if keep_video else None
        self._num_frames = 0
        self._flushed = False

    @property
    def num_frames(self) -> int:
        """Frames stepped so far."""
        return self._num_frames

    @property
    def num_tracks(self) -> int:
        return self._counts.shape[0]

    @property
    def memory_frames(self) -> list[int]:
        """The indices of the frames in the model's memory, oldest first."""
        return list(self._frames.memory.indices)

    @torch.no_grad()
    def step(self, frame) -> list[FrameResult]:
        """Runs one frame (uint8 RGB, [H, W, 3] numpy array or tensor).

        Returns:
            The frame results that became final: the previous frame's (none for the first frame).
        """
        image, size = self._prepare(frame, "Tracker.step")
        self._frame_size = size
        with ieee_float32(self.device):
            return self._advance(self._frames.run(image))

    def _prepare(self, frame, caller: str) -> tuple[torch.Tensor, tuple[int, int]]:
        """Checks a frame and makes it the network's input: (Tensor[1, 3, H, W], the frame's (H, W)).
        The tracker is not changed (the caller commits the size once every frame is good)."""
        if self._flushed:
            raise RuntimeError(f"{caller}: this tracker was flushed (its video ended); start a new one with model.tracker()")
        if not isinstance(frame, (np.ndarray, torch.Tensor)) or frame.ndim != 3 or frame.shape[-1] != 3:
            got = f"shape {tuple(frame.shape)}" if isinstance(frame, (np.ndarray, torch.Tensor)) else type(frame).__name__
            raise ValueError(f"{caller}: frame must be one [H, W, 3] uint8 RGB array or tensor, got {got}")
        size = tuple(frame.shape[:2])
        if self._frame_size is not None and size != self._frame_size:
            raise ValueError(f"{caller}: frame {self._num_frames} is {size[0]} x {size[1]}, the video's frames are "
                             f"{self._frame_size[0]} x {self._frame_size[1]}")
        cfg = self.config
        return preprocess(frame, size=cfg.input_size, device=self.device, mean=cfg.pixel_mean, std=cfg.pixel_std), size

    def _advance(self, ran: Ran) -> list[FrameResult]:
        """Takes the network's pass over the next frame: the previous frame becomes final."""
        results = [self._finalize(ran.association)] if self._pending is not None else []
        self._frames.remember(self._num_frames, ran)
        self._pending = ran
        self._num_frames += 1
        return results

    @torch.no_grad()
    def flush(self) -> list[FrameResult]:
        """Ends the video: returns the last frame's result (an empty list if it was already flushed)."""
        if self._flushed or self._pending is None:
            self._flushed = True
            return []
        with ieee_float32(self.device):
            result = self._finalize(None)
        self._pending, self._flushed = None, True
        return [result]

    def video_result(self) -> VideoResult:
        """The whole video's tracks, as :meth:`VisoloNet.segment_video` returns them."""
        if self._kept is None:
            raise RuntimeError("Tracker.video_result: this tracker does not keep frame results; "
                               "create it with model.tracker(..., keep_video=True)")
        if not self._flushed or self._num_frames == 0:
            raise RuntimeError("Tracker.video_result: the video is not complete: step at least one frame, then flush()")
        height, width = self.output_size or self._frame_size
        masks = torch.zeros((self.num_tracks, self._num_frames, height, width), dtype=torch.bool, device=self.device)
        for result in self._kept:
            masks[result.track_ids, result.index] = result.masks
        scores, labels = self.track_categories()
        return VideoResult(scores, labels, masks)

    def track_categories(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each track's (score, label) so far: its category scores averaged over the
        frames it is in, then the best category (spec section 7)."""
        average = self._sums / self._counts[:, None]
        scores, labels = average.max(dim=1)
        return scores.float(), labels

    def _finalize(self, association: torch.Tensor | None) -> FrameResult:
        """Extracts the pending frame's instances and gives them tracks.

        Args:
            association (Tensor[S, S] or None): the next frame's similarity with the
                pending one (pending frame's grids as rows); None at the end of the video.
        """
        ran, index, cfg = self._pending, self._num_frames - 1, self.config
        with stage("memory"):
            weight = self._frames.grid_weight(ran)
        inst = extract_instances(ran.mask_features, ran.kernels, ran.scores, weight, cfg, self.backend)
        with stage("association"):
            tracks = self._associate(index, inst, ran)
        self._previous = None if inst.count == 0 else _Previous(
            index, inst.grids, tracks, ran.state, None if association is None else association[inst.grids])
        ids = torch.tensor(tracks, dtype=torch.int64, device=self.device)
        self._accumulate(ids, max(tracks, default=-1) + 1, inst.score_vecs)
        with stage("masks"):
            masks = resize_masks(inst.masks, self.output_size or self._frame_size, cfg.mask_thr, self.backend)
        result = FrameResult(index, ids, masks, inst.labels, inst.scores.float())
        if self._kept is not None:
            self._kept.append(result)
        return result

    def _associate(self, index: int, inst: FrameInstances, ran: Ran) -> list[int]:
        """Track ids for the instances of frame ``index`` (spec section 6)."""
        prev, candidates, thr = self._previous, self._candidates, self.config.tracking_thr
        tracks: list[int | None] = [None] * inst.count
        taken: set[int] = set()
        if inst.count and (prev is not None or candidates):
            blocks = [prev.rows[:, inst.grids]] if prev is not None else []
            if candidates:
                reference = self._frames.keys(ran.state, inst.grids)  # [k, D]
                blocks += [torch.sigmoid(c.queries @ reference.T) for c in candidates]
            # The one device-to-host transfer of the frame's association.
            host = torch.cat(blocks).float().cpu().numpy()
            offsets = np.cumsum([0] + [b.shape[0] for b in blocks])
            sims = [host[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
            if prev is not None:
                rows = match_previous(sims.pop(0), thr)
                tracks = [None if r is None else prev.tracks[r] for r in rows]
                taken = {r for r in rows if r is not None}
            if candidates:
                self._candidates = match_candidates(candidates, sims, tracks, thr)
        new_track = self.num_tracks
        for i, track in enumerate(tracks):
            if track is None:
                tracks[i], new_track = new_track, new_track + 1
        if prev is not None:
            # The previous frame's instances no current instance took may come back later.
            lost = [r for r in range(len(prev.tracks)) if r not in taken]
            if lost:
                queries = self._frames.queries(prev.state, prev.grids[lost])
                self._candidates.append(Candidate(prev.index, queries, [prev.tracks[r] for r in lost]))
        return tracks

    def _accumulate(self, ids: torch.Tensor, num_tracks: int, score_vecs: torch.Tensor) -> None:
        new = num_tracks - self.num_tracks
        if new > 0:
            self._sums = torch.cat([self._sums, self._sums.new_zeros((new, self._sums.shape[1]))])
            self._counts = torch.cat([self._counts, self._counts.new_zeros(new)])
        self._sums.index_add_(0, ids, score_vecs.double())
        # A frame counts for a track where its category scores do not sum to zero (as official).
        self._counts.index_add_(0, ids, (score_vecs.sum(1) != 0).long())


def segment_video(net, frames, output_size: tuple[int, int] | None = None, backend: str = "auto", **options) -> VideoResult:
    """Runs a whole video; see :meth:`visolo_fast.VisoloNet.segment_video`."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"segment_video: frames must be [N, H, W, 3] uint8 RGB, got shape {tuple(frames.shape)}")
    elif not isinstance(frames, Sequence):
        raise TypeError(f"segment_video: frames must be a sequence of H x W x 3 uint8 RGB arrays or an [N, H, W, 3] "
                        f"uint8 tensor, got {type(frames).__name__}")
    if len(frames) == 0:
        raise ValueError("segment_video: no frames given")
    tracker = Tracker(net, output_size, backend, keep_video=True, **options)
    for frame in frames:
        tracker.step(frame)
    tracker.flush()
    return tracker.video_result()


@torch.no_grad()
def step_many(trackers: Sequence[Tracker], frames: Sequence) -> list[list[FrameResult]]:
    """Steps several streams at once: one frame each, the network run as one batch.

    Each tracker keeps its own memory and tracks; the results are those of
    ``[t.step(f) for t, f in zip(trackers, frames)]`` (up to float rounding: batched
    convolutions may sum in another order). The streams may be at different frames.

    Args:
        trackers: fast-engine trackers of one model with the same settings (backend, dtype,
            compile, CUDA graphs), each stream once.
        frames: one uint8 RGB [H, W, 3] frame per tracker (their sizes may differ).

    Returns:
        Per tracker, what its :meth:`Tracker.step` would return.
    """
    trackers, frames = list(trackers), list(frames)
    if len(trackers) != len(frames):
        raise ValueError(f"step_many: need one frame per tracker, got {len(trackers)} trackers and {len(frames)} frames")
    if not trackers:
        return []
    if len({id(t) for t in trackers}) != len(trackers):
        raise ValueError("step_many: a tracker appears twice; step a stream once per call")
    for i, t in enumerate(trackers):
        if not isinstance(t, Tracker) or not isinstance(t._frames, FastFrames):
            raise ValueError(f"step_many: trackers[{i}] must be a fast-engine Tracker (backend other than 'reference')")
        if t._frames.runner is not trackers[0]._frames.runner:
            raise ValueError(f"step_many: trackers[{i}] runs another model or other settings (backend, dtype, compile, "
                             f"CUDA graphs) than trackers[0], or was created before the model's weights changed; batch "
                             f"the trackers of one model created with the same settings")
    prepared = [t._prepare(f, f"step_many: trackers[{i}]") for i, (t, f) in enumerate(zip(trackers, frames))]
    for t, (_, size) in zip(trackers, prepared):
        t._frame_size = size
    images = torch.cat([image for image, _ in prepared])
    with ieee_float32(images.device):
        runs = FastFrames.run_many([t._frames for t in trackers], images)
        return [t._advance(ran) for t, ran in zip(trackers, runs)]
