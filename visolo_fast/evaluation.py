"""YouTube-VIS evaluation: the twelve AP / AR numbers of a results list against a YouTube-VIS
ground-truth json.

:func:`evaluate_ytvis` computes what the official evaluator computes -- youtubevos/cocoapi,
``PythonAPI/pycocotools``: ``YTVOS.loadRes``, then ``YTVOSeval(gt, dt, 'segm')``
``evaluate()``, ``accumulate()``, ``summarize()`` -- written from its definition:

- Per video and category, the detections sorted by score (stable: equal scores keep the
  results' order) and cut at 100.
- The spatio-temporal IoU of a detection and a ground-truth track: the sum over frames of the
  intersections over the sum over frames of the unions; a frame where only one side has a
  mask adds that mask's area to the union; 0 when the union is 0.
- COCO's greedy matching per IoU threshold (.50:.05:.95), highest score first. Crowd tracks
  (``iscrowd``) are ignored: a detection matched to one counts neither way, and a crowd
  track can take any number of detections.
- Area ranges all / small / medium / large: [0, 1e5^2], [0, 128^2], [128^2, 256^2],
  [256^2, 1e5^2], both ends inclusive, on a track's mean area over its frames of non-zero
  area -- for ground truth the json's ``areas`` (not its masks), for results their masks;
  0 for a track with no such frame. Out-of-range ground truth is ignored, and so are the
  unmatched detections out of range.
- Per category, area range and maxDets (1 / 10 / 100 per video), over all videos: precision
  at 101 recall points (0:.01:1) and the highest recall. AP is the mean precision over the
  recall points, IoU thresholds and categories, AR the mean recall over the IoU thresholds
  and categories; a category without ground truth in the range counts in neither, and -1
  means that no category has any.

The official's quirks are kept, so that the numbers are its numbers:

- A ground-truth ``ignore`` field is not read: only ``iscrowd`` ignores (the official
  overwrites ``ignore`` with it).
- The official records a match as the ground truth's id, 0 meaning "none": a detection
  matched to a ground-truth track with id 0 is a false positive (or ignored, out of range),
  and the track, taken, is missed.
- Crowd tracks use the plain IoU, not COCO's intersection over the detection's area.
- Equal IoUs: of the candidates (regular tracks, then ignored ones, each in file order),
  the later one is matched.
- Only the frames both tracks have count (the official zips their frame lists), and a frame
  where the ground truth's RLE has another size than the detection's adds nothing to either
  sum (pycocotools merges masks of different sizes into an empty one).
- Ground-truth ids that repeat: each listing loads the last annotation with that id (the
  official indexes annotations by id).

Where the official would fail, assert, or silently drop entries, :class:`EvaluationError` says
which entry and what is wrong. Two extensions: an empty results list scores 0 (the official
fails on it) and a ground-truth annotation without ``iscrowd`` is not crowd (the official
fails on it).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from visolo_fast.io.coco_mask import mask_api

__all__ = ["EvaluationError", "STAT_KEYS", "evaluate_ytvis", "summary_lines"]


def _mask_utils():
    return mask_api("the YouTube-VIS evaluation (visolo_fast.evaluate_ytvis)")


# The official's parameters (ytvoseval.Params.setDetParams); linspace, as it, so that the
# thresholds are the same floats.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = (1, 10, 100)
AREA_RANGES = (("all", 0, 1e5 ** 2), ("small", 0, 128 ** 2), ("medium", 128 ** 2, 256 ** 2),
               ("large", 256 ** 2, 1e5 ** 2))

# Each statistic, in the official's order: (key, AP (precision) or AR (recall), IoU threshold
# (None: the mean over all ten), area range, maxDets).
_SUMMARY = (
    ("AP", True, None, "all", 100),
    ("AP50", True, 0.5, "all", 100),
    ("AP75", True, 0.75, "all", 100),
    ("APs", True, None, "small", 100),
    ("APm", True, None, "medium", 100),
    ("APl", True, None, "large", 100),
    ("AR1", False, None, "all", 1),
    ("AR10", False, None, "all", 10),
    ("AR100", False, None, "all", 100),
    ("ARs", False, None, "small", 100),
    ("ARm", False, None, "medium", 100),
    ("ARl", False, None, "large", 100),
)
STAT_KEYS = tuple(row[0] for row in _SUMMARY)

_ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations", "areas")
_RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")


class EvaluationError(ValueError):
    """Annotations that are not YouTube-VIS, or a results entry that does not fit them: the
    message names the entry (its index in the list and its video_id) and what is wrong."""


@dataclass
class _Track:
    """One track of a video: ``rles[f]`` the COCO RLE of frame f or None (no mask);
    ``areas`` (int64[len(rles)]) their areas, 0 for None; ``avg_area`` the one the area
    ranges use."""

    rles: list[dict | None]
    areas: np.ndarray
    avg_area: float


@dataclass
class _Detection(_Track):
    """A results entry; ``score`` its score."""

    score: float


@dataclass
class _GroundTruth(_Track):
    """``fits`` (bool[len(rles)]): the frame's RLE has the video's size; ``id_nonzero``: a
    match to it counts as one (see the module docstring)."""

    fits: np.ndarray
    ignore: bool
    crowd: bool
    id_nonzero: bool


@dataclass
class _VideoEval:
    """One video, category and area range, as the official's evaluateVid: the detections'
    ``scores`` (float64[D], highest first), ``matched`` and ``ignored`` (bool[T, D], per IoU
    threshold), and the ground truth's ``gt_ignored`` (bool[G])."""

    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    gt_ignored: np.ndarray


