"""The fast engine (backend="auto", the default) against the reference engine on whole
videos, and its parts: cached keys and values, the shared runner, reduced precision,
torch.compile, CUDA graphs, several streams in one batch, stage timers."""

import copy

import pytest
import torch

import visolo_fast as vf
from tests.conftest import TRITON_DEVICE, require_backend
from tests.engine.lively import lively_net
from visolo_fast.engine.runner import NetworkRunner
from visolo_fast.sample import sample_frames

H, W = 72, 128


def video_of(net, frames, **kw) -> vf.VideoResult:
    return vf.segment_video(net, frames, **kw)


def assert_same_tracks(ref: vf.VideoResult, got: vf.VideoResult, score_atol=1e-4, min_iou=0.999):
    """The issue's parity criterion: same tracks, same labels, scores within score_atol,
    per-track spatio-temporal mask IoU >= min_iou."""
    assert len(got) == len(ref), f"{len(got)} tracks, the reference has {len(ref)}"
    assert torch.equal(got.labels.cpu(), ref.labels.cpu())
    torch.testing.assert_close(got.scores.cpu(), ref.scores.cpu(), rtol=0, atol=score_atol)
    a, b = got.masks.cpu().flatten(1), ref.masks.cpu().flatten(1)
    iou = (a & b).sum(1).double() / (a | b).sum(1).double().clamp(min=1)
    assert (iou >= min_iou).all(), iou


@pytest.fixture(scope="module")
def frames():
    return sample_frames(12, H, W)


@pytest.fixture(scope="module")
def reference_videos(frames):
    """The reference engine's video of each (seed, config) case, made once for both shapes."""
    videos = {}

    def video(seed, config):
        key = (seed, tuple(sorted(config.items())))
        if key not in videos:
            videos[key] = video_of(lively_net(seed, **config), frames, backend="reference")
        return videos[key]

    return video


@pytest.mark.parametrize("fixed_shapes", [False, True], ids=["variable-shapes", "fixed-shapes"])
@pytest.mark.parametrize("seed,config", [(1, {}), (2, {}), (4, {}), (4, {"nms_kernel": "linear"}),
                                         (2, {"official_quirks": False}), (4, {"max_memory_frames": 3})], ids=str)
def test_fast_engine_matches_the_reference_engine(seed, config, fixed_shapes, frames, reference_videos):
    """The fast engine (backend="auto": the cpp ops) at variable shapes (the CPU's default)
    and at fixed shapes (a GPU's: the whole frame at a memory capacity, instances at fixed
    sizes) against the reference engine, on whole videos."""
    ref = reference_videos(seed, config)
    assert len(ref) >= 1
    assert_same_tracks(ref, video_of(lively_net(seed, **config), frames, fixed_shapes=fixed_shapes))


def test_fast_engine_with_triton_ops(frames):
    """The fast engine with the Triton kernels (interpreted on the CPU here)."""
    require_backend("triton", TRITON_DEVICE)
    net = lively_net(4).to(TRITON_DEVICE)
    ref = video_of(lively_net(4), frames[:3], backend="reference")
    assert_same_tracks(ref, video_of(net, frames[:3], backend="triton"))


def test_the_default_is_the_fast_engine():
    net = lively_net(4)
    assert vf.Engine(net).batched and vf.Engine(net, backend="cpp").batched
    assert vf.Tracker(net).engine.runner is not None and vf.Tracker(net, backend="reference").engine.runner is None


def test_each_frame_is_encoded_once(frames, monkeypatch):
    """Keys and values of a stored frame are computed once: the fast engine runs the tracking
    and memory convolutions on the new frame only, never on the memory's frames."""
    net = copy.deepcopy(lively_net(4))
    calls = {"embeddings": 0, "values": 0, "query": 0, "reference": 0, "forward_frame": 0}

    def count(obj, name):
        real = getattr(obj, name)

        def counted(*a, **k):
            calls[name] += 1
            return real(*a, **k)

        monkeypatch.setattr(obj, name, counted)

    for obj, name in ((net.Tracking_branch, "embeddings"), (net.Memory_module, "values"),
                      (net.Tracking_branch, "query"), (net.Tracking_branch, "reference"), (net, "forward_frame")):
        count(obj, name)
    engine = vf.Engine(net)
    engine.runner = NetworkRunner(net, torch.float32, "auto", False, False, channels_last=False)  # this net's own (patched) modules
    tracker = vf.Tracker(engine)
    for frame in frames:
        tracker.step(frame)
    tracker.flush()
    n = len(frames)
    assert len(tracker.memory_frames) >= 4  # frames read 1 .. 4 stored frames
    assert calls == {"embeddings": n, "values": n, "query": 0, "reference": 0, "forward_frame": 0}


