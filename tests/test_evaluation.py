"""visolo_fast.evaluation: the official YouTube-VIS evaluation (youtubevos/cocoapi ytvoseval),
on cases computed by hand, on properties any dataset must have, and on bad input."""

import copy
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from visolo_fast.evaluation import (IOU_THRESHOLDS, RECALL_THRESHOLDS, STAT_KEYS, EvaluationError, _areas, _Detection,
                                   _GroundTruth, _rle_problem, _track_ious, evaluate_ytvis,
                                   summary_lines)


def rle(mask: np.ndarray) -> dict:
    """The compressed RLE of a bool [H, W] mask, counts as str (as a results json has it)."""
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def block(rows: slice, cols: slice, shape=(4, 5)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def box_rle(box, height: int, width: int) -> dict:
    """The RLE of the rectangle box = [x, y, w, h] (cheap on big frames)."""
    encoded = mask_utils.frPyObjects(np.array([box], np.float64), height, width)[0]
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}


# Frames of 4 x 5 pixels.
TOP = block(slice(0, 2), slice(None))  # 10 px
BOTTOM = block(slice(2, 4), slice(None))  # 10 px
BOTTOM8 = block(slice(2, 4), slice(0, 4))  # 8 px, inside BOTTOM
CORNER9 = block(slice(0, 3), slice(0, 3))  # 9 px
LEFT = block(slice(None), slice(0, 1))  # 4 px
RIGHT = block(slice(None), slice(4, 5))  # 4 px


def uncompressed(mask: np.ndarray) -> dict:
    """The uncompressed RLE of a mask: run lengths over its column-major pixels, 0s first."""
    counts, value, run = [], False, 0
    for pixel in mask.flatten(order="F"):
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    return {"size": list(mask.shape), "counts": counts + [run]}


def polygon(mask: np.ndarray) -> list:
    """One polygon around a block mask (its corners on the pixel edges)."""
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def track(*masks):
    return [None if m is None else rle(m) for m in masks]


def areas(*masks):
    return [None if m is None else int(m.sum()) for m in masks]


def hand_dataset(gt_forms=(rle,)) -> tuple[dict, list]:
    """Two videos (3 and 2 frames of 4 x 5), two categories; the test below computes it by hand.
    Ground-truth frame f is in the form gt_forms[f % len(gt_forms)]."""

    def gt_track(*masks):
        return [None if m is None else gt_forms[f % len(gt_forms)](m) for f, m in enumerate(masks)]

    annotations = {
        "videos": [{"id": 1, "height": 4, "width": 5, "file_names": ["1/0.jpg", "1/1.jpg", "1/2.jpg"]},
                   {"id": 2, "height": 4, "width": 5, "length": 2}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentations": gt_track(TOP, TOP, None), "areas": areas(TOP, TOP, None)},
            {"id": 2, "video_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentations": gt_track(BOTTOM, BOTTOM, None), "areas": areas(BOTTOM, BOTTOM, None)},
            {"id": 3, "video_id": 2, "category_id": 1, "iscrowd": 0,
             "segmentations": gt_track(LEFT, LEFT), "areas": areas(LEFT, LEFT)},
            {"id": 4, "video_id": 2, "category_id": 1, "iscrowd": 1,
             "segmentations": gt_track(RIGHT, RIGHT), "areas": areas(RIGHT, RIGHT)},
        ],
    }
    results = [
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": track(TOP, TOP, None)},  # d1
        {"video_id": 1, "category_id": 1, "score": 0.95, "segmentations": track(None, None, None)},  # d5
        {"video_id": 1, "category_id": 2, "score": 0.8, "segmentations": track(BOTTOM, BOTTOM8, CORNER9)},  # d2
        {"video_id": 2, "category_id": 1, "score": 0.7, "segmentations": track(RIGHT, RIGHT)},  # d3
        {"video_id": 2, "category_id": 2, "score": 0.95, "segmentations": track(LEFT, None)},  # d4
    ]
    return annotations, results


