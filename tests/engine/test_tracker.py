"""The whole-video and streaming APIs (spec section 7): they agree with each other, work
for any length >= 1, give an empty result when nothing is found, and the stream's
state stays bounded."""

import dataclasses
import gc

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from tests.engine.lively import lively_net
from tests.engine.scripted import Obj, ScriptedNet, blank_frames
import visolo_fast as vf
from visolo_fast import Tracker, VideoResult
from visolo_fast.engine import frame as frame_module
from visolo_fast.sample import sample_frames

H, W = 72, 128


@pytest.fixture(scope="module")
def net():
    return lively_net(4)


@pytest.fixture(scope="module")
def frames():
    return sample_frames(8, H, W)


@pytest.fixture(scope="module")
def video(net, frames) -> VideoResult:
    return vf.segment_video(net, frames)


def stream(net, frames, **kw):
    tracker = vf.Tracker(net, keep_video=True, **kw)
    results = []
    for t, frame in enumerate(frames):
        got = tracker.step(frame)
        assert got.index == t  # frame t's result, final, from step(frame t)
        results.append(got)
    tracker.flush()
    return tracker, results


def test_video_result_types_and_shapes(video):
    K = len(video)
    assert K >= 3  # the lively net finds several tracks in the sample, some lost and found again
    assert video.scores.dtype == torch.float32 and video.scores.shape == (K,)
    assert video.labels.dtype == torch.int64 and video.labels.shape == (K,)
    assert video.masks.dtype == torch.bool and video.masks.shape == (K, 8, H, W)
    assert video.masks.flatten(1).any(1).all()  # every track has a mask somewhere


def test_streaming_equals_whole_video(net, frames, video):
    tracker, results = stream(net, frames)
    assert [r.index for r in results] == list(range(len(frames)))
    assembled = torch.zeros_like(video.masks)
    for r in results:
        assert r.masks.shape == (r.track_ids.numel(), H, W) and r.masks.dtype == torch.bool
        assert r.labels.shape == r.scores.shape == r.track_ids.shape
        assert torch.all(r.scores[:-1] >= r.scores[1:])  # best first
        assert len(set(r.track_ids.tolist())) == r.track_ids.numel()  # one instance per track per frame
        assembled[r.track_ids, r.index] = r.masks
    assert torch.equal(assembled, video.masks)
    streamed = tracker.video_result()
    for field in ("scores", "labels", "masks"):
        assert torch.equal(getattr(streamed, field), getattr(video, field))


def test_tensor_input_equals_list_input(net, frames, video):
    as_tensor = vf.segment_video(net, torch.from_numpy(np.stack(frames)))
    assert torch.equal(as_tensor.masks, video.masks) and torch.equal(as_tensor.scores, video.scores)


def test_track_category_is_the_official_average(net, frames, video, monkeypatch):
    """The official getAverageCat, in float32 on a tracks x frames x classes tensor, from
    the instances' category vectors: the same labels, scores within float rounding."""
    tracker = vf.Tracker(net)
    seen = []
    real = frame_module.extract_instances

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(frame_module, "extract_instances", spy)
    results = [tracker.step(f) for f in frames]
    per_frame = torch.zeros(len(video), len(frames), net.config.num_classes)
    for inst, r in zip(seen, results):
        per_frame[r.track_ids, r.index] = inst.take(int(inst.count)).score_vecs
    present = torch.count_nonzero(per_frame.sum(2), dim=1)
    scores, labels = (per_frame.sum(1) / present[:, None]).max(1)
    assert torch.equal(labels, video.labels)
    torch.testing.assert_close(video.scores, scores, rtol=1e-6, atol=0)


def test_output_size(net, frames, video):
    small = vf.segment_video(net, frames, output_size=(36, 64))
    assert small.masks.shape == (len(video), 8, 36, 64)
    assert torch.equal(small.labels, video.labels)


@pytest.mark.parametrize("quirks", [True, False])
@pytest.mark.parametrize("n", [1, 2])
def test_short_videos(n, quirks, frames):
    net = lively_net(4, official_quirks=quirks)
    result = vf.segment_video(net, frames[:n])
    assert result.masks.shape[1:] == (n, H, W) and len(result) >= 1
    tracker, results = stream(net, frames[:n])
    assert [r.index for r in results] == list(range(n))
    assert torch.equal(tracker.video_result().masks, result.masks)
    # frame 0's instances (no weight, all new tracks) do not depend on what follows
    longer = vf.segment_video(net, frames[:3])
    k0 = int(result.masks[:, 0].flatten(1).any(1).sum())
    assert k0 >= 1 and torch.equal(longer.masks[:k0, 0], result.masks[:k0, 0])


