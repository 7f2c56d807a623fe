"""``python -m visolo_fast ytvis`` then ``evaluate`` on the generated moving-shapes dataset:
files the servers take, resumable after a crash or Ctrl-C, failed videos reported and
the run going on, inputs checked before the first frame, Ray equal to one process."""

import json
import os
import shutil
import zipfile

import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import visolo_fast as vf
from tests.engine.lively import lively_net
from visolo_fast import dataset as dataset_mode
from visolo_fast.cli import main
from visolo_fast.io.shapes import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """3 videos of 4, 5, 6 frames at 72 x 128, 7 objects."""
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset(root, num_frames=4), str(root / "JPEGImages")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "lively.pt"
    vf.save_model(lively_net(4), path)
    return str(path)


def ytvis(annotations, images, weights, out, *extra):
    return main(["ytvis", "--annotations", str(annotations), "--images", str(images), "--weights", weights,
                 "--out", str(out), *extra])


@pytest.fixture(scope="module")
def full_run(shapes, weights, tmp_path_factory):
    """One uninterrupted run: (its output folder, results.json)."""
    out = tmp_path_factory.mktemp("full")
    assert ytvis(*shapes, weights, out) == 0
    with open(out / "results.json") as f:
        return out, json.load(f)


def load(path):
    with open(path) as f:
        return json.load(f)


def test_results_are_what_the_servers_take(shapes, full_run):
    out, results = full_run
    gt = load(shapes[0])
    videos = {v["id"]: v for v in gt["videos"]}
    categories = {c["id"] for c in gt["categories"]}
    assert results, "the lively model finds tracks in the shapes"
    assert [r["video_id"] for r in results] == sorted(r["video_id"] for r in results), "videos in the json's order"
    assert {r["video_id"] for r in results} == set(videos)
    for r in results:
        video = videos[r["video_id"]]
        assert r["category_id"] in categories and 0 <= r["score"] <= 1
        assert len(r["segmentations"]) == len(video["file_names"])
        for rle in r["segmentations"]:
            if rle is not None:
                assert rle["size"] == [video["height"], video["width"]] and isinstance(rle["counts"], str)
                assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) > 0
    with zipfile.ZipFile(out / "results.zip") as z:
        assert z.namelist() == ["results.json"]
        assert json.loads(z.read("results.json")) == results


def test_labels_map_to_the_json_category_ids(shapes, weights, full_run, tmp_path):
    """Categories sorted by id give labels 0..C-1: with ids shifted by 100 and listed in
    reverse, a label's category id is shifted the same."""
    annotations, images = shapes
    gt = load(annotations)
    gt["categories"] = [dict(c, id=c["id"] + 100) for c in reversed(gt["categories"])]
    gt["annotations"] = [dict(a, category_id=a["category_id"] + 100) for a in gt["annotations"]]
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(gt))
    assert ytvis(shifted, images, weights, tmp_path / "out") == 0
    assert load(tmp_path / "out" / "results.json") == [dict(r, category_id=r["category_id"] + 100) for r in full_run[1]]


