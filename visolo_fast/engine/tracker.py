"""Online video instance segmentation: frames in, tracked instances out (spec sections 3-7).

Data flows one way: frame -> the frame's device work (:class:`~visolo_fast.engine.engine.Engine`,
reading and then updating the stream's memory) -> instances -> tracks -> the frame's
:class:`FrameResult`, returned by the same :meth:`Tracker.step` call.

Nothing of frame t's result depends on a later frame. The official loop finalises frame t
one iteration late, but from what was known after pass t: the grid weight of memory
entries that are all <= t, the rows of frame t - 1's instances in the association matrix
of pass t (t - 1 -> t), the candidates (frames <= t - 1) and frame t's own outputs. The
matrix of pass t + 1 only supplies the rows of frame t's instances for frame t + 1's
matching; here they are computed when frame t + 1 is matched, from frame t's instances'
query embeddings (kept) and frame t + 1's keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from visolo_fast.engine.association import Candidate, match_candidates, match_previous
from visolo_fast.engine.instances import FrameInstances
from visolo_fast.engine.engine import Engine, FramePass
from visolo_fast.engine.stages import stage
from visolo_fast.io.ytvis import to_ytvis
from visolo_fast.ops import resize_masks
from visolo_fast.preprocess import preprocess
from visolo_fast.transfer import to_device


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
    """What the association needs of the previous frame's instances."""

    index: int
    tracks: list[int]
    queries: torch.Tensor  # float32 [k, D]: their tracking query embeddings