def evaluate_ytvis(annotations: str | os.PathLike | Mapping, results: str | os.PathLike | list) -> dict[str, float]:
    """The official YouTube-VIS evaluation of ``results`` (see the module docstring).

    Args:
        annotations: a YouTube-VIS ground-truth json (path or loaded dict).
        results: a YouTube-VIS results json (path or loaded list): entries ``{"video_id",
            "category_id", "score", "segmentations": [compressed RLE or None per frame]}``.

    Returns:
        ``{key: float}`` for the keys of :data:`STAT_KEYS`, in that order; -1 where the area
        range has no ground truth.
    """
    _mask_utils()  # NB: before the jsons are read: a missing pycocotools is reported at once
    videos, category_ids, gt_listed = _ground_truth(_load_json(annotations, "annotations"))
    dt_listed = _detections(_load_json(results, "results"), videos, set(category_ids))
    # evals[k][a]: the evaluation of each video (in id order: the official concatenates them
    # so, which orders equal scores) with ground truth or detections of category k.
    evals: list[list[list[_VideoEval]]] = [[[] for _ in AREA_RANGES] for _ in category_ids]
    for k, category in enumerate(category_ids):
        for video_id in sorted(videos):
            video = videos[video_id]
            gts = [_ground_truth_track(ann, video) for ann in gt_listed.get((video_id, category), ())]
            dts = dt_listed.get((video_id, category), [])
            dts = [dts[i] for i in np.argsort([-d.score for d in dts], kind="mergesort")[:MAX_DETS[-1]]]
            if not gts and not dts:
                continue
            ious = _track_ious(dts, gts, _num_frames(video))
            for a, (_, low, high) in enumerate(AREA_RANGES):
                evals[k][a].append(_evaluate_video(dts, gts, ious, low, high))
    precision, recall = _accumulate(evals)
    labels = [label for label, _, _ in AREA_RANGES]
    stats = {}
    for key, is_ap, iou, area, max_dets in _SUMMARY:
        a, m = labels.index(area), MAX_DETS.index(max_dets)
        s = precision[..., a, m] if is_ap else recall[..., a, m]
        if iou is not None:
            s = s[IOU_THRESHOLDS == iou]
        s = s[s > -1]
        stats[key] = float(s.mean()) if s.size else -1.0
    return stats


def summary_lines(stats: Mapping[str, float]) -> list[str]:
    """The twelve lines the official's summarize() prints for ``stats`` (as
    :func:`evaluate_ytvis` returns them), e.g.
    `` Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.412``."""
    lines = []
    for key, is_ap, iou, area, max_dets in _SUMMARY:
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        ious = f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}" if iou is None else f"{iou:0.2f}"
        lines.append(f" {title:<18} {kind} @[ IoU={ious:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {stats[key]:0.3f}")
    return lines


def _load_json(source, what: str):
    """``source`` loaded if it is a path, else itself."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    try:
        with open(source, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise EvaluationError(f"{what}: cannot read {source}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{what}: {source} is not a json file ({exc})") from None


def _num_frames(video: Mapping) -> int | None:
    """The video's number of frames: of ``file_names``, else ``length``; None if neither."""
    names, length = video.get("file_names"), video.get("length")
    if isinstance(names, list):
        return len(names)
    if isinstance(length, int) and not isinstance(length, bool):
        return length
    return None