def test_evaluate_the_results_and_a_perfect_file(shapes, full_run, tmp_path, capsys):
    annotations, _ = shapes
    out, _ = full_run
    capsys.readouterr()
    assert main(["evaluate", "--annotations", annotations, "--results", str(out / "results.zip"),
                 "--json", str(tmp_path / "ap.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("Average Precision" in line for line in lines) == 6 and sum("Average Recall" in line for line in lines) == 6
    stats = load(tmp_path / "ap.json")
    assert list(stats) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    assert all(-1 <= v <= 1 for v in stats.values())

    gt = load(annotations)  # the ground truth as predictions, score 1
    perfect = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentations": a["segmentations"]} for a in gt["annotations"]]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    assert main(["evaluate", "--annotations", annotations, "--results", str(tmp_path / "perfect.json"),
                 "--json", str(tmp_path / "perfect_ap.json")]) == 0
    stats = load(tmp_path / "perfect_ap.json")
    # every shape is at most 128^2 in area: the medium and large ranges have no ground truth
    assert stats["AP"] == stats["AP50"] == stats["AP75"] == stats["APs"] == 1.0
    assert stats["AR1"] == stats["AR10"] == stats["AR100"] == stats["ARs"] == 1.0
    assert stats["APm"] == stats["APl"] == stats["ARm"] == stats["ARl"] == -1


def test_a_crash_loses_only_the_video_in_progress(shapes, weights, full_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)
    store = (out / "videos.jsonl").read_text().splitlines(keepends=True)
    assert len(store) == 4  # the settings, then a line per video
    # killed while writing video 2's line: its first half is on disk
    (out / "videos.jsonl").write_text("".join(store[:2]) + store[2][: len(store[2]) // 2])
    (out / "results.json").unlink()
    capsys.readouterr()
    assert ytvis(*shapes, weights, out) == 0
    text = capsys.readouterr().out
    assert "resuming: 1 of 3 videos already done" in text and "video 1:" not in text
    assert "video 2:" in text and "video 3:" in text
    assert load(out / "results.json") == full_run[1]
    lines = (out / "videos.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)


def test_ctrl_c_keeps_the_finished_videos_and_a_rerun_finishes(shapes, weights, full_run, tmp_path, monkeypatch, capsys):
    real, calls = dataset_mode.segment_ytvis_video, []

    def interrupted_on_the_second(engine, video, category_ids):
        calls.append(video.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(engine, video, category_ids)

    monkeypatch.setattr(dataset_mode, "segment_ytvis_video", interrupted_on_the_second)
    out = tmp_path / "out"
    assert ytvis(*shapes, weights, f"{out}{os.sep}") == 130  # (a trailing separator: not doubled in the messages)
    text = capsys.readouterr().out
    assert "interrupted: 1 of 3 videos" in text and "not ready for the servers" in text
    assert f"in {out / 'videos.jsonl'}," in text and os.sep * 2 not in text
    assert [r["video_id"] for r in load(out / "results.json")] == [1] * len(
        [r for r in full_run[1] if r["video_id"] == 1])
    monkeypatch.setattr(dataset_mode, "segment_ytvis_video", real)
    assert ytvis(*shapes, weights, out) == 0
    assert load(out / "results.json") == full_run[1]


def test_a_rerun_with_other_settings_is_refused(shapes, weights, full_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)
    assert ytvis(*shapes, weights, out, "--max-memory-frames", "3") == 2
    err = capsys.readouterr().err
    assert "holds results made with other settings (max_memory_frames: None then, 3 now)" in err


def test_a_failing_video_is_reported_and_the_run_goes_on(shapes, weights, full_run, tmp_path, capsys):
    annotations, images = shapes
    broken = tmp_path / "JPEGImages"
    shutil.copytree(images, broken)
    gt = load(annotations)
    damaged = broken / gt["videos"][0]["file_names"][2]
    damaged.write_bytes(damaged.read_bytes()[:300])  # cut short
    resized = broken / gt["videos"][2]["file_names"][5]
    Image.new("RGB", (64, 40)).save(resized)
    out = tmp_path / "out"
    assert ytvis(annotations, broken, weights, out) == 1
    text = capsys.readouterr().out
    assert "[1/3] video 1: FAILED: frame 2 (" in text and "not an image PIL can read: Truncated File Read" in text
    assert "[3/3] video 3: FAILED: frame 5 (" in text and "is 40 x 64, frame 0 (00000.jpg) is 72 x 128" in text
    assert "failed: video 1:" in text and "failed: video 3:" in text and "done: 1 of 3 videos" in text
    results = load(out / "results.json")
    assert results == [r for r in full_run[1] if r["video_id"] == 2]
    # fixed, the same command runs the failed videos only
    shutil.copy(os.path.join(images, gt["videos"][0]["file_names"][2]), damaged)
    shutil.copy(os.path.join(images, gt["videos"][2]["file_names"][5]), resized)
    assert ytvis(annotations, broken, weights, out) == 0
    text = capsys.readouterr().out
    assert "video 2:" not in text and "done: 3 of 3 videos" in text
    assert load(out / "results.json") == full_run[1]


def test_inputs_are_checked_before_the_first_frame(shapes, weights, tmp_path, capsys, monkeypatch):
    annotations, images = shapes
    gt = load(annotations)

    def never(*args):
        raise AssertionError("a video ran")

    monkeypatch.setattr(dataset_mode, "segment_ytvis_video", never)

    def refused(path, images=images, weights=weights, *extra):
        assert ytvis(path, images, weights, tmp_path / "out", *extra) == 2
        return capsys.readouterr().err

    # every missing file at once
    holes = tmp_path / "holes"
    shutil.copytree(images, holes)
    gone = [gt["videos"][0]["file_names"][2], gt["videos"][2]["file_names"][0], gt["videos"][2]["file_names"][5]]
    for name in gone:
        os.remove(holes / name)
    err = refused(annotations, holes)
    assert all(f"{name}" in err for name in gone)
    assert "3 of the 15 frames" in err and "(2 of 3 videos; all listed above)" in err

    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": gt["categories"]}))
    assert "is not a YouTube-VIS json: it needs lists 'videos' and 'categories'" in refused(coco)

    no_frames = tmp_path / "no_frames.json"
    no_frames.write_text(json.dumps(dict(gt, videos=[dict(gt["videos"][0], file_names=[])])))
    assert "videos[0] needs 'file_names'" in refused(no_frames)

    few = tmp_path / "few.json"
    few.write_text(json.dumps(dict(gt, categories=gt["categories"][:25])))
    assert "the checkpoint has 40 classes" in refused(few) and "25 categories" in refused(few)

    assert "label 0 is 'airplane' in --classes, 'person' in the json" in refused(annotations, images, weights,
                                                                                  "--classes", "ytvis2021")
    assert not (tmp_path / "out").exists(), "nothing written before the checks pass"


# Ray workers run one torch thread each, the single process the machine's (2 in CI): oneDNN's
# convolutions split their sums over threads differently and round differently, so the runs
# match in decisions (tracks, categories, which frames hold a mask), not bit for bit. Measured
# on an AMD EPYC with AVX-512 and BF16 (2 cores, 2026-12-08): 2 of 133,260 mask pixels
# differ, scores by 1.3e-6; with OMP_NUM_THREADS=1 for both, nothing differs. CI on an Intel
# Xeon with AMX (2026-12-07) found a few pixels of one mask flipped.
SCORE_ATOL = 1e-4
MASK_PIXELS = 1e-3  # the largest share of the results' mask pixels that may differ


def assert_same_results(got: list[dict], expected: list[dict]) -> None:
    """Two results.json lists from runs that differ in thread count: the same entries (videos,
    categories, frames with a mask) in the same order exactly; scores within SCORE_ATOL; masks
    within MASK_PIXELS of their pixels."""
    assert [(r["video_id"], r["category_id"]) for r in got] == [(r["video_id"], r["category_id"]) for r in expected]
    differ = total = 0
    for k, (a, b) in enumerate(zip(got, expected)):
        assert abs(a["score"] - b["score"]) <= SCORE_ATOL, (k, a["score"], b["score"])
        assert [s is None for s in a["segmentations"]] == [s is None for s in b["segmentations"]], k
        for s, t in zip(a["segmentations"], b["segmentations"]):
            if s is None:
                continue
            assert s["size"] == t["size"]
            m, n = (mask_utils.decode({"size": x["size"], "counts": x["counts"].encode()}) for x in (s, t))
            differ += int((m != n).sum())
            total += int(m.sum())
    assert total > 0 and differ <= MASK_PIXELS * total, f"{differ} of {total} mask pixels differ"


def test_ray_gives_the_single_process_results(shapes, weights, full_run, tmp_path, capsys, monkeypatch):
    """A local Ray cluster, 2 CPU workers of one thread each, against the single-process run
    (the machine's threads): the same results up to the rounding of their convolutions
    (assert_same_results)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'visolo_fast[ray]'); CI installs it")
    import signal

    handlers = []  # SIGTERM's handler once Ray has started (ray.init installs its own, which exits at once)
    resources = ray.cluster_resources
    monkeypatch.setattr(ray, "cluster_resources", lambda: handlers.append(signal.getsignal(signal.SIGTERM)) or resources())
    out = tmp_path / "out"
    assert ytvis(*shapes, weights, out, "--ray", "--ray-workers", "2") == 0
    assert handlers and handlers[0].__module__ == "visolo_fast.cli", "SIGTERM still stops the run as Ctrl-C does"
    assert "ray: 2 workers ({'num_cpus': 1})" in capsys.readouterr().out
    assert_same_results(load(out / "results.json"), full_run[1])
    done = [json.loads(line)["video_id"] for line in (out / "videos.jsonl").read_text().splitlines()[1:]]
    assert sorted(done) == [1, 2, 3], "every video once, in the order they finished"


def test_the_recorded_results_are_the_video_results(weights):
    """A stream's results recorded frame by frame (ResultsRecorder, as the CLI and the dataset
    mode write them) are the whole video's (to_ytvis of Tracker.video_result): one entry per
    track, written once."""
    from visolo_fast.io import ResultsRecorder, to_ytvis
    from visolo_fast.sample import sample_frames

    tracker = vf.Tracker(vf.load_model(weights), output_size=(36, 64), keep_video=True)
    recorder = ResultsRecorder()
    assert recorder.results(tracker, 7) == []
    for frame in sample_frames(4, 72, 128):
        recorder.add(tracker.step(frame))
    categories = tuple(range(100, 140))
    entries = recorder.results(tracker, 7, categories)
    video = tracker.video_result()
    assert entries and entries == to_ytvis(video.scores, video.labels, video.masks, 7, categories)
    assert all(100 <= e["category_id"] < 140 and e["video_id"] == 7 for e in entries)


def test_shapes_command_writes_a_dataset(tmp_path, capsys):
    assert main(["shapes", str(tmp_path / "d"), "--videos", "2", "--frames", "3", "--size", "32x48"]) == 0
    gt = load(tmp_path / "d" / "annotations.json")
    assert [v["length"] for v in gt["videos"]] == [3, 4]
    for a in gt["annotations"]:
        video = gt["videos"][a["video_id"] - 1]
        assert len(a["segmentations"]) == len(a["areas"]) == video["length"]
        for seg, area in zip(a["segmentations"], a["areas"]):
            assert (seg is None) == (area is None)
            if seg is not None:
                mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                assert mask.shape == (32, 48) and mask.sum() == area
    make_shapes_dataset(tmp_path / "again", 2, 3, (32, 48))
    assert load(tmp_path / "again" / "annotations.json") == gt, "the same dataset on every machine"
    frame = "JPEGImages/shapes001/00003.jpg"
    assert (tmp_path / "again" / frame).read_bytes() == (tmp_path / "d" / frame).read_bytes()


def test_evaluate_and_ray_mistakes_name_the_option(shapes, weights, tmp_path, capsys, monkeypatch):
    annotations, images = shapes
    assert main(["evaluate", "--annotations", annotations, "--results", str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --results: cannot read {tmp_path / 'none.json'}")
    (tmp_path / "bad.json").write_text(json.dumps([{"video_id": 9, "category_id": 1, "score": 0.5,
                                                    "segmentations": []}]))
    assert main(["evaluate", "--annotations", annotations, "--results", str(tmp_path / "bad.json")]) == 2
    assert "error: --results[0] (video_id 9): the annotations have no video with that id" in capsys.readouterr().err
    # an empty list: said, not scored as AP 0 (or -1)
    (tmp_path / "empty.json").write_text("[]")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("results.json", "[]")
    for path in (tmp_path / "empty.json", tmp_path / "empty.zip"):
        assert main(["evaluate", "--annotations", annotations, "--results", str(path)]) == 2
        printed = capsys.readouterr()
        assert printed.err == (f"error: --results {path}: an empty list, no results to score (a run that finished no "
                               f"video, or found no track in any)\n") and "Average" not in printed.out
    # NaN scores and RLEs pycocotools cannot decode: the entry named
    gt = load(annotations)
    perfect = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentations": a["segmentations"]} for a in gt["annotations"]]
    perfect[2]["score"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(perfect))
    assert main(["evaluate", "--annotations", annotations, "--results", str(tmp_path / "nan.json")]) == 2
    video = perfect[2]["video_id"]
    assert f"error: --results[2] (video_id {video}): score nan is not a finite number" in capsys.readouterr().err
    perfect[2]["score"] = 1.0
    frame = next(f for f, rle in enumerate(perfect[2]["segmentations"]) if rle)
    perfect[2]["segmentations"][frame]["counts"] += "0"
    (tmp_path / "rle.json").write_text(json.dumps(perfect))
    assert main(["evaluate", "--annotations", annotations, "--results", str(tmp_path / "rle.json")]) == 2
    assert (f"error: --results[2] (video_id {video}): segmentations[{frame}] is not an RLE pycocotools can decode"
            in capsys.readouterr().err)

    assert ytvis(annotations, images, weights, tmp_path / "out", "--ray-workers", "2") == 2
    assert "--ray-workers: it sizes a Ray run, and no --ray was given" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray fails
    assert ytvis(annotations, images, weights, tmp_path / "out", "--ray") == 2
    assert "--ray: Ray is not installed; pip install 'visolo_fast[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "refused before the output folder is made"