# By hand. IoUs: d1 ~ gt 1: 1. d5 (no mask at all, area 0: "small") ~ anything: 0.
# d2 ~ gt 2: frames 0, 1 intersect in 10 + 8, unions 10 + 10, frame 2 only d2 has a mask
# (+9 to the union): 18 / 29 = 0.62, a match at IoU .50, .55, .60 only. d3 = the crowd gt 4:
# ignored, neither TP nor FP. d4: category 2 has no gt in video 2, a FP.
# Category 1 (gt 1, gt 3; gt 4 is crowd): d5 (.95) FP, d1 (.9) TP, d3 (.7) ignored, at every
# IoU: precision .5 (1 of 2) up to recall .5, then nothing: 51 of 101 recall points at .5.
# Category 2 (gt 2): d4 (.95) FP, d2 (.8) TP at 3 thresholds: precision .5 at every recall
# point there, recall 1; 0 at the 7 others.
# maxDets 1: one detection per video: d5 and d3 for category 1 (recall 0), d2 and d4 for 2.
# Every track has fewer than 128^2 px: small = all, medium and large have no gt (-1).
P1 = 25.5 / 101
HAND_STATS = {
    "AP": (10 * P1 + 3 * 0.5) / 20, "AP50": (P1 + 0.5) / 2, "AP75": P1 / 2,
    "APs": (10 * P1 + 3 * 0.5) / 20, "APm": -1, "APl": -1,
    "AR1": (10 * 0 + 3 * 1) / 20, "AR10": (10 * 0.5 + 3 * 1) / 20, "AR100": (10 * 0.5 + 3 * 1) / 20,
    "ARs": (10 * 0.5 + 3 * 1) / 20, "ARm": -1, "ARl": -1,
}


def test_hand_computed():
    annotations, results = hand_dataset()
    kept = copy.deepcopy((annotations, results))
    stats = evaluate_ytvis(annotations, results)
    assert list(stats) == list(STAT_KEYS)
    assert all(type(v) is float for v in stats.values())
    assert stats == pytest.approx(HAND_STATS, abs=1e-12)
    assert (annotations, results) == kept  # the inputs are not modified


def test_paths_equal_the_loaded_json(tmp_path):
    annotations, results = hand_dataset()
    (tmp_path / "gt.json").write_text(json.dumps(annotations))
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert evaluate_ytvis(tmp_path / "gt.json", str(tmp_path / "res.json")) == evaluate_ytvis(annotations, results)


