"""``python -m visolo_fast``: segment and demo end to end; every user mistake is a clear
message and a non-zero exit, never a traceback; Ctrl-C keeps what was done."""

import io
import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import torch

from tests.engine.lively import lively_net
from visolo_fast import BackendUnavailable, Tracker, save_model
from visolo_fast import cli, ops
from visolo_fast.cli import main
from visolo_fast.io import FrameSource, VideoWriter
from visolo_fast.sample import sample_frames

H, W = 72, 128


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A small-input model that finds and tracks things in the sample (fast: 64 x 112 input)."""
    path = tmp_path_factory.mktemp("weights") / "lively.pt"
    save_model(lively_net(4), path)
    return str(path)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    writer = VideoWriter(path, 10.0, (H, W))
    for frame in sample_frames(8, H, W):
        writer.write(frame)
    writer.close()
    return path


def read_video(path):
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image)


def decode(rle):
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def test_segment_a_video_file(tmp_path, weights, video, capsys):
    out = tmp_path / "out"
    assert main(["segment", video, "--weights", weights, "--out", str(out), "--save-masks", "--output-size", "36x64"]) == 0
    printed = capsys.readouterr()
    assert "done: 8 frames" in printed.out and "FPS" in printed.out and "frame 8/8" in printed.err
    frames = read_video(str(out / "overlay.mp4"))
    assert len(frames) == 8 and frames[0].shape == (36, 64, 3)
    entries = json.load(open(out / "results.json"))
    assert entries and all(len(e["segmentations"]) == 8 for e in entries)
    pngs = sorted(os.listdir(out / "masks"))
    assert pngs == [f"{i:06d}.png" for i in range(8)]
    # the PNGs (track id + 1 of the best instance on each pixel) and the json (entry k =
    # track k) agree: a pixel names a track whose mask holds it, and the PNG covers the masks
    ids = np.stack([np.array(Image.open(out / "masks" / p)) for p in pngs])
    masks = np.zeros((len(entries), *ids.shape), bool)
    for k, entry in enumerate(entries):
        assert 1 <= entry["category_id"] <= 40
        for t, rle in enumerate(entry["segmentations"]):
            if rle is not None:
                masks[k, t] = decode(rle)
    assert masks.any()
    for k in range(len(entries)):
        assert not ((ids == k + 1) & ~masks[k]).any()
    assert np.array_equal(ids > 0, masks.any(0))


def test_demo_writes_an_overlay_and_results(tmp_path, capsys):
    assert main(["demo", "--frames", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "done: 2 frames" in out
    frames = read_video(str(tmp_path / "overlay.mp4"))
    assert len(frames) == 2 and frames[0].shape == (360, 640, 3)
    assert isinstance(json.load(open(tmp_path / "results.json")), list)


def test_folder_input_in_natural_order(tmp_path, weights, capsys):
    frames = sample_frames(11, H, W)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame{i + 1}.png")
    source = FrameSource(str(tmp_path))
    assert source.count == 11 and [np.array_equal(a, b) for a, b in zip(source, frames)] == [True] * 11
    assert main(["segment", str(tmp_path), "--weights", weights, "--out", str(tmp_path / "out")]) == 0
    assert len(read_video(str(tmp_path / "out" / "overlay.mp4"))) == 11


def test_grayscale_and_rgba_frames_are_converted(tmp_path, weights, capsys):
    frame = sample_frames(1, H, W)[0]
    Image.fromarray(frame).convert("L").save(tmp_path / "1.png")
    Image.fromarray(frame).convert("RGBA").save(tmp_path / "2.png")
    assert main(["segment", str(tmp_path), "--weights", weights, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "grayscale frames" in out and "alpha dropped" in out


def bad(argv, capsys, match):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_user_mistakes_are_messages(tmp_path, weights, video, capsys):
    out = ["--out", str(tmp_path / "out")]
    bad(["segment", str(tmp_path / "nope.mp4"), "--weights", weights, *out], capsys, "no such file, folder, camera or stream URL")
    (tmp_path / "text.mp4").write_text("not a video")
    bad(["segment", str(tmp_path / "text.mp4"), "--weights", weights, *out], capsys, "OpenCV cannot")
    (tmp_path / "empty").mkdir()
    bad(["segment", str(tmp_path / "empty"), "--weights", weights, *out], capsys, "has no .jpg/.jpeg/.png frames")
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(sizes / "1.png")
    Image.fromarray(np.zeros((H, W + 2, 3), np.uint8)).save(sizes / "2.png")
    bad(["segment", str(sizes), "--weights", weights, *out], capsys, "all frames must have one size")
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    bad(["segment", video, "--weights", str(tmp_path / "junk.pth"), *out], capsys, "junk.pth")
    bad(["segment", video, "--weights", weights, "--classes", "coco", *out], capsys,
        "80 class names, but the checkpoint has 40 classes")
    bad(["segment", video, "--weights", weights, "--classes", str(tmp_path / "none.txt"), *out], capsys,
        "neither one of")
    (tmp_path / "file").write_text("")
    bad(["segment", video, "--weights", weights, "--out", str(tmp_path / "file" / "sub")], capsys, "cannot write to")
    bad(["segment", video, "--output-size", "big"], capsys, "error: --output-size: must be HxW")
    bad(["demo", "--frames", "0"], capsys, "error: --frames: must be at least 1")
    bad(["demo", "--frames", "1", "--backend", "cuda", "--out", str(tmp_path / "d")], capsys,
        "--backend cuda: runs on a GPU, and this run is on the CPU (--device cpu)")
    bad(["segment", video, "--weights", weights, "--cuda-graphs", *out], capsys,
        "--cuda-graphs: CUDA graphs replay work on a GPU, and this run is on the CPU")
    bad(["segment", video, "--weights", weights, "--backend", "reference", "--dtype", "bfloat16", *out], capsys,
        "the reference engine")
    bad(["demo", "--dtype", "float64"], capsys, "error: --dtype: must be float32, float16 or bfloat16")
    bad(["demo", "--max-memory-frames", "2"], capsys, "error: --max-memory-frames: must be at least 3")


@pytest.mark.parametrize("argv,line", [
    (["demo", "--frames", "0"], "error: --frames: must be at least 1, got 0"),
    (["demo", "--frames", "many"], "error: --frames: must be an integer, got 'many'"),
    (["demo", "--max-memory-frames", "2"],
     "error: --max-memory-frames: must be at least 3 (frame 0, the previous and the current frame), got 2"),
    (["segment", "x", "--max-lost-frames", "0"], "error: --max-lost-frames: must be at least 1, got 0"),
    (["segment", "x", "--timeout", "soon"], "error: --timeout: must be a number of seconds > 0, got 'soon'"),
    (["segment", "x", "--reconnect", "-1"], "error: --reconnect: must be 0 or more, got -1"),
    (["demo", "--output-size", "0x5"], "error: --output-size: must be positive, got '0x5'"),
    (["demo", "--device", "tpu"], "error: --device: invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
    (["shapes", "o", "--videos", "0"], "error: --videos: must be at least 1, got 0"),
], ids=lambda v: " ".join(v[:3]) if isinstance(v, list) else None)
def test_an_option_value_refused_is_one_line(argv, line, tmp_path, capsys, monkeypatch):
    """As the README promises: one line naming the option, exit status 2, no usage block."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == line + "\n"
    assert not any(tmp_path.iterdir())  # refused before anything was made