def encode(runner: NetworkRunner, x: torch.Tensor):
    """The runner's network on x, as the frame function runs it: (Encoded, memory values)."""
    images = x.to(dtype=runner.dtype, memory_format=runner.memory_format)
    enc = runner.net.encode(images)
    return enc, runner.net.memory_values(enc.cat_f, enc.kernel_f)


def test_channels_last_changes_nothing_but_rounding():
    net = lively_net(4)
    x = vf.preprocess(sample_frames(2, H, W)[1], size=net.config.input_size)
    with torch.no_grad():
        a = encode(NetworkRunner(net, torch.float32, "auto", False, False, channels_last=False), x)
        b = encode(NetworkRunner(net, torch.float32, "auto", False, False, channels_last=True), x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype,budget", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_reduced_precision_network(dtype, budget):
    """The network in float16 / bfloat16 stays within a relative error of its unit roundoff's
    order (bf16: 2^-8, fp16: 2^-11, over ~80 layers) of float32; its outputs go to the decisions
    as float32."""
    net = lively_net(4)
    x = vf.preprocess(sample_frames(1, H, W)[0], size=net.config.input_size)
    with torch.no_grad():
        full_enc, full_values = encode(NetworkRunner(net, torch.float32, "auto", False, False), x)
        low_enc, low_values = encode(NetworkRunner(net, dtype, "auto", False, False), x)
    for name, u, v in zip((*full_enc._fields, "values"), (*full_enc, full_values), (*low_enc, low_values)):
        assert v.dtype == dtype
        error = (v.float() - u).norm() / u.norm()
        assert error < budget, f"{name}: relative error {error:.4f}"


def test_reduced_precision_engine(frames):
    net = lively_net(3)
    tracker = vf.Tracker(net, dtype=torch.bfloat16, keep_video=True)
    results = [tracker.step(f) for f in frames[:6]]
    assert all(r.scores.dtype == torch.float32 and r.masks.dtype == torch.bool for r in results)
    assert all(b.dtype == torch.bfloat16 for b in tracker.stream.memory.buffers.values())
    assert len(tracker.video_result()) >= 1


def test_an_engine_is_shared_by_its_trackers():
    """The runner (converted weights, compiled code, graphs) belongs to the engine: its
    trackers share it, each keeps its own memory; engine settings are the engine's."""
    net = lively_net(4)
    engine = vf.Engine(net, dtype=torch.bfloat16)
    a, b = vf.Tracker(engine), vf.Tracker(engine)
    assert a.engine is b.engine is engine and a.stream is not b.stream
    assert vf.Tracker(net).engine is not vf.Tracker(net).engine  # a model makes an engine per tracker
    assert engine.runner.net is not net and engine.runner.net.Mask_branch.pred.weight.dtype == torch.bfloat16
    assert net.Mask_branch.pred.weight.dtype == torch.float32  # the user's model is not converted
    with pytest.raises(ValueError, match="are the engine's settings; pass them to Engine"):
        vf.Tracker(engine, dtype=torch.float32, backend="cpp")
    frame = sample_frames(1, H, W)[0]
    assert a.step(frame).index == 0 and b.step(frame).index == 0 and a.step(frame).index == 1


def test_model_made_in_inference_mode(frames):
    """Weights made under torch.inference_mode() have no version counters: the runner still
    works, and gives what the same weights made normally give."""
    with torch.inference_mode():
        net = lively_net(4)
    assert_same_tracks(video_of(lively_net(4), frames[:4]), video_of(net, frames[:4]), score_atol=0, min_iou=1.0)


def test_float32_means_ieee_on_a_gpu():
    """The engine's frames run with TF32 off (cuDNN convolutions default to it), and the
    user's settings come back afterwards (the flags exist without a GPU)."""
    from visolo_fast.engine.precision import ieee_float32

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        with ieee_float32(torch.device("cuda")):
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        assert (conv.fp32_precision, matmul.fp32_precision) == (saved[0], "tf32")
        with ieee_float32(torch.device("cpu")):
            assert matmul.fp32_precision == "tf32"  # nothing to do on the CPU
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def test_torch_compile_matches_eager(frames):
    """compile=<backend>: the network's passes traced whole (fullgraph) by torch.compile,
    through the fake implementations of the ops; aot_eager keeps the test fast."""
    net = lively_net(4)
    assert_same_tracks(video_of(net, frames[:4]), video_of(net, frames[:4], compile="aot_eager"), score_atol=1e-5)


def test_compile_on_the_cpu_freezes_each_runners_weights():
    """compile=True on the CPU: inductor with freezing, each runner's weights compiled into its
    own graphs as constants. A second runner (another model) must trace and compile its own
    graph, not reuse the first one's constants (without freezing the weights are inputs and one
    graph serves both), and each equals its eager pass in float32.

    The predict pass only, which compiles in seconds; the backbone and heads are wrapped the
    same way, and take minutes on 2 cores (``bench/bench_e2e.py --compile`` runs them whole and
    compares the tracks with the reference engine's)."""
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters

    nets = [lively_net(4), lively_net(5)]
    read = torch.randn(1, nets[0].config.num_grids, 2 * nets[0].config.dim, generator=torch.Generator().manual_seed(0))
    runners = [NetworkRunner(net, torch.float32, "auto", compile=True, cuda_graphs=False) for net in nets]
    graphs = counters["stats"]["unique_graphs"]
    with torch.no_grad():  # as the engine runs: freezing is for inference
        for net, runner in zip(nets, runners):
            eager, compiled = net.predict(read), runner.passes.predict(read)
            for e, c in zip(eager, compiled):
                torch.testing.assert_close(c, e.float(), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(runners[0].passes.predict(read)[0], runners[1].passes.predict(read)[0]), \
            "the two models differ"
    assert counters["stats"]["unique_graphs"] - graphs == 2, "the second runner reused the first one's graph"
    assert inductor_config.freezing is False, "freezing is patched around the calls, not left on for other code"


def test_options_errors():
    net = lively_net(4)
    with pytest.raises(ValueError, match="reference engine .* float32"):
        vf.Tracker(net, backend="reference", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="reference engine"):
        vf.Tracker(net, backend="reference", compile=True)
    with pytest.raises(ValueError, match="dtype must be one of"):
        vf.Tracker(net, dtype=torch.float64)
    with pytest.raises(ValueError, match="cuda_graphs=True needs the model on a GPU, it is on cpu"):
        vf.Tracker(net, cuda_graphs=True)
    with pytest.raises(ValueError, match="compile must be"):
        vf.Tracker(net, compile=1)
    # A backend that cannot run on the model's device is refused when the engine is made, in
    # one line, not at the first frame; one message whether a tracker or the user made the engine.
    for make in (lambda: vf.Engine(net, backend="cuda"), lambda: vf.Tracker(net, backend="cuda")):
        with pytest.raises(vf.BackendUnavailable, match=r"^Engine: backend 'cuda' is unavailable: the model is on cpu: "
                                                        r"backend 'cuda' runs on CUDA tensors") as err:
            make()
        assert "\n" not in str(err.value)


def staggered_streams(net, videos, starts, batched: bool):
    """Runs the videos as streams starting at the given steps, batched or one by one."""
    engine = vf.Engine(net)
    trackers = [vf.Tracker(engine) for _ in videos]
    results = [[] for _ in videos]
    for step in range(max(s + len(v) for s, v in zip(starts, videos))):
        active = [i for i, (s, v) in enumerate(zip(starts, videos)) if 0 <= step - s < len(v)]
        batch = [videos[i][step - starts[i]] for i in active]
        outs = vf.step_many([trackers[i] for i in active], batch) if batched else \
            [trackers[i].step(f) for i, f in zip(active, batch)]
        for i, out in zip(active, outs):
            assert out.index == step - starts[i]  # each stream's own frame, at once
            results[i].append(out)
    return results


def test_step_many_equals_one_by_one():
    """Three streams of different lengths, frame sizes and start times (so their memories
    differ in length): batched, each gets what it gets alone."""
    net = lively_net(4)
    base = sample_frames(9, H, W)
    videos = [base, [f[:, ::-1].copy() for f in base[:7]], sample_frames(8, 96, 160)]
    alone = staggered_streams(net, videos, [0, 0, 3], batched=False)
    together = staggered_streams(net, videos, [0, 0, 3], batched=True)
    assert sum(len(r.track_ids) for rs in alone for r in rs) >= 10
    for a, b in zip(alone, together):
        assert [r.index for r in a] == [r.index for r in b]
        for x, y in zip(a, b):
            assert torch.equal(x.track_ids, y.track_ids) and torch.equal(x.labels, y.labels)
            # Batched convolutions sum in another order: float rounding, which can flip a mask
            # pixel at the threshold, and a score through its mask's quality.
            torch.testing.assert_close(x.scores, y.scores, rtol=0, atol=1e-3)
            assert (x.masks ^ y.masks).sum() <= max(4, x.masks.sum() // 1000)


def test_step_many_bad_input():
    net, other = lively_net(4), lively_net(5)
    engine = vf.Engine(net)
    a, b = vf.Tracker(engine), vf.Tracker(engine)
    frame = sample_frames(1, H, W)[0]
    assert vf.step_many([], []) == []
    with pytest.raises(ValueError, match="one frame per tracker, got 2 trackers and 1 frames"):
        vf.step_many([a, b], [frame])
    with pytest.raises(ValueError, match="appears twice"):
        vf.step_many([a, a], [frame, frame])
    with pytest.raises(ValueError, match=r"trackers\[1\] must be a fast-engine Tracker"):
        vf.step_many([a, vf.Tracker(net, backend="reference")], [frame, frame])
    with pytest.raises(ValueError, match=r"trackers\[1\] has another engine than trackers\[0\]"):
        vf.step_many([a, vf.Tracker(other)], [frame, frame])
    with pytest.raises(ValueError, match=r"trackers\[1\] has another engine than trackers\[0\]"):
        vf.step_many([a, vf.Tracker(net)], [frame, frame])
    with pytest.raises(ValueError, match=r"step_many: trackers\[1\]: frame must be one \[H, W, 3\]"):
        vf.step_many([a, b], [frame, frame[..., :2]])
    b.flush()
    with pytest.raises(RuntimeError, match=r"step_many: trackers\[1\]: this tracker was flushed"):
        vf.step_many([a, b], [frame, frame])


def test_stage_times(frames):
    net = lively_net(4)
    with vf.StageTimes() as fast:
        video_of(net, frames[:4])
    assert set(fast.seconds) == {"backbone", "heads", "memory", "masks", "nms", "association"}
    assert all(s > 0 for s in fast.seconds.values())
    with vf.StageTimes() as ref:
        video_of(net, frames[:4], backend="reference")
    assert {"network", "masks", "nms"} <= set(ref.seconds) and "backbone" not in ref.seconds
    with vf.StageTimes() as fixed:  # the whole frame timed as one (no timer inside a captured graph)
        video_of(net, frames[:4], fixed_shapes=True)
    assert set(fixed.seconds) == {"network", "association", "masks"}  # masks: the tracker's resize
    with vf.StageTimes(), pytest.raises(RuntimeError, match="already active"):
        with vf.StageTimes():
            pass
    from visolo_fast.engine.stages import stage

    with pytest.raises(ValueError, match="stage: name must be one of"):
        with stage("backbon"):
            pass


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_fast_engine(dtype, frames):
    """On a GPU: the fast engine (CUDA ops; float32 against the reference engine on the CPU;
    bfloat16 runs), and CUDA graphs give what the eager passes give."""
    if not torch.cuda.is_available():
        pytest.skip("no GPU on this machine")
    net = lively_net(4)
    gpu = copy.deepcopy(net).cuda()
    eager = video_of(gpu, frames, dtype=dtype)
    graphed = video_of(gpu, frames, dtype=dtype, cuda_graphs=True)
    assert_same_tracks(eager, graphed, score_atol=1e-5, min_iou=0.999)
    if dtype == torch.float32:
        assert_same_tracks(video_of(net, frames, backend="reference"), eager)