def test_video_without_detections_is_empty_not_none(frames):
    net = lively_net(4, score_thr=1.0)
    result = vf.segment_video(net, frames[:3])
    assert len(result) == 0
    assert result.scores.shape == (0,) and result.labels.shape == (0,) and result.masks.shape == (0, 3, H, W)
    assert result.to_ytvis(7) == []


def test_ytvis_json_decodes_to_the_masks(video):
    entries = video.to_ytvis(video_id=12)
    assert len(entries) == len(video)
    for k, entry in enumerate(entries):
        assert entry["video_id"] == 12 and entry["category_id"] == int(video.labels[k]) + 1
        assert entry["score"] == pytest.approx(float(video.scores[k]))
        assert len(entry["segmentations"]) == 8
        for t, rle in enumerate(entry["segmentations"]):
            if not video.masks[k, t].any():
                assert rle is None
                continue
            assert isinstance(rle["counts"], str) and rle["size"] == [H, W]
            decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
            assert np.array_equal(decoded.astype(bool), video.masks[k, t].numpy())
    assert any(rle is None for e in entries for rle in e["segmentations"])  # some tracks are absent somewhere
    ids = list(range(100, 140))
    assert [e["category_id"] for e in video.to_ytvis(1, category_ids=ids)] == [ids[int(label)] for label in video.labels]
    with pytest.raises(ValueError, match="category_ids has 2 ids"):
        video.to_ytvis(1, category_ids=[1, 2])


def _tracker_state(tracker: Tracker, memory: bool = False) -> tuple[int, int]:
    """(objects, tensor bytes) reachable from the tracker, minus its engine (the network and
    what is built once for it, shared by every tracker of the engine) and, unless ``memory``,
    the model's memory entries."""
    skip = {id(tracker.engine)} | (set() if memory else {id(tracker.stream.memory)})
    seen, stack, nbytes = set(skip), [tracker], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, torch.nn.Module)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            nbytes += obj.untyped_storage().nbytes()
            continue
        stack.extend(gc.get_referents(obj))
    return len(seen), nbytes


def test_stream_state_stays_bounded_over_300_frames():
    """300 frames of objects that come and go (tracks lost and re-identified, new ones
    appearing): past warm-up, the tracker's state no longer grows but for the memory entries."""
    A = Obj(grid=1, identity=0, box=(0, 0, 4, 4))
    B = Obj(grid=4, identity=1, box=(4, 6, 8, 12))
    C = Obj(grid=2, identity=2, box=(0, 8, 3, 12))
    cycle = [[A, B], [A, B, C], [B, C], [B], [A, B, C], [], [A]]
    n = 300
    net = ScriptedNet([cycle[t % len(cycle)] for t in range(n)])
    tracker = Tracker(net)
    sizes = {}
    for t, frame in enumerate(blank_frames(n)):
        assert tracker.step(frame).masks.shape[1:] == (24, 40)
        if t + 1 in (70, 294):  # the same phase of the 7-frame cycle
            sizes[t + 1] = _tracker_state(tracker)
    tracker.flush()
    assert tracker.num_tracks == 3
    assert sizes[70] == sizes[294], sizes
    assert len(tracker.memory_frames) == 1 + len(range(5, 299 - 1, 5)) + 2  # the model's memory grows as the policy says
    # the probe sees growth where there is some: a tracker that keeps its frame results
    keeping = Tracker(ScriptedNet(net.script), keep_video=True)
    grown = []
    for t, frame in enumerate(blank_frames(15)):
        keeping.step(frame)
        if t + 1 in (7, 14):
            grown.append(_tracker_state(keeping))
    assert grown[1][0] > grown[0][0] and grown[1][1] > grown[0][1]


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_capped_memory_keeps_the_whole_state_bounded(backend):
    """With VisoloConfig(max_memory_frames=N), the model's memory stops growing too: the
    tracker's whole state, memory entries included, is the same at frames 266 and 294
    (both past 256: CPython shares the int objects of smaller frame indices)."""
    A = Obj(grid=1, identity=0, box=(0, 0, 4, 4))
    B = Obj(grid=4, identity=1, box=(4, 6, 8, 12))
    cycle = [[A, B], [A], [B], [A, B], [], [A, B], [B]]
    net = ScriptedNet([cycle[t % len(cycle)] for t in range(300)])
    net.config = dataclasses.replace(net.config, max_memory_frames=5)
    tracker = Tracker(net, backend=backend)
    sizes = {}
    for t, frame in enumerate(blank_frames(300)):
        tracker.step(frame)
        assert len(tracker.memory_frames) <= 5
        if t + 1 in (266, 294):
            sizes[t + 1] = _tracker_state(tracker, memory=True)
    assert tracker.memory_frames == [0, 290, 295, 298, 299]
    assert sizes[266] == sizes[294], sizes