def _ground_truth(data) -> tuple[dict, list, dict[tuple, list[Mapping]]]:
    """The videos by id, the category ids sorted, and the ground-truth annotations of each
    (video_id, category_id), in the order and with the quirks the official loads them."""
    what = "annotations: not a YouTube-VIS json"
    lists = ("videos", "annotations", "categories")
    if not isinstance(data, Mapping) or not all(isinstance(data.get(key), list) for key in lists):
        found = sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__
        raise EvaluationError(f"{what}: it needs lists 'videos', 'annotations' and 'categories', found {found}")
    videos = {}
    for index, video in enumerate(data["videos"]):
        if not (isinstance(video, Mapping) and all(key in video for key in ("id", "height", "width"))
                and isinstance(video["id"], Hashable) and _num_frames(video) is not None):
            raise EvaluationError(f"{what}: videos[{index}] needs 'id', 'height', 'width' and 'file_names' or 'length'")
        videos[video["id"]] = video  # a repeated id: the last, as the official's index
    for index, category in enumerate(data["categories"]):
        if not (isinstance(category, Mapping) and "id" in category and isinstance(category["id"], Hashable)):
            raise EvaluationError(f"{what}: categories[{index}] has no 'id'")
    category_ids = sorted({category["id"] for category in data["categories"]})
    annotations = data["annotations"]
    for index, ann in enumerate(annotations):
        missing = [key for key in _ANNOTATION_KEYS if not isinstance(ann, Mapping) or key not in ann]
        if missing:
            name = ann.get("id") if isinstance(ann, Mapping) else None
            raise EvaluationError(f"{what}: annotations[{index}] (id {name!r}) lacks {', '.join(map(repr, missing))}")
    # The official lists each video's annotations (filtered by the listed one's category) and
    # loads each by its id: a repeated id loads the last annotation with it, every time.
    by_id = {ann["id"]: ann for ann in annotations}
    by_video = defaultdict(list)
    for ann in annotations:
        by_video[ann["video_id"]].append(ann)
    categories = set(category_ids)
    listed = defaultdict(list)
    for video_id in sorted(videos):
        for ann in by_video.get(video_id, ()):
            if ann["category_id"] in categories:
                loaded = by_id[ann["id"]]
                listed[loaded["video_id"], loaded["category_id"]].append(loaded)
    return videos, category_ids, listed


def _areas(rles: list[dict | None]) -> np.ndarray:
    """int64[len(rles)]: each RLE's area, 0 for None (one pycocotools call)."""
    mask_utils = _mask_utils()
    frames = [f for f, rle in enumerate(rles) if rle is not None]
    areas = np.zeros(len(rles), np.int64)
    if frames:
        areas[frames] = mask_utils.area([rles[f] for f in frames])
    return areas


def _ground_truth_track(ann: Mapping, video: Mapping) -> _GroundTruth:
    """A ground-truth annotation, its frames as COCO RLEs as the official's annToRLE makes them."""
    mask_utils = _mask_utils()
    height, width = video["height"], video["width"]
    rles: list[dict | None] = []
    for segm in ann["segmentations"]:
        if not segm:  # the official tests truthiness: None, [] and {} are frames without a mask
            rles.append(None)
        elif isinstance(segm, list):  # polygons: one mask of all the parts
            rles.append(mask_utils.merge(mask_utils.frPyObjects(segm, height, width)))
        elif isinstance(segm["counts"], list):  # uncompressed RLE
            rles.append(mask_utils.frPyObjects(segm, height, width))
        else:
            rles.append(segm)
    fits = np.array([rle is not None and list(rle["size"]) == [height, width] for rle in rles], bool)
    # The area ranges read the json's areas, not the masks': the mean of the truthy ones.
    areas = [area for area in ann["areas"] if area]
    iscrowd = ann.get("iscrowd", 0)
    # The official ignores a truthy iscrowd, and lets int(iscrowd) != 0 take many matches.
    return _GroundTruth(rles, _areas(rles), np.array(areas).mean() if areas else 0, fits,
                        ignore=bool(iscrowd), crowd=int(iscrowd) != 0, id_nonzero=ann["id"] != 0)