@pytest.mark.parametrize("argv,says", [(["demo", "--frames"], "argument --frames: expected one argument"),
                                       (["demo", "--bogus"], "unrecognized arguments: --bogus"),
                                       (["dem"], "argument command: invalid choice: 'dem'")])
def test_a_wrong_command_line_keeps_the_usage(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("usage: python -m visolo_fast") and says in err


def test_segment_in_bfloat16_with_a_capped_memory(tmp_path, weights, video, capsys, monkeypatch):
    out = tmp_path / "out"
    memories = []
    real_step = Tracker.step

    def step(self, frame):
        results = real_step(self, frame)
        memories.append(len(self.memory_frames))  # uncapped: 4 after frame 7 (frames 0, 5, 6, 7)
        return results

    monkeypatch.setattr(Tracker, "step", step)
    assert main(["segment", video, "--weights", weights, "--out", str(out), "--dtype", "bfloat16",
                 "--max-memory-frames", "3"]) == 0
    assert max(memories) == 3 and len(memories) == 8
    assert "done: 8 frames" in capsys.readouterr().out
    assert len(json.loads((out / "results.json").read_text())) >= 1


def test_ctrl_c_keeps_the_frames_done(tmp_path, weights, video, monkeypatch, capsys):
    real_step = Tracker.step

    def step(self, frame):
        if self.num_frames == 5:
            raise KeyboardInterrupt
        return real_step(self, frame)

    monkeypatch.setattr(Tracker, "step", step)
    assert main(["segment", video, "--weights", weights, "--out", str(tmp_path)]) == 130
    assert "interrupted after 5 frames" in capsys.readouterr().out
    assert len(read_video(str(tmp_path / "overlay.mp4"))) == 5  # frames 0-4: each step returned its frame, final
    entries = json.load(open(tmp_path / "results.json"))
    assert entries and all(len(e["segmentations"]) == 5 for e in entries)


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path, weights, video, monkeypatch, capsys):
    """SIGTERM at the 6th frame: the run stops there and closes its files (a second SIGTERM
    while they close does not cut that short); main says 143, and leaves no handler behind."""
    import signal

    from visolo_fast.io.outputs import RunOutputs

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # visolo_fast is imported: it installed none
    real_step, real_close = Tracker.step, RunOutputs.close

    def step(self, frame):
        if self.num_frames == 5:
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, frame)

    def close(self, tracker):
        signal.raise_signal(signal.SIGTERM)
        real_close(self, tracker)

    monkeypatch.setattr(Tracker, "step", step)
    monkeypatch.setattr(RunOutputs, "close", close)
    assert main(["segment", video, "--weights", weights, "--out", str(tmp_path)]) == 143
    assert "interrupted after 5 frames" in capsys.readouterr().out
    assert len(read_video(str(tmp_path / "overlay.mp4"))) == 5
    entries = json.load(open(tmp_path / "results.json"))
    assert entries and all(len(e["segmentations"]) == 5 for e in entries)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# What a user sees when something goes wrong: options refused before anything is opened or