def _check_size(size, what: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if not (isinstance(size, Sequence) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise ValueError(f"{what} must be (height, width), two positive integers, or None; got {size!r}")
    return int(size[0]), int(size[1])


class Tracker:
    """Streams a video through VISOLO: :meth:`step` each frame, which returns that frame's
    result; :meth:`flush` ends the stream.

    No masks are kept: frame results are handed out, not stored (unless
    ``keep_video=True``). What grows is what the official algorithm keeps: the
    model's memory (one more entry every 5 frames, unless ``VisoloConfig.max_memory_frames``
    caps it), per track a running sum of its category scores, and per lost instance not
    re-identified yet (a candidate) its query embedding (dim / 2 floats).
    """

    def __init__(self, model_or_engine, output_size: tuple[int, int] | None = None, backend: str = "auto",
                 keep_video: bool = False,
                 dtype: torch.dtype = torch.float32, compile: bool | str = False, cuda_graphs: bool = False,
                 fixed_shapes: bool | None = None):
        """
        Args:
            model_or_engine: a :class:`visolo_fast.VisoloNet`, run with the engine options below; or an
                :class:`visolo_fast.Engine`, whose settings (and compiled code, CUDA graphs,
                converted weights) its trackers share: then leave the engine options as they are.
            output_size: (height, width) of the output masks; default each frame's own size.
            keep_video: keep every frame result so :meth:`video_result` can assemble the
                whole video (memory grows with the video).
            backend, dtype, compile, cuda_graphs, fixed_shapes: the engine, see :class:`visolo_fast.Engine`
                (``"auto"``: the fast engine; ``"reference"``: the reference engine).
        """
        if isinstance(model_or_engine, Engine):
            if (backend, dtype, compile, cuda_graphs, fixed_shapes) != ("auto", torch.float32, False, False, None):
                raise ValueError(f"Tracker: backend, dtype, compile, cuda_graphs and fixed_shapes are the engine's "
                                 f"settings; pass them to Engine(), not to a tracker of an engine (got "
                                 f"backend={backend!r}, dtype={dtype}, compile={compile!r}, cuda_graphs={cuda_graphs!r}, "
                                 f"fixed_shapes={fixed_shapes!r})")
            self.engine = model_or_engine
        else:
            self.engine = Engine(model_or_engine, backend, dtype, compile, cuda_graphs, fixed_shapes)
        self.config, self.backend, self.device = self.engine.config, self.engine.backend, self.engine.device
        self.output_size = _check_size(output_size, "Tracker: output_size")
        self.stream = self.engine.new_stream()
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
        return self.stream.memory_frames

    @torch.no_grad()
    def step(self, frame) -> FrameResult:
        """Runs one frame (uint8 RGB, [H, W, 3] numpy array or tensor) and returns its result:
        its instances with their tracks, final (nothing in it depends on a later frame)."""
        image = self.prepare(frame, "Tracker.step")
        return self.finish(self.engine.run([self.stream], image)[0], tuple(frame.shape[:2]))

    def prepare(self, frame, caller: str = "Tracker.prepare") -> torch.Tensor:
        """The first half of :meth:`step` (:func:`visolo_fast.step_many` runs it for each
        stream, then one batched pass): checks a frame and makes it the network's input,
        Tensor[1, 3, H, W]. The tracker is not changed."""
        if self._flushed:
            raise RuntimeError(f"{caller}: this tracker was flushed (its video ended); start a new one with "
                               f"visolo_fast.Tracker()")
        if not isinstance(frame, (np.ndarray, torch.Tensor)) or frame.ndim != 3 or frame.shape[-1] != 3:
            got = f"shape {tuple(frame.shape)}" if isinstance(frame, (np.ndarray, torch.Tensor)) else type(frame).__name__
            raise ValueError(f"{caller}: frame must be one [H, W, 3] uint8 RGB array or tensor, got {got}")
        size = tuple(frame.shape[:2])
        if self._frame_size is not None and size != self._frame_size:
            raise ValueError(f"{caller}: frame {self._num_frames} is {size[0]} x {size[1]}, the video's frames are "
                             f"{self._frame_size[0]} x {self._frame_size[1]}")
        cfg = self.config
        return preprocess(frame, size=cfg.input_size, device=self.device, mean=cfg.pixel_mean, std=cfg.pixel_std)

    def finish(self, frame_pass: FramePass, size: tuple[int, int]) -> FrameResult:
        """The second half of :meth:`step`: the frame's tracks and result, from its device work.

        The host reads the device once here: the number of instances and the association's
        similarity rows, in one transfer; everything else stays on the device.

        Args:
            frame_pass: the frame's device work (:meth:`visolo_fast.Engine.run`).
            size: the frame's (height, width), the masks' size unless ``output_size`` was given.
        """
        index, cfg = self._num_frames, self.config
        self._frame_size = size
        with self.engine.precision():
            with stage("association"):
                inst, similarities = self._transfer(frame_pass)
                tracks = self._associate(index, inst, similarities)
            # NB: float32 for the decisions, whatever the network's dtype.
            self._previous = None if inst.count == 0 else _Previous(index, tracks, frame_pass.query[inst.grids].float())
            ids = to_device(tracks, self.device, torch.int64)
            self._accumulate(ids, max(tracks, default=-1) + 1, inst.score_vecs)
            with stage("masks"):
                masks = resize_masks(inst.masks, self.output_size or size, cfg.mask_thr, self.backend)
        result = FrameResult(index, ids, masks, inst.labels, inst.scores.float())
        if self._kept is not None:
            self._kept.append(result)
        self._num_frames += 1
        return result

    def flush(self) -> None:
        """Ends the stream: every frame's result was returned by its :meth:`step`; after this,
        :meth:`step` refuses more frames."""
        self._flushed = True

    def video_result(self) -> VideoResult:
        """The whole video's tracks so far, as :func:`visolo_fast.segment_video` returns them."""
        if self._kept is None:
            raise RuntimeError("Tracker.video_result: this tracker does not keep frame results; "
                               "create it with Tracker(..., keep_video=True)")
        if self._num_frames == 0:
            raise RuntimeError("Tracker.video_result: no frame yet: step at least one frame")
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

    def _transfer(self, frame_pass: FramePass) -> tuple[FrameInstances, list[np.ndarray]]:
        """The frame's one read of the device: its number of instances K, and the sigmoid
        similarities of the previous frame's instances and of every candidate entry (rows)
        with each of its instance slots (columns), one product, one transfer.

        Returns:
            The frame's K instances, and per block of rows (the previous frame's first, if
            any) its [k_block, K] similarities.
        """
        slots, prev = frame_pass.instances, self._previous
        blocks = ([prev.queries] if prev is not None else []) + [c.queries for c in self._candidates]
        packed = slots.count.to(torch.float32)[None]  # NB: exact, K <= 252
        if blocks:
            columns = frame_pass.key[slots.grids].float()  # [Q, D]: the instance slots' key embeddings
            packed = torch.cat([packed, torch.sigmoid(torch.cat(blocks) @ columns.T).flatten()])
        host = packed.cpu().numpy()
        offsets = np.cumsum([0] + [b.shape[0] for b in blocks])
        count = int(host[0])
        rows = host[1:].reshape(offsets[-1], slots.grids.shape[0])[:, :count]
        return slots.take(count), [rows[a:b] for a, b in zip(offsets[:-1], offsets[1:])]

    def _associate(self, index: int, inst: FrameInstances, similarities: list[np.ndarray]) -> list[int]:
        """Track ids for the instances of frame ``index`` (spec section 6), from the
        similarities of :meth:`_transfer`."""
        prev, candidates, thr = self._previous, self._candidates, self.config.tracking_thr
        tracks: list[int | None] = [None] * inst.count
        taken: set[int] = set()
        if inst.count and (prev is not None or candidates):
            sims = list(similarities)
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
                rows = prev.queries[to_device(lost, self.device, torch.int64)]
                self._candidates.append(Candidate(prev.index, rows, [prev.tracks[r] for r in lost]))
        return tracks

    def _accumulate(self, ids: torch.Tensor, num_tracks: int, score_vecs: torch.Tensor) -> None:
        new = num_tracks - self.num_tracks
        if new > 0:
            self._sums = torch.cat([self._sums, self._sums.new_zeros((new, self._sums.shape[1]))])
            self._counts = torch.cat([self._counts, self._counts.new_zeros(new)])
        self._sums.index_add_(0, ids, score_vecs.double())
        # A frame counts for a track where its category scores do not sum to zero (as official).
        self._counts.index_add_(0, ids, (score_vecs.sum(1) != 0).long())


def segment_video(model_or_engine, frames, output_size: tuple[int, int] | None = None, backend: str = "auto",
                  **options) -> VideoResult:
    """Segments and tracks the instances of a whole video, online, frame by frame.

    Args:
        model_or_engine: a :class:`visolo_fast.VisoloNet` (run with ``backend`` and ``options``: dtype, compile,
            cuda_graphs, see :class:`visolo_fast.Engine`) or an :class:`visolo_fast.Engine`.
        frames: the video, uint8 RGB: a sequence of [H, W, 3] arrays (or tensors), or a
            Tensor[N, H, W, 3].
        output_size: (height, width) of the output masks; default the frames' own size.

    Returns:
        :class:`VideoResult`: ``scores`` (float32 [K]), ``labels`` (int64 [K], 0-based),
        ``masks`` (bool [K, N, H_out, W_out]); K = 0 if nothing was found.
    """
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"segment_video: frames must be [N, H, W, 3] uint8 RGB, got shape {tuple(frames.shape)}")
    elif not isinstance(frames, Sequence):
        raise TypeError(f"segment_video: frames must be a sequence of H x W x 3 uint8 RGB arrays or an [N, H, W, 3] "
                        f"uint8 tensor, got {type(frames).__name__}")
    if len(frames) == 0:
        raise ValueError("segment_video: no frames given")
    tracker = Tracker(model_or_engine, output_size, backend, keep_video=True, **options)
    for frame in frames:
        tracker.step(frame)
    tracker.flush()
    return tracker.video_result()


@torch.no_grad()
def step_many(trackers: Sequence[Tracker], frames: Sequence) -> list[FrameResult]:
    """Steps several streams at once: one frame each, the network run as one batch.

    Each tracker keeps its own memory and tracks; the results are those of
    ``[t.step(f) for t, f in zip(trackers, frames)]`` (up to float rounding: batched
    convolutions may sum in another order). The streams may be at different frames.

    Args:
        trackers: fast-engine trackers of one :class:`visolo_fast.Engine`, each stream once.
        frames: one uint8 RGB [H, W, 3] frame per tracker (their sizes may differ).

    Returns:
        Per tracker, its frame's result.
    """
    trackers, frames = list(trackers), list(frames)
    if len(trackers) != len(frames):
        raise ValueError(f"step_many: need one frame per tracker, got {len(trackers)} trackers and {len(frames)} frames")
    if not trackers:
        return []
    if len({id(t) for t in trackers}) != len(trackers):
        raise ValueError("step_many: a tracker appears twice; step a stream once per call")
    engine = trackers[0].engine if isinstance(trackers[0], Tracker) else None
    for i, t in enumerate(trackers):
        if not isinstance(t, Tracker) or not t.engine.batched:
            raise ValueError(f"step_many: trackers[{i}] must be a fast-engine Tracker (backend other than 'reference')")
        if t.engine is not engine:
            raise ValueError(f"step_many: trackers[{i}] has another engine than trackers[0]; make the trackers of "
                             f"one engine: engine = visolo_fast.Engine(model, ...), then visolo_fast.Tracker(engine)")
    images = torch.cat([t.prepare(f, f"step_many: trackers[{i}]") for i, (t, f) in enumerate(zip(trackers, frames))])
    passes = engine.run([t.stream for t in trackers], images)
    return [t.finish(p, tuple(f.shape[:2])) for t, p, f in zip(trackers, passes, frames)]