def _detections(results, videos: dict, categories: set) -> dict[tuple, list[_Detection]]:
    """The results entries of each (video_id, category_id), in the results' order, checked."""
    if not isinstance(results, list):
        raise EvaluationError(f"results: a YouTube-VIS results json is a list of entries, got {type(results).__name__}")
    listed = defaultdict(list)
    for index, entry in enumerate(results):
        if not isinstance(entry, Mapping):
            raise EvaluationError(f"results[{index}] is a {type(entry).__name__}, not an object")
        video_id = entry.get("video_id")
        where = f"results[{index}] (video_id {video_id!r})"
        missing = [key for key in _RESULT_KEYS if key not in entry]
        if missing:
            raise EvaluationError(f"{where} lacks {', '.join(map(repr, missing))}")
        video = videos.get(video_id) if isinstance(video_id, Hashable) else None
        if video is None:
            raise EvaluationError(f"{where}: the annotations have no video with that id")
        category_id, score, segms = entry["category_id"], entry["score"], entry["segmentations"]
        if not isinstance(category_id, Hashable) or category_id not in categories:
            raise EvaluationError(f"{where}: category_id {category_id!r} is none of the annotations' categories "
                                  f"{sorted(categories)}")
        if not isinstance(score, numbers.Real):
            raise EvaluationError(f"{where}: score {score!r} is not a number")
        if not math.isfinite(score):  # NB: NaN sorts anywhere: the ranking, so the AP, would be arbitrary
            raise EvaluationError(f"{where}: score {score!r} is not a finite number")
        frames = _num_frames(video)
        if not isinstance(segms, list) or len(segms) != frames:
            got = f"{len(segms)} entries" if isinstance(segms, list) else f"a {type(segms).__name__}"
            raise EvaluationError(f"{where}: 'segmentations' must be a list of one RLE or None per frame; "
                                  f"the video has {frames} frames, it is {got}")
        size = [video["height"], video["width"]]
        rles: list[dict | None] = []
        for f, segm in enumerate(segms):
            if not segm:  # the official's loadRes: a falsy entry is a frame without a mask
                rles.append(None)
                continue
            if not (isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes))
                    and isinstance(segm.get("size"), (list, tuple))):
                raise EvaluationError(f"{where}: segmentations[{f}] is not a compressed RLE "
                                      "{'size': [height, width], 'counts': str}, the form the official reads")
            if list(segm["size"]) != size:
                raise EvaluationError(f"{where}: segmentations[{f}] has size {list(segm['size'])}, "
                                      f"the video's [height, width] is {size}")
            rles.append(segm)
        frames_with_masks = [f for f, rle in enumerate(rles) if rle is not None]
        problem = _rle_problem([rles[f]["counts"] for f in frames_with_masks], size[0] * size[1])
        if problem:
            raise EvaluationError(f"{where}: segmentations[{frames_with_masks[problem[0]]}] is not an RLE "
                                  f"pycocotools can decode: {problem[1]}")
        areas = _areas(rles)
        nonzero = areas[areas != 0]  # the official's mean skips the frames of area 0 as well
        listed[video_id, category_id].append(
            _Detection(rles, areas, nonzero.mean() if nonzero.size else 0, float(score)))
    return listed