def test_summary_lines():
    lines = summary_lines(evaluate_ytvis(*hand_dataset()))
    assert len(lines) == 12
    assert lines[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.201"
    assert lines[2] == " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.126"
    assert lines[4] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.150"
    assert lines[9] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.400"


@pytest.mark.parametrize("forms", [(polygon, uncompressed), (uncompressed, polygon)])
def test_ground_truth_forms_agree(forms):
    # Polygons and uncompressed RLE, converted as the official's annToRLE does, give the
    # numbers of the compressed RLE.
    assert evaluate_ytvis(*hand_dataset(forms)) == evaluate_ytvis(*hand_dataset())


def test_official_quirks():
    annotations, results = hand_dataset()
    want = evaluate_ytvis(annotations, results)
    # A gt "ignore" field is not read (the official overwrites it with iscrowd).
    annotations["annotations"][2]["ignore"] = 1
    assert evaluate_ytvis(annotations, results) == want
    # The gt areas, not the masks, place a gt track in an area range: gt 1 said "large".
    annotations["annotations"][0]["areas"] = [70000, None, 0]
    stats = evaluate_ytvis(annotations, results)
    # Large: category 1 has gt 1 only, found by d1 (.9) after d5 (.95, area 0: out of range,
    # ignored) -> AP 1, recall 1; category 2 has none.
    assert stats["APl"] == pytest.approx(1.0) and stats["ARl"] == 1.0
    # A gt with id 0 matched is unmatched for the official (0 is its "no match"): d1 is a
    # FP, and gt 1 is missed; category 1 falls to nothing.
    annotations, results = hand_dataset()
    annotations["annotations"][0]["id"] = 0
    stats = evaluate_ytvis(annotations, results)
    assert stats["AP"] == pytest.approx((3 * 0.5) / 20) and stats["AR100"] == pytest.approx(3 / 20)


@pytest.mark.parametrize("ids,found", [((0, 5), True), ((5, 0), False)])
def test_equal_ious_match_the_later_track(ids, found):
    # Two equal tracks and one detection equal to both: the official's scan lets the later
    # one replace the earlier. Matched to the track with id 0, the detection is a FP.
    annotations = {"videos": [{"id": 1, "height": 4, "width": 5, "length": 1}], "categories": [{"id": 1}],
                   "annotations": [{"id": i, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                    "segmentations": track(TOP), "areas": areas(TOP)} for i in ids]}
    stats = evaluate_ytvis(annotations, [{"video_id": 1, "category_id": 1, "score": 1.0, "segmentations": track(TOP)}])
    # Found: recall 1/2, precision 1 at the 51 recall points up to .5.
    assert stats["AR100"] == (0.5 if found else 0.0)
    assert stats["AP"] == pytest.approx(51 / 101 if found else 0.0)


def test_crowd_takes_many_and_ignores_them():
    annotations, results = hand_dataset()
    # Two more copies of the crowd track: all three ignored, nothing changes.
    results += [dict(results[3], score=s) for s in (0.75, 0.2)]
    assert evaluate_ytvis(annotations, results) == pytest.approx(HAND_STATS, abs=1e-12)
    # Not crowd, gt 4 is found once: category 1 has 3 gt; the .75 copy finds gt 4, d3 (.7)
    # and the .2 copy are FPs.
    annotations["annotations"][3]["iscrowd"] = 0
    stats = evaluate_ytvis(annotations, results)
    assert stats["AR100"] == pytest.approx((10 * 2 / 3 + 3) / 20)


def test_detections_cut_at_100_per_video_and_category():
    annotations, results = hand_dataset()
    # 100 empty detections scored above d1 push it out of video 1's 100: category 1 is left
    # with nothing (d3 is ignored).
    results += [dict(results[1], score=0.91) for _ in range(99)]
    stats = evaluate_ytvis(annotations, results)
    assert stats["AR100"] == pytest.approx((10 * 0 + 3 * 1) / 20)
    assert stats["AP"] == pytest.approx((3 * 0.5) / 20)


def test_empty_results_score_zero():
    annotations, _ = hand_dataset()
    stats = evaluate_ytvis(annotations, [])
    assert stats == {k: (0.0 if k in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs") else -1.0) for k in STAT_KEYS}


def test_perfect_results_per_area_range():
    # One track per range (mean areas 100, 150^2, 280^2 px), on a 300 x 300 video.
    boxes = {"small": [0, 0, 10, 10], "medium": [0, 0, 150, 150], "large": [10, 10, 280, 280]}
    annotations = {"videos": [{"id": 7, "height": 300, "width": 300, "length": 2}],
                   "categories": [{"id": 1}, {"id": 2}], "annotations": []}
    results = []
    for i, box in enumerate(boxes.values()):  # categories 1, 2, 1
        segm = [box_rle(box, 300, 300), None]
        annotations["annotations"].append({"id": i + 1, "video_id": 7, "category_id": 1 + i % 2, "iscrowd": 0,
                                           "segmentations": segm, "areas": [box[2] * box[3], None]})
        results.append({"video_id": 7, "category_id": 1 + i % 2, "score": 1.0, "segmentations": segm})
    stats = evaluate_ytvis(annotations, results)
    # AR1: category 1 has two tracks in the video, one found with maxDets 1: (1/2 + 1) / 2.
    assert stats == pytest.approx({k: (0.75 if k == "AR1" else 1.0) for k in STAT_KEYS})
    annotations["annotations"].pop()
    results.pop()
    stats = evaluate_ytvis(annotations, results)
    assert stats["APl"] == stats["ARl"] == -1.0 and stats["AP"] == pytest.approx(1.0) and stats["AR1"] == 1.0


# Random datasets: tracks of rectangles in videos of several sizes (the areas cover the
# three ranges), each video's tracks in their own band of rows, so that they never overlap.
SIZES = [(4, 5), (12, 16), (200, 300), (480, 480)]


@st.composite
def datasets(draw):
    categories = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True))
    videos, anns = [], []
    for video_id in draw(st.lists(st.integers(1, 50), min_size=1, max_size=3, unique=True)):
        height, width = draw(st.sampled_from(SIZES))
        frames = draw(st.integers(1, 3))
        videos.append({"id": video_id, "height": height, "width": width, "length": frames})
        n = draw(st.integers(0, 3))
        band = height // max(n, 1)
        for i in range(n):
            segms = []
            for _ in range(frames):
                if draw(st.booleans()):
                    segms.append(None)
                    continue
                y = i * band + draw(st.integers(0, band - 1))
                x = draw(st.integers(0, width - 1))
                h = draw(st.integers(1, (i + 1) * band - y))
                w = draw(st.integers(1, width - x))
                segms.append([x, y, w, h])
            if not any(segms):  # a track without any mask can never be found
                segms[0] = [0, i * band, 1, 1]
            anns.append({"id": len(anns) + 1, "video_id": video_id, "category_id": draw(st.sampled_from(categories)),
                         "iscrowd": int(draw(st.integers(0, 5)) == 0),
                         "segmentations": [None if b is None else box_rle(b, height, width) for b in segms],
                         "areas": [None if b is None else b[2] * b[3] for b in segms]})
    return {"videos": videos, "categories": [{"id": c} for c in categories], "annotations": anns}


@settings(max_examples=40, deadline=None)
@given(data=datasets())
def test_perfect_results_score_one(data):
    results = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentations": a["segmentations"]} for a in data["annotations"] if not a["iscrowd"]]
    stats = evaluate_ytvis(data, results)
    regular = [a for a in data["annotations"] if not a["iscrowd"]]
    mean_areas = [np.mean([x for x in a["areas"] if x]) for a in regular]
    in_range = {"": mean_areas, "s": [m for m in mean_areas if m <= 128 ** 2],
                "m": [m for m in mean_areas if 128 ** 2 <= m <= 256 ** 2], "l": [m for m in mean_areas if m >= 256 ** 2]}
    for key in STAT_KEYS:
        if key == "AR1":
            continue
        suffix = key[2:] if key[2:] in ("s", "m", "l") else ""
        # (precision 1 is tp / (tp + fp + eps), as the official: approx)
        assert stats[key] == pytest.approx(1.0 if in_range[suffix] else -1.0), key
    # maxDets 1 finds all only where no video has two tracks of one category.
    per_video = [(a["video_id"], a["category_id"]) for a in regular]
    assert (stats["AR1"] == 1.0) == (bool(regular) and len(set(per_video)) == len(per_video))


def random_box(rng, height: int, width: int) -> list[int]:
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    return [x, y, int(rng.integers(1, width - x + 1)), int(rng.integers(1, height - y + 1))]


def jittered(rng, box, height: int, width: int) -> list[int]:
    """box = [x, y, w, h] moved and resized by up to 2 px, inside the frame."""
    x, y, w, h = (np.asarray(box, int) + rng.integers(-2, 3, 4)).tolist()
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    return [x, y, min(max(w, 1), width - x), min(max(h, 1), height - y)]


@settings(max_examples=30, deadline=None)
@given(data=datasets(), seed=st.integers(0, 2 ** 32 - 1), order=st.randoms(use_true_random=False))
def test_results_order_does_not_matter(data, seed, order):
    # Random detections (jittered ground truth and rectangles anywhere), every score distinct:
    # only equal scores keep the results' order.
    rng = np.random.default_rng(seed)
    videos = {v["id"]: v for v in data["videos"]}
    results = []
    for video in data["videos"]:
        h, w = video["height"], video["width"]
        for _ in range(rng.integers(0, 4)):
            boxes = [None if rng.random() < 0.3 else random_box(rng, h, w) for _ in range(video["length"])]
            category = data["categories"][rng.integers(len(data["categories"]))]["id"]
            results.append({"video_id": video["id"], "category_id": category,
                            "segmentations": [None if b is None else box_rle(b, h, w) for b in boxes]})
    for ann in data["annotations"]:
        h, w = videos[ann["video_id"]]["height"], videos[ann["video_id"]]["width"]
        segms = [None if s is None else box_rle(jittered(rng, mask_utils.toBbox(s), h, w), h, w)
                 for s in ann["segmentations"]]
        results.append({"video_id": ann["video_id"], "category_id": ann["category_id"], "segmentations": segms})
    for score, entry in zip(rng.permutation(len(results)), results):
        entry["score"] = float(score + 1) / len(results)
    want = evaluate_ytvis(data, results)
    order.shuffle(results)
    assert evaluate_ytvis(data, results) == want


def official_iou(d_seq, g_seq) -> float:
    """The official's definition, frame by frame with pycocotools' merge."""
    inter = union = 0.0
    for d, g in zip(d_seq, g_seq):
        if d and g:
            inter += mask_utils.area(mask_utils.merge([d, g], True))
            union += mask_utils.area(mask_utils.merge([d, g], False))
        elif d or g:
            union += mask_utils.area(d or g)
    return inter / union if union > 0 else 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), dts=st.integers(0, 4), gts=st.integers(0, 4), frames=st.integers(0, 4))