# made, runs that stop part-way saying what they leave, no C libraries' chatter, checkpoints.

REPO = pathlib.Path(__file__).resolve().parent.parent
CHATTER = ("moov atom", "WARN", "VIDEOIO", "V4L2", "Premature end", "Corrupt JPEG", "Traceback")


def _interrupt(self):
    """FrameSource.__iter__ as Ctrl-C before the first frame comes."""
    raise KeyboardInterrupt
    yield


def refused_line(capsys_or_fd) -> str:
    """The one line of stderr, checked for one line and no traceback or op name."""
    err = capsys_or_fd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not any(op in err for op in ops.__all__) and "visolo_fast::" not in err and "Traceback" not in err
    return lines[0]


def options_that_cannot_run_here():
    cases = [
        (["--backend", "cuda"], "--backend cuda: runs on a GPU, and this run is on the CPU (--device cpu)"),
        (["--cuda-graphs"], "--cuda-graphs: CUDA graphs replay work on a GPU, and this run is on the CPU"),
        (["--backend", "reference", "--dtype", "bfloat16"], "--dtype bfloat16: the reference engine (--backend reference) runs in float32"),
        (["--backend", "reference", "--compile"], "--compile: the reference engine"),
        (["--trusted"], "--trusted: it says how to load the --weights file, and no --weights was given"),
    ]
    if os.environ.get("TRITON_INTERPRET") != "1":
        cases.append((["--backend", "triton"], "--backend triton: runs on a GPU, and this run is on the CPU"))
    if not torch.cuda.is_available():
        cases += [(["--device", "cuda"], "--device cuda: torch sees no GPU here"),
                  (["--device", "cuda", "--backend", "cuda"], "--device cuda: torch sees no GPU here")]
    else:
        cases.append((["--device", "cuda", "--backend", "cpp"], "--backend cpp: runs on the CPU, and this run is on a GPU"))
    return cases


