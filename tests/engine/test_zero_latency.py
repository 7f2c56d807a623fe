"""Zero latency: ``Tracker.step(frame t)`` returns frame t's final result, and every frame's
result is exactly what the one-frame-late engine it replaces gave for that frame.

The one-frame-late engine's results were recorded at commit d8a294a by
``tests/data/make_engine_golden.py`` (both engines; official quirks on and off, linear
NMS, the memory cap, an output size, two streams stepped together); that script runs
unchanged on this engine and must give the same values.
"""

from pathlib import Path

import numpy as np
import pytest

from tests.data import make_engine_golden as golden

GOLDEN = Path(__file__).parent.parent / "data" / "engine-golden-d8a294a.npz"


@pytest.fixture(scope="module")
def recorded():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def frames():
    return golden.sample_frames(golden.FRAMES, golden.H, golden.W)


# The recording CPU's convolutions (oneDNN picks its kernels by instruction set: AVX2,
# AVX-512, AMX) round differently from another CPU's: measured on an AMD EPYC with AVX-512 and
# BF16 against the recording, every decision (instances, tracks, labels) equal, scores within 1.7e-4 (a few
# float32 ulps of the network's outputs, grown through the score products) and at most 3 mask
# pixels in 10,000 differing (pixels at the 0.5 threshold).
SCORE_ATOL = 5e-4
MASK_PIXELS = 1e-3  # the largest share of mask pixels that may differ


def assert_same(name: str, results: list, recorded) -> None:
    """Each frame's result is the recorded one: instances, tracks and labels exactly; scores
    and masks to the rounding of the CPU's convolutions (see SCORE_ATOL)."""
    mine: dict = {}
    golden.flatten(name, results, mine)
    assert mine[f"{name}/index"].tolist() == recorded[f"{name}/index"].tolist()
    assert mine[f"{name}/count"].tolist() == recorded[f"{name}/count"].tolist(), "instances per frame"
    for field in ("track_ids", "labels", "mask_shape"):
        np.testing.assert_array_equal(mine[f"{name}/{field}"], recorded[f"{name}/{field}"], err_msg=f"{name}: {field}")
    a, b = np.unpackbits(mine[f"{name}/masks"]), np.unpackbits(recorded[f"{name}/masks"])
    assert a.shape == b.shape and a.sum() > 0
    assert np.count_nonzero(a != b) <= MASK_PIXELS * max(a.sum(), 1), f"{name}: masks"
    np.testing.assert_allclose(mine[f"{name}/scores"], recorded[f"{name}/scores"], rtol=0, atol=SCORE_ATOL,
                               err_msg=f"{name}: scores")


def run_zero_latency(seed, config, options, backend, frames) -> list:
    """Runs a video checking that each step returns its own frame's result (and flush nothing)."""
    net = golden.lively_net(seed, **config)
    tracker = golden.vf.Tracker(net, backend=backend, **options)
    results = []
    for t, frame in enumerate(frames):
        result = tracker.step(frame)
        assert isinstance(result, golden.vf.FrameResult) and result.index == t
        results.append(result)
    assert tracker.flush() is None
    return results


@pytest.mark.parametrize("engine", golden.ENGINES)
@pytest.mark.parametrize("case", list(golden.CASES))
def test_each_step_returns_its_frame_as_the_one_frame_late_engine_did(case, engine, frames, recorded):
    seed, config, options = golden.CASES[case]
    assert_same(f"{case}/{engine}", run_zero_latency(seed, config, options, engine, frames), recorded)


def test_streams_stepped_together(frames, recorded):
    for i, results in enumerate(golden.run_streams(frames)):
        assert_same(f"streams/{i}", results, recorded)
