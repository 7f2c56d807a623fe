"""The frame function as an AOTInductor package (visolo_fast.engine.package): exported once
per module (about 30 s each), run through Engine.from_package, frame by frame against the
eager fast engine on whole videos with new, lost and re-identified tracks; its refusals; the
CLI's export and --package."""

import json
import os

import pytest
import torch

import visolo_fast as vf
from tests.engine.lively import lively_net, track_events
from visolo_fast.cli import main
from visolo_fast.engine import package
from visolo_fast.engine.package import PackageError, export_package
from visolo_fast.sample import sample_frames

H, W = 72, 128


@pytest.fixture(scope="module")
def frames():
    return sample_frames(16, H, W)


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """Official quirks on, the memory capped at 4 frames (the cap is the package's dynamic
    dimension's bound): seed 4 loses and re-identifies tracks in these 16 frames."""
    net = lively_net(4, max_memory_frames=4)
    return net, export_package(net, tmp_path_factory.mktemp("package") / "capped.pt2")


@pytest.fixture(scope="module")
def unbounded(tmp_path_factory):
    """Official quirks off, the official unbounded memory, through the CLI: a checkpoint saved
    with its config, then `python -m visolo_fast export --weights`."""
    folder = tmp_path_factory.mktemp("package")
    net = lively_net(1, official_quirks=False)
    vf.save_model(net, folder / "quirks-off.pth")
    path = folder / "quirks-off.pt2"
    assert main(["export", "--weights", str(folder / "quirks-off.pth"), "--out", str(path)]) == 0
    return net, str(path)


