"""The fast engine at fixed shapes (``fixed_shapes=True``, the default on a GPU): a frame's
device work with one host synchronisation, traceable as one graph, with the results of
the reference engine (tests/engine/test_fast_engine.py runs its videos at both shapes). Run on
the CPU, counting what would synchronise on a GPU."""

import dataclasses

import pytest
import torch

import visolo_fast as vf
from tests.engine.lively import lively_net
from tests.engine.sync_count import SyncCounter
from tests.engine.test_fast_engine import H, W, assert_same_tracks
from visolo_fast.engine.instances import extract_instances
from visolo_fast.sample import sample_frames


@pytest.fixture(scope="module")
def frames():
    return sample_frames(12, H, W)


def test_one_host_synchronisation_per_frame_per_stream(frames):
    """Whole videos, one stream and two batched: each frame's step makes at most one
    operation that waits for a GPU (the transfer of its instance count and association
    rows), whatever happens in it (no instances, new tracks, lost tracks, candidates)."""
    net = lively_net(4)
    engine = vf.Engine(net, fixed_shapes=True)
    one, a, b = vf.Tracker(engine), vf.Tracker(engine), vf.Tracker(engine)
    per_frame, candidates = [], False
    for t, frame in enumerate(frames):
        with SyncCounter() as single:
            one.step(frame)
        with SyncCounter() as batched:  # two streams at different frames of the video
            vf.step_many([a, b], [frame, frames[(t + 5) % len(frames)]])
        per_frame.append((dict(single.counts), dict(batched.counts)))
        assert single.total <= 1 and batched.total <= 2, per_frame[-1]
        candidates |= bool(one._candidates)
    assert one.num_tracks >= 3 and candidates, "the video exercises new tracks and lost ones"
    # What the default CPU engine makes instead (nonzero of the grids that pass): the faster
    # choice where nothing waits.
    with SyncCounter() as cpu:
        vf.Tracker(net).step(frames[0])
    assert cpu.counts["nonzero"] >= 1


def test_fixed_extraction_equals_the_compact_one():
    """All S grids masked, or the grids that pass only: the same instances, bit for bit."""
    net = lively_net(2)
    for quirks in (True, False):
        cfg = dataclasses.replace(net.config, official_quirks=quirks, score_thr=0.05)
        with torch.no_grad():
            out = net.forward_frame(vf.preprocess(sample_frames(1, H, W)[0], size=cfg.input_size))
        args = (out.mask_features[0], out.kernels[0].flatten(1), out.scores[0].flatten(1), None, cfg, "cpp")
        fixed, compact = extract_instances(*args, fixed=True), extract_instances(*args, fixed=False)
        k = int(compact.count)
        assert int(fixed.count) == k >= 2
        for a, b in zip(fixed.take(k), compact.take(k)):
            assert torch.equal(a, b)


def test_the_whole_frame_traces_as_one_graph(frames):
    """torch.compile(fullgraph=True, dynamic=False) of the whole frame (network, memory
    read at a fixed capacity, grid weight, extraction): no graph break (fullgraph would
    raise), one graph per memory capacity (1, 2, 4 entries in 5 frames) and one for a first frame
    (which reads itself), the eager results."""
    from torch._dynamo.utils import counters

    net = lively_net(4)
    torch._dynamo.reset()
    counters.clear()
    traced = vf.segment_video(net, frames[:5], compile="aot_eager", fixed_shapes=True)
    assert counters["stats"]["unique_graphs"] == 4, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    eager = vf.segment_video(net, frames[:5], fixed_shapes=True)
    assert_same_tracks(eager, traced, score_atol=1e-5, min_iou=1.0)


def test_fixed_shapes_option_checks():
    net = lively_net(4)
    assert not vf.Engine(net).fixed_shapes and vf.Engine(net, fixed_shapes=True).fixed_shapes
    with pytest.raises(ValueError, match="fixed_shapes must be None, True or False, got 'yes'"):
        vf.Engine(net, fixed_shapes="yes")
    with pytest.raises(ValueError, match="reference engine .* fixed shapes"):
        vf.Engine(net, backend="reference", fixed_shapes=True)