def test_track_ious_equal_the_official_definition(seed, dts, gts, frames):
    # Random pixel masks (all-empty ones too); the gt may have more or fewer frames than the
    # video, and an RLE of another size than it (both of which the official takes as they come).
    rng = np.random.default_rng(seed)

    def random_track(length, other_size):
        masks = [None if rng.random() < 0.3 else rng.random((6, 7)) < rng.random() for _ in range(length)]
        return [None if m is None else rle(np.pad(m, ((0, 1), (0, 0))) if other_size and rng.random() < 0.3 else m)
                for m in masks]

    d_rles = [random_track(frames, False) for _ in range(dts)]
    g_rles = [random_track(frames + int(rng.integers(-1, 2)) if frames else 0, True) for _ in range(gts)]
    detections = [_Detection(r, _areas(r), 0.0, 1.0) for r in d_rles]
    truths = [_GroundTruth(r, _areas(r), 0.0, np.array([s is not None and s["size"] == [6, 7] for s in r], bool),
                           False, False, True) for r in g_rles]
    got = _track_ious(detections, truths, frames)
    want = np.array([[official_iou(d, g) for g in g_rles] for d in d_rles]).reshape(dts, gts)
    assert got.shape == want.shape and np.array_equal(got, want)


# Bad input: each error names the entry.
def drop(key):
    return lambda entry: entry.pop(key)