def assert_same_frames(expected: list[vf.FrameResult], got: list[vf.FrameResult]):
    """Frame by frame: the same instances with the same tracks and labels; scores and masks up
    to the rounding of inductor's fused, frozen code (FrozenBN folded into the convolutions)."""
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert g.index == e.index
        assert g.track_ids.tolist() == e.track_ids.tolist(), f"frame {e.index}"
        assert g.labels.tolist() == e.labels.tolist(), f"frame {e.index}"
        torch.testing.assert_close(g.scores, e.scores, rtol=0, atol=1e-4)
        assert g.masks.shape == e.masks.shape and (g.masks ^ e.masks).sum() <= max(4, e.masks.sum() // 1000)
        assert g.ended.track_ids.tolist() == e.ended.track_ids.tolist()
        torch.testing.assert_close(g.ended.scores, e.ended.scores, rtol=0, atol=1e-4)


def run(model_or_engine, frames) -> tuple[vf.Tracker, list[vf.FrameResult]]:
    tracker = vf.Tracker(model_or_engine)
    return tracker, [tracker.step(f) for f in frames]


@pytest.mark.parametrize("which", ["capped", "unbounded"])
def test_package_gives_the_fast_engines_frames(which, frames, request):
    net, path = request.getfixturevalue(which)
    engine = vf.Engine.from_package(path)
    assert engine.config == net.config and engine.batched and engine.net is None
    eager, expected = run(net, frames)
    packaged, got = run(engine, frames)
    assert_same_frames(expected, got)
    happened = track_events(expected)
    assert happened["new"] >= 2 and happened["returned"] >= 2, happened  # the video tests what it claims to
    assert packaged.memory_frames == eager.memory_frames
    assert len(packaged.memory_frames) == (4 if which == "capped" else 5)  # 16 frames: 0, 5, 10, 14, 15


def test_package_with_the_trackers_settings_changed(capped, frames):
    """tracking_thr, max_lost_frames and a smaller memory cap apply outside the package."""
    net, path = capped
    changes = {"max_memory_frames": 3, "max_lost_frames": 1, "tracking_thr": 0.3}
    engine = vf.Engine.from_package(path, **changes)
    net.config, saved = vf.VisoloConfig.from_dict({**net.config.to_dict(), **changes}), net.config
    try:
        _, expected = run(net, frames)
    finally:
        net.config = saved
    _, got = run(engine, frames)
    assert sum(r.ended.track_ids.numel() for r in expected) >= 1  # tracks ended by max_lost_frames
    assert_same_frames(expected, got)


def test_package_segment_video_and_step_many(capped, frames):
    net, path = capped
    engine = vf.Engine.from_package(path)
    video, expected = vf.segment_video(engine, frames[:8]), vf.segment_video(net, frames[:8])
    assert torch.equal(video.labels, expected.labels) and torch.equal(video.masks, expected.masks)
    torch.testing.assert_close(video.scores, expected.scores, rtol=0, atol=1e-4)
    # Two streams, the second starting later: batched as each alone (the package runs one at a time).
    a, b = vf.Tracker(engine), vf.Tracker(engine)
    alone = [vf.Tracker(engine) for _ in range(2)]
    for t in range(6):
        pairs = [(a, alone[0], frames[t])] + ([(b, alone[1], frames[t - 2][:, ::-1].copy())] if t >= 2 else [])
        results = vf.step_many([p[0] for p in pairs], [p[2] for p in pairs])
        for (_, single, frame), result in zip(pairs, results):
            assert_same_frames([single.step(frame)], [result])


def test_package_refusals(capped, tmp_path, monkeypatch):
    net, path = capped
    with pytest.raises(ValueError, match=r"dtype must be one of \['float32', 'float16', 'bfloat16'\], got torch.float64"):
        export_package(net, tmp_path / "f64.pt2", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"path must end with .pt2 \(AOTInductor's packages\), got '.*model.bin'"):
        export_package(net, tmp_path / "model.bin")
    with pytest.raises(PackageError, match=r"not built for score_thr=0.2 \(built with 0.1\)"):
        vf.Engine.from_package(path, score_thr=0.2)
    with pytest.raises(PackageError, match=r"not built for max_memory_frames=None \(built with 4\)"):
        vf.Engine.from_package(path, max_memory_frames=None)
    with pytest.raises(PackageError, match=r"not built for max_memory_frames=5 \(built with 4\)"):
        vf.Engine.from_package(path, max_memory_frames=5)
    with pytest.raises(PackageError, match=r"unknown config fields \['tracking'\]"):
        vf.Engine.from_package(path, tracking=0.2)
    # The C++ tracker's rule (tests/cpp/tracker_parity.py): the similarities are sigmoids.
    for thr in (float("nan"), -1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^VisoloConfig: tracking_thr must be a number in \[0, 1\] \(the "
                                             rf"similarities are sigmoids\), got {thr!r}$"):
            vf.Engine.from_package(path, tracking_thr=thr)
    assert vf.Engine.from_package(path, tracking_thr=1).config.tracking_thr == 1
    with pytest.raises(PackageError, match="no such package file"):
        vf.Engine.from_package(tmp_path / "missing.pt2")
    (tmp_path / "folder.pt2").mkdir()
    with pytest.raises(PackageError, match=r"/folder.pt2: a folder, not a package file; give the .pt2 file"):
        vf.Engine.from_package(tmp_path / "folder.pt2")
    (tmp_path / "text.pt2").write_text("not a package")
    with pytest.raises(PackageError, match="text.pt2: not a loadable AOTInductor package"):
        vf.Engine.from_package(tmp_path / "text.pt2")
    # A CPU without the package's vector instructions (it would stop at an illegal instruction).
    with monkeypatch.context() as m:
        m.setattr("torch._inductor.cpu_vec_isa.x86_isa_checker", lambda: [])
        m.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        with pytest.raises(PackageError, match=r"capped.pt2: compiled for AVX.*, and this CPU lacks AVX.* \(it has "
                                               r"neither AVX2 nor AVX-512\): export the package on a machine like"):
            vf.Engine.from_package(path)
    monkeypatch.setattr(package, "FORMAT", "2")
    with pytest.raises(PackageError, match=r"package format '1', this visolo_fast runs format '2'") as err:
        vf.Engine.from_package(path)
    assert "\n" not in str(err.value)


def test_cli_runs_a_package(unbounded, tmp_path, capsys):
    net, path = unbounded
    out = tmp_path / "out"
    assert main(["demo", "--package", path, "--frames", "3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    expected = vf.segment_video(net, sample_frames(3))
    assert [r["category_id"] for r in results] == (expected.labels + 1).tolist()
    assert "package: " in capsys.readouterr().out
    assert main(["demo", "--package", path, "--dtype", "bfloat16", "--out", str(out)]) == 2
    assert "--dtype bfloat16: a --package holds its weights" in capsys.readouterr().err
    assert main(["demo", "--package", str(tmp_path / "none.pt2"), "--out", str(out)]) == 2
    assert "--package " in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path), "--max-memory-frames", "4"]) == 2
    assert "is a folder; give the package's file name" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "visolo.bin")]) == 2
    assert "a package's file name ends with .pt2" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "visolo.bin")