def _rle_problem(counts: list[str | bytes], pixels: int) -> tuple[int, str] | None:
    """The first of the ``counts`` strings of compressed COCO RLEs (frames of ``pixels``
    pixels each) that is not one, and what is wrong with it; None if all are. pycocotools
    decodes any string without a check (its runs are unsigned: a negative one wraps), so a
    damaged one would score as some other mask.

    The format (pycocotools' rleToString): each run as 5-bit groups, low first, in characters
    48 + group, 0x20 set on all but a run's last character, whose 0x10 is the sign; from the
    third run on, each is stored as its difference with the run two before. All the strings
    are read at once (one numpy pass for a track).
    """
    alphabet = "its counts hold characters outside COCO's RLE alphabet ('0' to 'o')"
    encoded = []
    for i, text in enumerate(counts):
        if isinstance(text, str) and not text.isascii():
            return i, alphabet
        encoded.append(text.encode("ascii") if isinstance(text, str) else bytes(text))
        if not encoded[-1]:
            return i, "its counts are empty"
    if not encoded:
        return None
    ends = np.cumsum([len(e) for e in encoded])  # one past each string's last character
    c = np.frombuffer(b"".join(encoded), np.uint8)
    bad = (c < 48) | (c > 111)
    if bad.any():
        return int(np.searchsorted(ends, np.argmax(bad), side="right")), alphabet
    c = c.astype(np.int64) - 48
    last = (c & 0x20) == 0  # the last character of each run
    if not last[ends - 1].all():
        return int(np.argmin(last[ends - 1])), "its counts end inside a run (cut short?)"
    # k: each character's group number in its run, the characters of the run before it
    k = np.zeros(c.size, np.int64)
    inside = np.ones(c.size, bool)
    for j in range(1, 8):
        inside[j:] &= ~last[:-j]
        inside[:j] = False
        if not inside.any():
            break
        if j == 7:  # NB: 7 groups hold 35 bits; more would overflow, and no frame has 2^31 pixels
            return int(np.searchsorted(ends, np.argmax(inside), side="right")), \
                "its counts hold a run of more than 7 characters"
        k += inside
    ends_of_runs = np.flatnonzero(last)
    values = np.diff(np.cumsum((c & 0x1F) << (5 * k))[ends_of_runs], prepend=0)
    negative = (c[last] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (k[last][negative] + 1))
    # Undo the differences: within a string, runs 1, 3, 5... and runs 2, 4, 6... are each a
    # cumulative sum; run 0 stands alone.
    owner = np.searchsorted(ends, ends_of_runs, side="right")  # the string of each run
    starts = np.flatnonzero(np.diff(owner, prepend=-1))  # each string's first run
    index = np.arange(values.size) - starts[owner]  # each run's index in its string
    runs = values.copy()
    for chain in (index % 2 == 1, (index % 2 == 0) & (index > 0)):
        chained = np.where(chain, values, 0)
        sums = np.cumsum(chained)
        runs[chain] = (sums - (sums - chained)[starts][owner])[chain]
    if (runs < 0).any():
        at = int(np.argmax(runs < 0))
        return int(owner[at]), f"its run {int(index[at])} is negative ({int(runs[at])})"
    covered = np.bincount(owner, weights=runs, minlength=len(encoded))
    if (covered != pixels).any():
        at = int(np.argmax(covered != pixels))
        return at, f"its runs cover {int(covered[at])} pixels, the frame has {pixels}"
    return None


def _track_ious(dts: list[_Detection], gts: list[_GroundTruth], frames: int) -> np.ndarray:
    """float64[D, G]: the spatio-temporal IoU of each detection (``frames`` frames each) with
    each ground-truth track: sum of intersections / sum of unions, as integers until the
    division (the official sums integer areas in float64, exact too)."""
    D, G = len(dts), len(gts)
    if not D or not G:
        return np.zeros((D, G))
    mask_utils = _mask_utils()
    # The official zips the two frame lists: only the frames both tracks have count; a
    # ground-truth frame past the video's is no frame.
    d_present = np.array([[rle is not None for rle in d.rles] for d in dts], bool).reshape(D, frames)
    d_areas = np.stack([d.areas for d in dts]).reshape(D, frames)
    g_present, g_fits = np.zeros((G, frames), bool), np.zeros((G, frames), bool)
    g_areas = np.zeros((G, frames), np.int64)
    spans = np.array([min(frames, len(g.rles)) for g in gts])
    for j, (g, span) in enumerate(zip(gts, spans)):
        g_present[j, :span] = [rle is not None for rle in g.rles[:span]]
        g_fits[j, :span], g_areas[j, :span] = g.fits[:span], g.areas[:span]
    # Every mask adds its area to the union; the frames where both have one take back their
    # intersection (or everything, when the sizes differ: their merge is empty).
    d_cumulative = np.concatenate([np.zeros((D, 1), np.int64), np.cumsum(d_areas, axis=1)], axis=1)
    union = d_cumulative[:, spans] + g_areas.sum(axis=1)
    inter = np.zeros_like(union)
    for f in np.flatnonzero(d_present.any(axis=0) & g_present.any(axis=0)):
        di, gj = np.flatnonzero(d_present[:, f]), np.flatnonzero(g_present[:, f])
        fit, unfit = gj[g_fits[gj, f]], gj[~g_fits[gj, f]]
        if fit.size:
            # pycocotools' crowd IoU is intersection / detection area, a float whose product
            # with that area rounds back to the exact integer intersection.
            ratio = mask_utils.iou([dts[i].rles[f] for i in di], [gts[j].rles[f] for j in fit], [1] * fit.size)
            both = np.rint(ratio * d_areas[di, f][:, None]).astype(np.int64)
            inter[di[:, None], fit] += both
            union[di[:, None], fit] -= both
        union[di[:, None], unfit] -= d_areas[di, f][:, None] + g_areas[unfit, f]
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def _last_best(candidates: np.ndarray, ious: np.ndarray) -> np.ndarray:
    """int[T]: per row of ``candidates`` (bool[T, G]), the last candidate of highest IoU
    (``ious``: float64[G]), -1 if none; the official scans the candidates in order and lets
    an equal IoU replace the match so far."""
    best = np.where(candidates, ious, -np.inf).max(axis=1)
    is_best = candidates & (ious == best[:, None])
    last = is_best.shape[1] - 1 - np.argmax(is_best[:, ::-1], axis=1)
    return np.where(is_best.any(axis=1), last, -1)