@pytest.mark.parametrize("change,message", [
    (drop("score"), "results[3] (video_id 2) lacks 'score'"),
    (drop("segmentations"), "results[3] (video_id 2) lacks 'segmentations'"),
    (drop("video_id"), "results[3] (video_id None) lacks 'video_id'"),
    (lambda e: e.update(video_id=9), "results[3] (video_id 9): the annotations have no video with that id"),
    (lambda e: e.update(category_id=3), "results[3] (video_id 2): category_id 3 is none of the annotations' categories [1, 2]"),
    (lambda e: e.update(score="high"), "results[3] (video_id 2): score 'high' is not a number"),
    (lambda e: e["segmentations"].append(None), "results[3] (video_id 2): 'segmentations' must be a list of one RLE or None "
                                                "per frame; the video has 2 frames, it is 3 entries"),
    (lambda e: e.update(segmentations=None), "the video has 2 frames, it is a NoneType"),
    (lambda e: e["segmentations"].__setitem__(1, rle(np.ones((5, 4), bool))),
     "results[3] (video_id 2): segmentations[1] has size [5, 4], the video's [height, width] is [4, 5]"),
    (lambda e: e["segmentations"].__setitem__(0, [[0, 0, 2, 0, 2, 2]]),
     "results[3] (video_id 2): segmentations[0] is not a compressed RLE"),
    (lambda e: e["segmentations"][0].update(counts=[0, 20]), "results[3] (video_id 2): segmentations[0] is not a compressed RLE"),
    (lambda e: e.update(score=float("nan")), "results[3] (video_id 2): score nan is not a finite number"),
    (lambda e: e.update(score=float("inf")), "results[3] (video_id 2): score inf is not a finite number"),
    # RLEs that pycocotools reads without a word, as some other mask (its runs are unsigned)
    (lambda e: e["segmentations"][1].update(counts=e["segmentations"][1]["counts"][:-1]),
     "results[3] (video_id 2): segmentations[1] is not an RLE pycocotools can decode: its runs cover 16 pixels, "
     "the frame has 20"),
    (lambda e: e["segmentations"][1].update(counts=e["segmentations"][1]["counts"] + "2"),
     "segmentations[1] is not an RLE pycocotools can decode: its runs cover 22 pixels, the frame has 20"),
    (lambda e: e["segmentations"][0].update(counts="0O"), "segmentations[0] is not an RLE pycocotools can decode: "
                                                          "its run 1 is negative (-1)"),
    (lambda e: e["segmentations"][0].update(counts="4€"), "segmentations[0] is not an RLE pycocotools can decode: "
                                                          "its counts hold characters outside COCO's RLE alphabet"),
    (lambda e: e["segmentations"][0].update(counts="4 "), "its counts hold characters outside COCO's RLE alphabet"),
    (lambda e: e["segmentations"][0].update(counts="4P"), "segmentations[0] is not an RLE pycocotools can decode: "
                                                          "its counts end inside a run (cut short?)"),
    (lambda e: e["segmentations"][0].update(counts=""), "segmentations[0] is not an RLE pycocotools can decode: "
                                                        "its counts are empty"),
    (lambda e: e["segmentations"][0].update(counts="PPPPPPP0"), "its counts hold a run of more than 7 characters"),
])
def test_bad_results_entry(change, message):
    annotations, results = hand_dataset()
    change(results[3])
    with pytest.raises(EvaluationError) as info:
        evaluate_ytvis(annotations, results)
    assert message in str(info.value)