def test_cli_package_options(capped, tmp_path, capsys):
    """With --package: the live default memory cap within the package's; the output checks still run."""
    from visolo_fast.cli import _load_net, _parser

    _, path = capped  # built with max_memory_frames=4
    args = _parser().parse_args(["segment", "camera", "--package", path])
    engine = _load_net(args, torch.device("cpu"), None, {"max_memory_frames": 10, "max_lost_frames": 30})
    assert engine.config.max_memory_frames == 4 and engine.config.max_lost_frames == 30
    (tmp_path / "out" / "masks").mkdir(parents=True)
    (tmp_path / "out" / "masks" / "000000.png").write_bytes(b"someone else's")
    assert main(["demo", "--package", path, "--out", str(tmp_path / "out"), "--save-masks"]) == 2
    assert "--save-masks: " in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the CUDA package is exported and run on a GPU")
def test_cuda_package(frames, tmp_path):
    """A CUDA package (the ops' fastest GPU backends: CUDA kernels through the dispatcher,
    Triton kernels compiled into it) against the eager fast engine on the GPU."""
    net = lively_net(4, max_memory_frames=4).cuda()
    engine = vf.Engine.from_package(export_package(net, tmp_path / "cuda.pt2"))
    assert engine.device.type == "cuda"
    _, expected = run(net, frames[:8])
    _, got = run(engine, frames[:8])
    assert sum(r.track_ids.numel() for r in expected) >= 8
    assert_same_frames(expected, got)


def test_bfloat16_package_within_the_error_budget(frames, tmp_path):
    """A bfloat16 package: its network outputs (a first frame's query and key embeddings,
    before any decision) are as far from float32 as the eager bfloat16 engine's, within twice
    that error plus a small atol; and it tracks a video (its decisions near a threshold may
    differ from the eager bfloat16 engine's: they round differently)."""
    net = lively_net(4, max_memory_frames=4)
    engine = vf.Engine.from_package(export_package(net, tmp_path / "bf16.pt2", dtype=torch.bfloat16))
    assert engine.runner.dtype == torch.bfloat16
    image = vf.preprocess(frames[0], size=net.config.input_size)

    def first_pass(e: vf.Engine):
        return e.run([e.new_stream()], image)[0]

    ref, eager, got = first_pass(vf.Engine(net)), first_pass(vf.Engine(net, dtype=torch.bfloat16)), first_pass(engine)
    assert got.query.dtype == got.key.dtype == torch.bfloat16
    for name in ("query", "key"):
        budget = (getattr(eager, name).float() - getattr(ref, name)).abs().max()
        error = (getattr(got, name).float() - getattr(ref, name)).abs().max()
        assert error <= 2 * budget + 1e-3, (name, error, budget)
    _, results = run(engine, frames[:6])
    assert [r.index for r in results] == list(range(6)) and sum(r.track_ids.numel() for r in results) >= 6
