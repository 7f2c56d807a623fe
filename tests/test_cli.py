"""``python -m visolo_fast``: segment and demo end to end; every user mistake is a clear
message and a non-zero exit, never a traceback; Ctrl-C keeps what was done."""

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.engine.lively import lively_net
from visolo_fast import Tracker, save_model
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
    bad(["segment", str(tmp_path / "nope.mp4"), "--weights", weights, *out], capsys, "no such file, folder or camera")
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
    with pytest.raises(SystemExit) as exc:
        main(["segment", video, "--output-size", "big"])
    assert exc.value.code == 2 and "must be HxW" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--frames", "0"])
    assert "must be at least 1" in capsys.readouterr().err
    bad(["demo", "--frames", "1", "--backend", "cuda", "--out", str(tmp_path / "d")], capsys,
        "backend 'cuda' runs on CUDA tensors")
    bad(["segment", video, "--weights", weights, "--cuda-graphs", *out], capsys, "cuda_graphs=True needs the model on a GPU")
    bad(["segment", video, "--weights", weights, "--backend", "reference", "--dtype", "bfloat16", *out], capsys,
        "the reference engine")
    with pytest.raises(SystemExit):
        main(["demo", "--dtype", "float64"])
    assert "must be float32, float16 or bfloat16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--max-memory-frames", "2"])
    assert "must be at least 3" in capsys.readouterr().err


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
    assert "interrupted after 4 frames" in capsys.readouterr().out
    assert len(read_video(str(tmp_path / "overlay.mp4"))) == 4  # frames 0-3 were final
    entries = json.load(open(tmp_path / "results.json"))
    assert entries and all(len(e["segmentations"]) == 4 for e in entries)