def test_a_damaged_rle_is_refused_not_scored():
    """Perfect results with one RLE damaged: pycocotools would score it as some other mask
    (AP below 1, without a word); refused, naming the entry and the frame."""
    annotations, _ = hand_dataset()
    results = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentations": copy.deepcopy(a["segmentations"])} for a in annotations["annotations"]]
    assert evaluate_ytvis(annotations, results)["AP"] == pytest.approx(1.0)
    results[1]["segmentations"][1]["counts"] = results[1]["segmentations"][1]["counts"][:-1] + "1"
    with pytest.raises(EvaluationError, match=r"^results\[1\] \(video_id 1\): segmentations\[1\] is not an RLE "
                                              r"pycocotools can decode: its runs cover"):
        evaluate_ytvis(annotations, results)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), height=st.integers(1, 40), width=st.integers(1, 40), count=st.integers(1, 5))
def test_every_rle_pycocotools_writes_is_accepted(seed, height, width, count):
    """Random masks (noise, blocks, empty, full), several at once; and any one character
    changed is either refused or still an RLE that decodes to a whole frame."""
    rng = np.random.default_rng(seed)
    kinds = [lambda: rng.random((height, width)) < rng.random(), lambda: np.zeros((height, width), bool),
             lambda: np.ones((height, width), bool),
             lambda: block(slice(rng.integers(height), None), slice(rng.integers(width), None), (height, width))]
    counts = [rle(kinds[rng.integers(len(kinds))]())["counts"] for _ in range(count)]
    assert _rle_problem(counts, height * width) is None
    assert _rle_problem([c.encode() for c in counts], height * width) is None
    i = int(rng.integers(count))
    text = list(counts[i])
    text[rng.integers(len(text))] = chr(rng.integers(48, 112))
    changed = counts[:i] + ["".join(text)] + counts[i + 1:]
    problem = _rle_problem(changed, height * width)
    if problem is None:
        mask = mask_utils.decode({"size": [height, width], "counts": changed[i].encode()})
        assert mask.shape == (height, width) and mask_utils.area(mask_utils.encode(mask)) == \
            mask_utils.area({"size": [height, width], "counts": changed[i].encode()})
    else:
        assert problem[0] == i


def test_bad_results():
    annotations, results = hand_dataset()
    with pytest.raises(EvaluationError, match=r"results: a YouTube-VIS results json is a list of entries, got dict"):
        evaluate_ytvis(annotations, {"results": results})
    with pytest.raises(EvaluationError, match=r"results\[1\] is a str, not an object"):
        evaluate_ytvis(annotations, [results[0], "oops"])


@pytest.mark.parametrize("change,message", [
    (lambda a: a.pop("videos"), "not a YouTube-VIS json: it needs lists 'videos', 'annotations' and 'categories', "
                                "found ['annotations', 'categories']"),
    (lambda a: a.pop("annotations"), "it needs lists 'videos', 'annotations' and 'categories'"),
    (lambda a: a.pop("categories"), "it needs lists 'videos', 'annotations' and 'categories'"),
    (lambda a: a["videos"][1].pop("length"), "videos[1] needs 'id', 'height', 'width' and 'file_names' or 'length'"),
    (lambda a: a["videos"][0].pop("height"), "videos[0] needs 'id', 'height', 'width' and 'file_names' or 'length'"),
    (lambda a: a["categories"].append({"name": "x"}), "categories[2] has no 'id'"),
    (lambda a: a["annotations"][2].pop("areas"), "annotations[2] (id 3) lacks 'areas'"),
])
def test_bad_annotations(change, message):
    annotations, results = hand_dataset()
    change(annotations)
    with pytest.raises(EvaluationError) as info:
        evaluate_ytvis(annotations, results)
    assert message in str(info.value)


def test_coco_images_json_is_not_youtube_vis(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(EvaluationError, match="not a YouTube-VIS json"):
        evaluate_ytvis(path, [])
    with pytest.raises(EvaluationError, match="cannot read"):
        evaluate_ytvis(tmp_path / "missing.json", [])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EvaluationError, match="is not a json file"):
        evaluate_ytvis(tmp_path / "bad.json", [])


def test_thresholds_are_the_officials():
    # The summary picks IoU .50 and .75 by equality with linspace's floats, as the official.
    assert np.count_nonzero(IOU_THRESHOLDS == 0.5) == np.count_nonzero(IOU_THRESHOLDS == 0.75) == 1
    assert len(RECALL_THRESHOLDS) == 101 and RECALL_THRESHOLDS[50] == 0.5