def _evaluate_video(dts: list[_Detection], gts: list[_GroundTruth], ious: np.ndarray,
                    low: float, high: float) -> _VideoEval:
    """COCO's greedy matching of one video and category in the area range [low, high], at
    every IoU threshold at once.

    Args:
        dts: the detections, highest score first; gts: the ground truth, in listed order.
        ious (float64[D, G]): their IoUs.
    """
    out_of_range = np.array([g.ignore or g.avg_area < low or g.avg_area > high for g in gts], bool)
    order = np.argsort(out_of_range, kind="mergesort")  # regular tracks first, stable, as the official
    gt_ignored = out_of_range[order]
    crowd = np.array([gts[j].crowd for j in order], bool)
    id_nonzero = np.array([gts[j].id_nonzero for j in order], bool)
    ious = ious[:, order]
    T, D, G = len(IOU_THRESHOLDS), len(dts), len(gts)
    match = np.full((T, D), -1)
    if D and G:
        thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]
        taken = np.zeros((T, G), bool)
        rows = np.arange(T)
        for d in range(D):
            # A non-crowd track matches once. Matched to a regular track, a detection never
            # looks at the ignored ones; otherwise it takes the best ignored one.
            candidates = (~taken | crowd) & (ious[d] >= thresholds)
            m = _last_best(candidates & ~gt_ignored, ious[d])
            m = np.where(m < 0, _last_best(candidates & gt_ignored, ious[d]), m)
            hit = m >= 0
            taken[rows[hit], m[hit]] = True
            match[:, d] = m
    hit = match >= 0
    matched, ignored = np.zeros((T, D), bool), np.zeros((T, D), bool)
    matched[hit] = id_nonzero[match[hit]]
    ignored[hit] = gt_ignored[match[hit]]
    # The unmatched detections out of the range are not counted either.
    ignored |= ~matched & np.array([d.avg_area < low or d.avg_area > high for d in dts], bool)
    return _VideoEval(np.array([d.score for d in dts], np.float64), matched, ignored, gt_ignored)


def _accumulate(evals: list[list[list[_VideoEval]]]) -> tuple[np.ndarray, np.ndarray]:
    """The official's accumulate: precision (float64[T, R, K, A, M]) and recall
    (float64[T, K, A, M]), -1 where a category has no ground truth in the range.

    Args:
        evals: evals[k][a], the videos' evaluations of category k in area range a.
    """
    T, R, K, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(evals), len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, per_range in enumerate(evals):
        for a, videos in enumerate(per_range):
            positives = sum(int(np.count_nonzero(~e.gt_ignored)) for e in videos)
            if positives == 0:
                continue
            for m, max_dets in enumerate(MAX_DETS):
                # All the videos' detections, each video cut at max_dets, highest score first
                # (stable, over the videos in id order).
                order = np.argsort(-np.concatenate([e.scores[:max_dets] for e in videos]), kind="mergesort")
                matched = np.concatenate([e.matched[:, :max_dets] for e in videos], axis=1)[:, order]
                ignored = np.concatenate([e.ignored[:, :max_dets] for e in videos], axis=1)[:, order]
                tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
                fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
                detections = tp.shape[1]
                rc = tp / positives
                recall[:, k, a, m] = rc[:, -1] if detections else 0
                precision[:, :, k, a, m] = 0  # the recall points past the highest recall reached
                if not detections:
                    continue
                pr = tp / (fp + tp + np.spacing(1))
                # Each point's precision: the best at this recall or any higher.
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(T):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    reached = inds < detections
                    precision[t, reached, k, a, m] = pr[t, inds[reached]]
    return precision, recall