@pytest.mark.parametrize("options,message", options_that_cannot_run_here(), ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_options_that_cannot_run_here_are_refused_first(tmp_path, video, options, message, capsys, monkeypatch):
    def no_input(*_):
        raise AssertionError("the input was opened before the options were checked")

    monkeypatch.setattr(cli, "open_source", no_input)
    out = tmp_path / "out"
    assert main(["segment", video, "--out", str(out), *options]) == 2
    assert refused_line(capsys).startswith(f"error: {message}")
    assert not out.exists()


def test_a_package_that_is_no_file_is_refused_first(tmp_path, video, capsys, monkeypatch):
    """Nothing, a folder or a pipe as --package: one line naming it, before the input is opened
    (the package loader's own errors, "file open failed", name neither the file nor the problem)."""
    def no_input(*_):
        raise AssertionError("the input was opened before --package was checked")

    monkeypatch.setattr(cli, "open_source", no_input)
    missing, folder, pipe = tmp_path / "nope.pt2", tmp_path / "folder.pt2", tmp_path / "pipe.pt2"
    folder.mkdir()
    os.mkfifo(pipe)
    cases = [(missing, "no such package file (write one with `python -m visolo_fast export --out"),
             (folder, "a folder, not a package file; give the .pt2 file `python -m visolo_fast export` writes"),
             (pipe, "not a regular file; give the .pt2 file")]
    out = tmp_path / "out"
    for path, message in cases:
        assert main(["segment", video, "--package", str(path), "--out", str(out)]) == 2
        assert refused_line(capsys).startswith(f"error: --package {path}: {message}")
    assert not out.exists()


@pytest.mark.parametrize("options,message", options_that_cannot_run_here()[:2], ids=["backend-cuda", "cuda-graphs"])
def test_options_are_refused_before_the_model_is_made(tmp_path, options, message, capsys, monkeypatch):
    def no_model(*_):
        raise AssertionError("the model was made before the options were checked")

    monkeypatch.setattr(cli, "_load_net", no_model)
    assert main(["demo", "--out", str(tmp_path / "d"), *options]) == 2
    assert message in refused_line(capsys) and not (tmp_path / "d").exists()


def test_a_backend_that_fails_while_running_is_named_as_the_option(tmp_path, weights, video, capsys, monkeypatch):
    # from the exception's fields, whatever the op's name looks like (the dispatcher's "visolo_fast::...")
    exc = BackendUnavailable("visolo_fast::grid_weight", "cuda", "visolo_fast._C was built without CUDA kernels")
    assert cli._backend_message("cuda", exc) == "--backend cuda: visolo_fast._C was built without CUDA kernels"
    exc = BackendUnavailable("matrix_nms_decay", "cpp", "not implemented for this op (it has ('reference',))",
                             implemented=False)
    assert cli._backend_message("cpp", exc) == ("--backend cpp: a step of the network has no cpp implementation; "
                                                "use --backend auto")
    real_step = Tracker.step

    def step(self, frame):
        if self.num_frames == 2:
            raise BackendUnavailable("visolo_fast::grid_weight", "cpp", "the compiled extension visolo_fast._C is "
                                     "not importable (no module); rebuild it")
        return real_step(self, frame)

    monkeypatch.setattr(Tracker, "step", step)
    out = tmp_path / "out"
    assert main(["segment", video, "--weights", weights, "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: --backend auto: the compiled extension visolo_fast._C is not importable (no module); rebuild it; "
        f"stopped there: {out / 'overlay.mp4'}, {out / 'results.json'} cover frames 0..1 only (2 of 8 frames)")


def frames_folder(path: pathlib.Path, count: int, height: int = H, width: int = W) -> str:
    path.mkdir()
    for i, frame in enumerate(sample_frames(count, height, width)):
        Image.fromarray(frame).save(path / f"{i}.png")
    return str(path)


def test_a_reused_out_folder_holds_one_runs_files(tmp_path, weights, capsys):
    four, two, out = frames_folder(tmp_path / "four", 4), frames_folder(tmp_path / "two", 2), tmp_path / "out"
    masks = out / "masks"

    def segment(frames, *options):
        return main(["segment", frames, "--weights", weights, "--out", str(out), *options])

    assert segment(four, "--save-masks") == 0 and len(os.listdir(masks)) == 4
    capsys.readouterr()
    assert segment(two, "--save-masks") == 0
    assert sorted(os.listdir(masks)) == ["000000.png", "000001.png"]  # not the first run's 000002, 000003
    assert f"note: removed the 4 mask PNGs of an earlier run from {masks}/" in capsys.readouterr().out
    assert len(read_video(str(out / "overlay.mp4"))) == 2
    assert all(len(e["segmentations"]) == 2 for e in json.loads((out / "results.json").read_text()))
    # files that visolo_fast did not write stay: one of another name, and one of a mask's name,
    # which --save-masks would overwrite: refused, naming it
    (masks / "notes.txt").write_text("mine")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(masks / "000007.png")
    mine = (masks / "000007.png").read_bytes()
    assert segment(two, "--save-masks") == 2
    assert refused_line(capsys) == (f"error: --save-masks: {masks} holds files named as this run's masks that "
                                    f"visolo_fast did not write (1, such as {masks / '000007.png'}), which it would "
                                    f"overwrite; use another --out, or move them")
    assert len(os.listdir(masks)) == 4  # refused before anything was touched
    # without --save-masks, the earlier run's masks go as well
    assert segment(two) == 0
    assert sorted(os.listdir(masks)) == ["000007.png", "notes.txt"] and (masks / "000007.png").read_bytes() == mine


def test_an_odd_frame_size_is_kept(tmp_path, weights, capsys):
    """OpenCV's writer rounds odd sizes down to even (161 x 121 became 160 x 120): the overlay
    has the frames' size, read back with OpenCV."""
    out = tmp_path / "out"
    # (and --out with a trailing separator: the messages name the files without a doubled one)
    assert main(["segment", frames_folder(tmp_path / "odd", 3, 61, 81), "--weights", weights,
                 "--out", f"{out}{os.sep}.{os.sep}{os.sep}"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'overlay.mp4'}, {out / 'results.json'}" in printed and os.sep * 2 not in printed
    back = read_video(str(out / "overlay.mp4"))
    assert len(back) == 3 and back[0].shape == (61, 81, 3)
    for height, width in [(61, 81), (61, 80), (60, 81), (60, 80)]:
        path = str(tmp_path / f"{height}x{width}.mp4")
        frames = sample_frames(3, height, width)
        writer = VideoWriter(path, 10.0, (height, width))
        for frame in frames:
            writer.write(frame)
        writer.close()
        assert not writer.notes
        back = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in read_video(path)]
        assert [b.shape for b in back] == [(height, width, 3)] * 3
        # the same picture (mp4v is lossy): the last row and column too
        for a, b in zip(frames, back):
            assert np.abs(a.astype(int) - b).mean() < 8
            assert np.abs(a[-1].astype(int) - b[-1]).mean() < 12 and np.abs(a[:, -1].astype(int) - b[:, -1]).mean() < 12


@pytest.mark.parametrize("height, width", [(72, 128), (61, 81)])
def test_each_frame_lasts_its_own_time(tmp_path, height, width):
    """A video written with each frame's time (a variable frame rate, as a live overlay is)
    reads back with PyAV with each frame starting at its time, to half a tick of the track's
    timescale, and lasting until the end given; OpenCV reads every frame, at the frames' size
    (an odd one declared as well: both rewrites of the file's index hold together). Steps of
    1/30 s are not whole ticks (12800 a second at 25 FPS): rounded frame by frame, they would
    drift by a third of a tick a frame."""
    import av

    starts = [0.0, 0.04, 0.5, 0.513, 2.0, 2.05, 2.1, 2.15] + [3 + k / 30 for k in range(40)]
    end = starts[-1] + 0.7
    frames = sample_frames(len(starts), height, width)
    base = 1234.5678  # on the clock of capture times: the video starts at the first frame's
    path = str(tmp_path / "timed.mp4")
    writer = VideoWriter(path, 25.0, (height, width))
    for frame, start in zip(frames, starts):
        writer.write(frame, base + start)
    writer.close(base + end)
    assert not writer.notes
    with av.open(path) as container:
        stream = container.streams.video[0]
        tick = float(stream.time_base)
        decoded = list(container.decode(stream))
        assert abs(stream.duration * tick - end) <= tick / 2
        assert abs(container.duration / av.time_base - end) <= 1e-3  # the movie's timescale: 1000 a second
    assert tick == 1 / 12800
    assert np.abs(np.array([frame.time for frame in decoded]) - starts).max() <= tick / 2
    assert {(frame.height, frame.width) for frame in decoded} == {(height, width)}
    back = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in read_video(path)]
    assert len(back) == len(frames) and back[0].shape == (height, width, 3)
    for a, b in zip(frames, back):  # each frame once, in order (mp4v is lossy)
        assert np.abs(a.astype(int) - b).mean() < 8
    with pytest.raises(ValueError, match="its time, or none"):
        other = VideoWriter(str(tmp_path / "mixed.mp4"), 25.0, (height, width))
        other.write(frames[0], 0.0)
        other.write(frames[1])


def test_frame_times_that_cannot_be_written_leave_the_frame_rate(tmp_path):
    """A last frame shown for 4 days is more ticks (12800 a second) than the 32-bit durations of
    OpenCV's file hold: the video keeps its frame rate, whole, and the notes say so."""
    import av

    path = str(tmp_path / "long.mp4")
    writer = VideoWriter(path, 25.0, (H, W))
    for k, frame in enumerate(sample_frames(3, H, W)):
        writer.write(frame, 0.1 * k)
    writer.close(0.2 + 4 * 86400)
    assert len(writer.notes) == 1
    assert next(iter(writer.notes)).startswith(f"{path} plays at 25 frames a second, not at the frames' own times "
                                               f"(its index could not be rewritten: a duration of ")
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert [frame.time for frame in container.decode(stream)] == [0, 0.04, 0.08]
        assert float(stream.duration * stream.time_base) == 0.12
    assert len(read_video(path)) == 3


def test_frame_times_need_the_index_last(tmp_path):
    """An mp4 whose index (moov) comes before its media data (FFmpeg's faststart) cannot grow
    it in place: Mp4Error, the file unchanged. So with the times of other frames than the
    file's; times that do not increase are the caller's mistake (ValueError)."""
    import av

    from visolo_fast.io.mp4 import Mp4Error, set_frame_times

    first = tmp_path / "first.mp4"
    with av.open(str(first), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in sample_frames(3, H, W):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    before = first.read_bytes()
    with pytest.raises(Mp4Error, match="the moov box is not the file's last box"):
        set_frame_times(str(first), [0, 0.1, 0.2, 0.3])
    assert first.read_bytes() == before
    last = tmp_path / "last.mp4"
    writer = VideoWriter(str(last), 25.0, (H, W))
    for frame in sample_frames(3, H, W):
        writer.write(frame)
    writer.close()
    before = last.read_bytes()
    with pytest.raises(Mp4Error, match="the video holds 3 frames, given the times of 2"):
        set_frame_times(str(last), [0, 0.1, 0.2])
    with pytest.raises(ValueError, match="the times must not decrease"):
        set_frame_times(str(last), [0, 0.2, 0.1, 0.3])
    assert last.read_bytes() == before
    # frames of one packet share their capture time: each still lasts a tick
    set_frame_times(str(last), [5.0, 5.1, 5.1, 5.3])
    with av.open(str(last)) as container:
        stream = container.streams.video[0]
        ticks = [frame.pts for frame in container.decode(stream)]
        assert ticks == [0, round(0.1 / stream.time_base), round(0.1 / stream.time_base) + 1], ticks


def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["demo", "--frames", "1", "--device", "cuda", "--out", str(tmp_path / "d")]) == 2
    assert refused_line(capsys).startswith("error: --device cuda: torch sees no GPU here (torch ")
    assert not (tmp_path / "d").exists()


def jpeg(frame) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def corrupt(data: bytes) -> bytes:
    """A JPEG whose entropy-coded data has a stray marker half-way (it still ends with its EOI
    marker): libjpeg would print 'Corrupt JPEG data' and return a damaged frame."""
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    return data[:middle] + b"\xff\xc4\xff\x01" + data[middle + 4:]


def test_a_damaged_frame_midway_stops_the_run_and_says_what_is_left(tmp_path, weights, capfd):
    frames = sample_frames(4, H, W)
    for i, frame in enumerate(frames):
        (tmp_path / f"{i}.jpg").write_bytes(corrupt(jpeg(frame)) if i == 2 else jpeg(frame))
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path), "--weights", weights, "--out", str(out), "--save-masks"]) == 2
    err = capfd.readouterr().err
    line = err.splitlines()[-1]
    assert line.startswith(f"error: INPUT: frame 2 ({tmp_path / '2.jpg'}) cannot be decoded"), err
    assert (f"stopped there: {out / 'overlay.mp4'}, {out / 'results.json'} and {out / 'masks'}/ cover frames 0..1 only "
            f"(2 of 4 frames)") in line
    assert not any(c in err for c in CHATTER), err
    assert len(read_video(str(out / "overlay.mp4"))) == 2
    entries = json.loads((out / "results.json").read_text())
    assert entries and all(len(e["segmentations"]) == 2 for e in entries)
    assert sorted(os.listdir(out / "masks")) == ["000000.png", "000001.png"]