def test_stream_state_grows_only_by_what_never_comes_back():
    """Objects that leave for good stay candidates and keep their track's running sum
    (as the official code, VisoloConfig.max_lost_frames=None): the state grows by that much
    per departed object, in buffers grown by doubling (at most twice what they hold)."""
    A = Obj(grid=1, identity=0, box=(0, 0, 4, 4))
    n, period = 287, 7

    def frame(t):  # A always; a new object every 7 frames, seen for one frame only
        return [A, Obj(grid=3, identity=1 + t // period, box=(4, 6, 8, 12))] if t % period == 3 else [A]

    tracker = Tracker(ScriptedNet([frame(t) for t in range(n)]))
    sizes = []
    for t, f in enumerate(blank_frames(n)):
        tracker.step(f)
        if t + 1 in (140, 210, 280):
            sizes.append(_tracker_state(tracker))
    assert tracker.num_tracks == 1 + len(range(3, n, period))  # A, and one per visitor
    assert len(tracker._candidates) == len(range(3, n - 1, period))  # every visitor seen before the last frame is lost for good
    per_visitor = 8 * (4 + 1) + 4 * 65 + 2 * 8  # its running sum and count, its query embedding, frame and track
    bytes_140, bytes_280 = sizes[0][1], sizes[2][1]
    assert 0 < bytes_280 - bytes_140 <= 2 * 20 * per_visitor, sizes  # 20 visitors between frames 140 and 280
    # Python objects: none per visitor (its track and slot are dict entries of small ints)
    assert all(b[0] - a[0] <= 20 for a, b in zip(sizes, sizes[1:])), sizes


def test_bad_input(net, frames):
    for size in [(0, 5), 5, ("a", "b"), (2.5, 3)]:
        with pytest.raises(ValueError, match="output_size must be"):
            vf.Tracker(net, output_size=size)
    with pytest.raises(ValueError, match=r"frame must be one \[H, W, 3\] uint8 RGB array or tensor, got shape \(1, 72, 128, 3\)"):
        vf.Tracker(net).step(np.stack(frames[:1]))
    with pytest.raises(ValueError, match="backend must be one of"):
        vf.Tracker(net, backend="gpu")
    with pytest.raises(ValueError, match="no frames"):
        vf.segment_video(net, [])
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        vf.segment_video(net, torch.zeros((4, 8, 8), dtype=torch.uint8))
    tracker = vf.Tracker(net)
    tracker.step(frames[0])
    with pytest.raises(ValueError, match="frame 1 is 36 x 64, the video's frames are 72 x 128"):
        tracker.step(frames[1][::2, ::2])
    with pytest.raises(RuntimeError, match="keep_video=True"):
        tracker.video_result()
    tracker = vf.Tracker(net, keep_video=True)
    with pytest.raises(RuntimeError, match="no frame yet"):
        tracker.video_result()
    tracker.step(frames[0])
    assert tracker.video_result().masks.shape[1] == 1  # the video so far
    assert tracker.flush() is None and tracker.flush() is None  # nothing is left to return
    with pytest.raises(RuntimeError, match="flushed"):
        tracker.step(frames[1])


def test_a_refused_first_frame_leaves_the_tracker_as_it_was(net, frames):
    """A first frame that preprocess() refuses does not fix the video's frame size."""
    tracker = vf.Tracker(net)
    with pytest.raises((TypeError, ValueError)):
        tracker.step(frames[0][::2, ::2].astype(np.float32))
    tracker.step(frames[0])  # 72 x 128, not the refused frame's 36 x 64
    assert tracker.num_frames == 1
    engine = vf.Engine(net)
    a, b = vf.Tracker(engine), vf.Tracker(engine)
    with pytest.raises((TypeError, ValueError), match=r"step_many: trackers\[1\]: frame must be"):
        vf.step_many([a, b], [frames[0][::2, ::2], frames[0][..., :2]])
    a.step(frames[0])  # the batch was refused as a whole: trackers[0] took no size either
