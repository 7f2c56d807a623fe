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

The C++ tracker mirrors these rules in cpp/src/tracker.cpp (visolo::Tracker, over a
package): a change here is made there too (tests/cpp/tracker_parity.py compares the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from visolo_fast.engine.association import Candidate, CandidateRows, match_candidate_rows, match_previous
from visolo_fast.engine.instances import FrameInstances
from visolo_fast.engine.engine import Engine, FramePass
from visolo_fast.engine.stages import stage
from visolo_fast.io.ytvis import to_ytvis
from visolo_fast.ops import resize_masks
from visolo_fast.preprocess import preprocess
from visolo_fast.transfer import to_device


class TrackSummary(NamedTuple):
    """Tracks with their category and their span, in order of track id: those that ended
    with a frame (:attr:`FrameResult.ended`) or those still open (:meth:`Tracker.open_tracks`)."""

    track_ids: torch.Tensor  # int64 [E]
    labels: torch.Tensor  # int64 [E], 0-based: the track's category (spec section 7: its frames' averaged scores' best)
    scores: torch.Tensor  # float32 [E]: that category's averaged score
    first_frames: torch.Tensor  # int64 [E]: the frame the track was first seen in
    last_frames: torch.Tensor  # int64 [E]: the frame the track was last seen in


def _no_tracks(device) -> TrackSummary:
    return TrackSummary(*(torch.zeros(0, dtype=dtype, device=device)
                          for dtype in (torch.int64, torch.int64, torch.float32, torch.int64, torch.int64)))


class FrameResult(NamedTuple):
    """One frame's tracked instances, best score first, at the output size."""

    index: int  # the frame's index in the video
    track_ids: torch.Tensor  # int64 [K_t]: the track of each instance (0, 1, ... in order of appearance)
    masks: torch.Tensor  # bool [K_t, H, W]
    labels: torch.Tensor  # int64 [K_t], 0-based: this frame's label of each instance
    scores: torch.Tensor  # float32 [K_t]: this frame's score of each instance
    # The tracks that ended with this frame: lost for more than VisoloConfig.max_lost_frames
    # frames (never, with None), each reported once, with its final category and span.
    ended: TrackSummary = _no_tracks("cpu")


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
    caps it), per open track a running sum of its category scores, and per lost instance not
    re-identified yet (a candidate) its query embedding (dim / 2 floats), unless
    ``VisoloConfig.max_lost_frames`` ends the tracks lost for longer: then a track that ends
    leaves 12 bytes (its final score and label, for :meth:`track_categories`), and the
    per-frame work and the rest of the state stay bounded however long the stream runs.
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
        self._lost = CandidateRows(self.device)  # the candidates (spec section 6)
        # Per open track (seen in the previous frame, or a candidate), a slot: its running sum
        # of category scores and count of frames on the device, its first and last frames on
        # the host. A track that ends frees its slot (zeroed) for a new one; the slots grow by
        # doubling.
        self._slots: dict[int, int] = {}
        self._free: list[int] = []
        self._used = 0  # slots ever handed out
        self._sums = torch.zeros((0, self.config.num_classes), dtype=torch.float64, device=self.device)
        self._counts = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._first, self._last = np.zeros(0, np.int64), np.zeros(0, np.int64)
        # The ended tracks' final categories, by track id (grown by doubling as tracks end).
        self._final_scores = torch.zeros(0, dtype=torch.float32, device=self.device)
        self._final_labels = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._num_tracks = 0
        self._no_tracks = _no_tracks(self.device)
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
        """Tracks started so far, ended ones included."""
        return self._num_tracks

    @property
    def _candidates(self) -> list[Candidate]:
        """The candidate entries, oldest first (for inspection)."""
        return self._lost.entries()

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
        similarity rows, in one transfer; everything else stays on the device. The work is
        the same whatever the stream's age when ``VisoloConfig.max_lost_frames`` is set.

        Args:
            frame_pass: the frame's device work (:meth:`visolo_fast.Engine.run`).
            size: the frame's (height, width), the masks' size unless ``output_size`` was given.
        """
        index, cfg = self._num_frames, self.config
        self._frame_size = size
        with self.engine.precision():
            with stage("association"):
                inst, previous, candidates = self._transfer(frame_pass)
                tracks, taken, reidentified = self._associate(inst, previous, candidates)
                ids, slots, ended = self._update(index, tracks, taken, reidentified)
            # NB: float32 for the decisions, whatever the network's dtype.
            self._previous = None if inst.count == 0 else _Previous(index, tracks, frame_pass.query[inst.grids].float())
            self._sums.index_add_(0, slots, inst.score_vecs.double())
            # A frame counts for a track where its category scores do not sum to zero (as official).
            self._counts.index_add_(0, slots, (inst.score_vecs.sum(1) != 0).long())
            with stage("masks"):
                masks = resize_masks(inst.masks, self.output_size or size, cfg.mask_thr, self.backend)
        result = FrameResult(index, ids, masks, inst.labels, inst.scores.float(), ended)
        if self._kept is not None:
            self._kept.append(result)
        self._num_frames += 1
        return result

    def flush(self) -> None:
        """Ends the stream: every frame's result was returned by its :meth:`step`; after this,
        :meth:`step` refuses more frames. It reports nothing more: the tracks that had not
        ended stay open (:meth:`open_tracks`)."""
        self._flushed = True

    def open_tracks(self) -> TrackSummary:
        """The tracks that have not ended (with ``VisoloConfig.max_lost_frames=None``, every
        track): those seen in the last frame and the candidates, with their category and
        span so far. At the end of a stream (before or after :meth:`flush`), what
        :attr:`FrameResult.ended` never reported."""
        ids = np.array(sorted(self._slots), np.int64)
        slots = np.array([self._slots[t] for t in ids.tolist()], np.int64)
        host = np.concatenate([ids, slots, self._first[slots], self._last[slots]])
        packed = to_device(host, self.device, torch.int64)
        return self._summary(*packed.view(4, ids.size))

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
        """Each track's (score, label) so far, by track id, ended tracks included: its category
        scores averaged over the frames it is in, then the best category (spec section 7)."""
        n = self._num_tracks
        scores = torch.zeros(n, dtype=torch.float32, device=self.device)
        labels = torch.zeros(n, dtype=torch.int64, device=self.device)
        ended = min(n, self._final_scores.shape[0])
        scores[:ended], labels[:ended] = self._final_scores[:ended], self._final_labels[:ended]
        if self._slots:
            ids, slots = to_device([*self._slots, *self._slots.values()], self.device, torch.int64).view(2, -1)
            scores[ids], labels[ids] = self._categories(slots)
        return scores, labels

    def _categories(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 scores, int64 labels) of the tracks in ``slots``."""
        average = self._sums[slots] / self._counts[slots][:, None]
        scores, labels = average.max(dim=1)
        return scores.float(), labels

    def _summary(self, ids, slots, first, last) -> TrackSummary:
        """The tracks ``ids`` (int64 tensors on the device: their slots, first and last frames)."""
        scores, labels = self._categories(slots)
        return TrackSummary(ids, labels, scores, first, last)

    def _transfer(self, frame_pass: FramePass) -> tuple[FrameInstances, np.ndarray, np.ndarray]:
        """The frame's one read of the device: its number of instances K, and the sigmoid
        similarities of the previous frame's instances and of every candidate row (rows)
        with each of its instance slots (columns), one product, one transfer.

        Returns:
            The frame's K instances, the previous frame's instances' [k_prev, K]
            similarities (k_prev = 0 without one), the candidate rows' [n, K].
        """
        slots, prev, lost = frame_pass.instances, self._previous, self._lost
        blocks = ([prev.queries] if prev is not None else []) + ([lost.queries()] if len(lost) else [])
        packed = slots.count.to(torch.float32)[None]  # NB: exact, K <= 252
        if blocks:
            columns = frame_pass.key[slots.grids].float()  # [Q, D]: the instance slots' key embeddings
            packed = torch.cat([packed, torch.sigmoid(torch.cat(blocks) @ columns.T).flatten()])
        host = packed.cpu().numpy()
        count, k_prev = int(host[0]), 0 if prev is None else len(prev.tracks)
        rows = host[1:].reshape(k_prev + len(lost), slots.grids.shape[0])[:, :count]
        return slots.take(count), rows[:k_prev], rows[k_prev:]

    def _associate(self, inst: FrameInstances, previous: np.ndarray,
                   candidates: np.ndarray) -> tuple[list[int], set[int], np.ndarray]:
        """Track ids for the frame's instances (spec section 6), from the similarities of
        :meth:`_transfer`; the tracker is not changed.

        Returns:
            Per instance its track id (new tracks numbered on), the previous frame's
            instances taken, the candidate rows taken (ascending).
        """
        prev, thr = self._previous, self.config.tracking_thr
        tracks: list[int | None] = [None] * inst.count
        taken: set[int] = set()
        reidentified = np.zeros(0, np.int64)
        if inst.count:
            if prev is not None:
                rows = match_previous(previous, thr)
                tracks = [None if r is None else prev.tracks[r] for r in rows]
                taken = {r for r in rows if r is not None}
            if len(self._lost):
                reidentified = match_candidate_rows(candidates, self._lost.frames, self._lost.tracks, tracks, thr)
        new_track = self._num_tracks
        for i, track in enumerate(tracks):
            if track is None:
                tracks[i], new_track = new_track, new_track + 1
        return tracks, taken, reidentified

    def _update(self, index: int, tracks: list[int], taken: set[int],
                reidentified: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, TrackSummary]:
        """Frame ``index``'s decisions made: the candidates updated (the re-identified rows
        out, the previous frame's instances no current one took in as a new entry, those lost
        for more than ``max_lost_frames`` out), the tracks that ended finalised, slots for the
        new tracks. Host values reach the device in one copy.

        Returns:
            The frame's track ids and their slots (int64 [K] each, on the device), and the
            tracks that ended.
        """
        prev, lost, limit = self._previous, self._lost, self.config.max_lost_frames
        lost.remove(reidentified)
        missing = [] if prev is None else [r for r in range(len(prev.tracks)) if r not in taken]
        gone, last = lost.expire(index - limit) if limit is not None else (np.zeros(0, np.int64),) * 2
        order = np.argsort(gone, kind="stable")
        gone, last = gone[order], last[order]
        gone_slots = np.array([self._slots.pop(int(t)) for t in gone], np.int64)
        first = self._first[gone_slots]  # NB: before a new track takes a freed slot
        self._free += gone_slots.tolist()
        for track in tracks:
            if track not in self._slots:
                self._slots[track] = self._free.pop() if self._free else self._new_slot()
                self._first[self._slots[track]] = index
        self._num_tracks = max(self._num_tracks, max(tracks, default=-1) + 1)
        slots = np.array([self._slots[t] for t in tracks], np.int64)
        self._last[slots] = index
        host = np.concatenate([np.array(tracks, np.int64), slots, np.array(missing, np.int64), gone, gone_slots, first,
                               last])
        packed = to_device(host, self.device, torch.int64)
        k, m, e = len(tracks), len(missing), gone.size
        if m:
            lost.append(prev.index, prev.queries[packed[2 * k:2 * k + m]], [prev.tracks[r] for r in missing])
        if not e:
            return packed[:k], packed[k:2 * k], self._no_tracks
        # The tracks lost for more than max_lost_frames: their categories, then their slots zeroed for reuse.
        ended = self._summary(*packed[2 * k + m:].view(4, e))
        self._keep_finals(int(gone[-1]), ended)
        freed = packed[2 * k + m + e:2 * k + m + 2 * e]
        self._sums.index_fill_(0, freed, 0)
        self._counts.index_fill_(0, freed, 0)
        return packed[:k], packed[k:2 * k], ended

    def _new_slot(self) -> int:
        """A slot never used (zeroed), the slots grown by doubling if they are all in use."""
        slot, self._used = self._used, self._used + 1
        capacity = self._counts.shape[0]
        if slot >= capacity:
            capacity = max(2 * capacity, 8)
            self._sums = torch.cat([self._sums, self._sums.new_zeros((capacity - slot, self._sums.shape[1]))])
            self._counts = torch.cat([self._counts, self._counts.new_zeros(capacity - slot)])
            self._first = np.concatenate([self._first, np.zeros(capacity - slot, np.int64)])
            self._last = np.concatenate([self._last, np.zeros(capacity - slot, np.int64)])
        return slot

    def _keep_finals(self, largest: int, ended: TrackSummary) -> None:
        """Keeps the ended tracks' categories for :meth:`track_categories`."""
        capacity = self._final_scores.shape[0]
        if largest >= capacity:
            grow = max(2 * capacity, int(largest) + 1, 8) - capacity
            self._final_scores = torch.cat([self._final_scores, self._final_scores.new_zeros(grow)])
            self._final_labels = torch.cat([self._final_labels, self._final_labels.new_zeros(grow)])
        self._final_scores[ended.track_ids] = ended.scores
        self._final_labels[ended.track_ids] = ended.labels


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