def test_a_folder_is_checked_before_the_first_frame(tmp_path, capfd, monkeypatch):
    def no_model(*_):
        raise AssertionError("the model was made before the folder was checked")

    monkeypatch.setattr(cli, "_load_net", no_model)
    frames = sample_frames(4, H, W)
    folder, out = tmp_path / "frames", tmp_path / "out"
    folder.mkdir()
    for i, frame in enumerate(frames):
        (folder / f"{i}.jpg").write_bytes(jpeg(frame))
    # the last frame cut short: found when the folder is opened, without libjpeg's "Premature end of JPEG file"
    data = jpeg(frames[3])
    (folder / "3.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert main(["segment", str(folder), "--out", str(out)]) == 2
    line = refused_line(capfd)
    assert line.startswith(f"error: INPUT: frame 3 ({folder / '3.jpg'}) cannot be decoded, the file is damaged or cut short")
    # a size, and a bit depth, that differ
    Image.fromarray(frames[3][:, :-2]).save(folder / "3.jpg")
    assert main(["segment", str(folder), "--out", str(out)]) == 2
    assert f"frame 3 ({folder / '3.jpg'}) is 72 x 126, frame 0 (0.jpg) is 72 x 128: all frames must have one size" in refused_line(capfd)
    os.remove(folder / "3.jpg")
    Image.fromarray(frames[3][..., 0].astype(np.uint16) * 256).save(folder / "3.png")
    assert main(["segment", str(folder), "--out", str(out)]) == 2
    assert f"frame 3 ({folder / '3.png'}) has 16-bit, 32-bit or float pixels (PIL mode I;16): frames must be 8-bit" \
        in refused_line(capfd)
    assert not out.exists()


def test_ctrl_c_before_the_first_frame_leaves_no_empty_video(tmp_path, weights, video, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["segment", frames_folder(tmp_path / "two", 2), "--weights", weights, "--out", str(out),
                 "--save-masks"]) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    monkeypatch.setattr(FrameSource, "__iter__", _interrupt)
    # a folder that was there: left as it was (the earlier run's files too)
    assert main(["segment", video, "--weights", weights, "--out", str(out), "--save-masks"]) == 130
    assert "interrupted before the first frame was finished: nothing written" in capsys.readouterr().out
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    # a folder the run made (and its parents): gone
    new = tmp_path / "new" / "out"
    assert main(["segment", video, "--weights", weights, "--out", str(new)]) == 130
    assert "nothing written" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()


def test_a_video_shorter_than_it_declares_gets_a_note(video):
    source = FrameSource(video)
    source.count = 10  # the file declares 10 frames, 8 decode
    assert len(list(source)) == 8
    assert source.notes == {"the video file declares 10 frames, OpenCV decoded 8: a damaged or cut-short file?"}


def test_no_opencv_ffmpeg_or_libjpeg_chatter(tmp_path):
    """As a user runs it (a fresh process: FFmpeg reads its log level once): our line, nothing else."""
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "ftyp.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(4000))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(sample_frames(3, H, W)):
        data = jpeg(frame)
        (folder / f"{i}.jpg").write_bytes(data[: len(data) // 2] if i == 1 else data)
    runs = [[str(tmp_path / "random.mp4")], [str(tmp_path / "ftyp.mp4")], ["97"], [str(folder)]]
    script = ("import sys\nfrom visolo_fast.cli import main\n"
              f"for argv in {runs!r}:\n"
              f"    print('rc', main(['segment', *argv, '--out', {str(tmp_path / 'out')!r}]), file=sys.stderr, flush=True)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    err = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120).stderr
    lines = err.splitlines()
    assert lines[:6] == [
        f"error: INPUT: OpenCV cannot open the video {tmp_path / 'random.mp4'} (not a video, or a damaged or incomplete file)",
        "rc 2",
        f"error: INPUT: OpenCV cannot open the video {tmp_path / 'ftyp.mp4'} (not a video, or a damaged or incomplete file)",
        "rc 2",
        "error: INPUT: cannot open camera 97: no /dev/video97",
        "rc 2",
    ], err
    assert len(lines) == 8 and lines[7] == "rc 2", err
    assert lines[6].startswith(f"error: INPUT: frame 1 ({folder / '1.jpg'}) cannot be decoded, the file is damaged or cut short: ")
    assert not any(c in err for c in CHATTER), err
    assert not (tmp_path / "out").exists()


class _Payload:
    pass


def test_weights_errors_name_the_option(tmp_path, weights, video, capsys, monkeypatch):
    out = ["--out", str(tmp_path / "out")]
    (tmp_path / "dir.pth").mkdir()
    monkeypatch.setattr(cli, "open_source", lambda *_, **__: pytest.fail("the input was opened before --weights was checked"))
    assert main(["segment", video, "--weights", str(tmp_path / "dir.pth"), *out]) == 2
    assert refused_line(capsys) == f"error: --weights {tmp_path / 'dir.pth'}: a directory, not a checkpoint file " \
                                   "(expected a .pth/.pt file written by torch.save)"
    monkeypatch.undo()
    data = pathlib.Path(weights).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert main(["segment", video, "--weights", str(tmp_path / "cut.pt"), *out]) == 2
    line = refused_line(capsys)
    assert line.startswith(f"error: --weights {tmp_path / 'cut.pt'}: not a readable PyTorch checkpoint: expected a file "
                           "written by torch.save, got a zip archive") and "trusted" not in line
    # random bytes: not a checkpoint, and no advice to trust them (the weights-only load refuses them as it
    # refuses pickled objects)
    for seed in range(3):
        (tmp_path / "random.pt").write_bytes(np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes())
        assert main(["segment", video, "--weights", str(tmp_path / "random.pt"), *out]) == 2
        line = refused_line(capsys)
        assert line.startswith(f"error: --weights {tmp_path / 'random.pt'}: not a PyTorch checkpoint: expected a file "
                               "written by torch.save, got 2000 bytes of something else") and "trusted" not in line
    torch.save({**torch.load(weights, weights_only=True), "made_by": _Payload()}, tmp_path / "pickled.pt")
    assert main(["segment", video, "--weights", str(tmp_path / "pickled.pt"), *out]) == 2
    assert refused_line(capsys) == (f"error: --weights {tmp_path / 'pickled.pt'}: not a readable PyTorch checkpoint without "
                                    "trusting it: it holds a pickled tests.test_cli._Payload, which a weights-only load "
                                    "refuses; if you trust the file, add --trusted (loading it can run code stored in it)")
    # --trusted loads it (stopped before the first frame, to stay fast)
    monkeypatch.setattr(FrameSource, "__iter__", _interrupt)
    assert main(["segment", video, "--weights", str(tmp_path / "pickled.pt"), "--trusted", *out]) == 130
    assert f"weights: {tmp_path / 'pickled.pt'} (40 classes)" in capsys.readouterr().out


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_on_a_cpu_without_it_gets_a_note(tmp_path, capsys, monkeypatch, native):
    """oneDNN emulates bfloat16 convolutions on CPUs without AVX-512 / AMX (8x slower than
    float32 on an AVX2 CPU): the run says so, and not where they are native."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    cli._check_options(cli._parser().parse_args(["demo", "--dtype", "bfloat16", "--out", str(tmp_path / "o")]))
    out = capsys.readouterr().out
    assert ("note: --dtype bfloat16 on this CPU: it has no bfloat16 convolutions" in out) is not native
