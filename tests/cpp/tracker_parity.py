"""The C++ tracker (visolo_segment) against the Python tracker on the same package. Run by
ctest (cpp_tracker_parity), and by pytest where the CMake build is there
(tests/test_cpp_tracker.py):

    python tests/cpp/tracker_parity.py path/to/visolo_segment path/to/test_rle

Exports a small package (the lively test net, input 64 x 112, the memory capped at 4 frames),
writes a generated video of 16 frames whose tracks get lost and re-identified as PPM files,
runs visolo_segment on it and the Python tracker (Engine.from_package) over the same package,
and compares their results.json: the same tracks, category ids, scores within 1e-5, every
frame's RLE equal (visolo_segment runs with the Python tracker's thread count: the same
computation, rounded the same). Then the same with max_lost_frames=1 (tracks end and come back as new ones)
and another output size; with frames of the input size (nothing resized); and the C++ COCO
RLE encoder against pycocotools on awkward masks, byte for byte; and the refusals (check_refusals).
Last, the official, unbounded memory on 64 frames whose tracks leave and come back, as it is,
with max_lost_frames=5 and with the memory capped at 3 (check_official).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import visolo_fast as vf  # noqa: E402
from tests.engine.lively import SIZE, lively_net, track_events  # noqa: E402
from visolo_fast.engine.package import export_package  # noqa: E402
from visolo_fast.io.coco_mask import mask_api  # noqa: E402
from visolo_fast.io.ytvis import ResultsRecorder  # noqa: E402
from visolo_fast.sample import sample_frames  # noqa: E402

H, W = 72, 128  # frames: resized to the package's 64 x 112, masks resized back
FRAMES = 16
SCORE_ATOL = 1e-5


def write_ppm(path: str, frame: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(b"P6\n# a generated frame\n%d %d\n255\n" % (frame.shape[1], frame.shape[0]))
        f.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())


def python_tracker(package: str, frames: list[np.ndarray], output_size=None,
                   **changes) -> tuple[list[dict], list[vf.FrameResult]]:
    """The Python tracker's results list (as the CLI writes it) and frame results."""
    tracker = vf.Tracker(vf.Engine.from_package(package, **changes), output_size)
    recorder, results = ResultsRecorder(), []
    for frame in frames:
        results.append(tracker.step(frame))
        recorder.add(results[-1])
    return recorder.results(tracker, video_id=1), results


def cpp_tracker(segment: str, package: str, folder: str, out: str, *options: str) -> tuple[list[dict], str]:
    """visolo_segment's results list and its results.json's text."""
    command = [segment, package, folder, "--out", out, *options]
    # NB: the package's compiled code and its oneDNN convolutions split their sums over as many
    # threads as they run on, and round accordingly: with the Python tracker's thread count,
    # visolo_segment runs the same computation, and its results.json may be compared byte for
    # byte (another thread count may round differently)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    sys.stderr.write(done.stderr)
    assert done.returncode == 0, f"{' '.join(command)}: exit status {done.returncode}"
    with open(os.path.join(out, "results.json")) as f:
        text = f.read()
    return json.loads(text), text


def compare(expected: list[dict], got: list[dict], what: str) -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} tracks, the Python tracker has {len(expected)}"
    for k, (e, g) in enumerate(zip(expected, got)):
        assert g["video_id"] == e["video_id"], f"{what}: track {k}: video_id {g['video_id']} != {e['video_id']}"
        assert g["category_id"] == e["category_id"], f"{what}: track {k}: category_id {g['category_id']} != {e['category_id']}"
        assert abs(g["score"] - e["score"]) <= SCORE_ATOL, f"{what}: track {k}: score {g['score']} != {e['score']}"
        assert len(g["segmentations"]) == len(e["segmentations"]), f"{what}: track {k}: frames differ"
        for t, (a, b) in enumerate(zip(e["segmentations"], g["segmentations"])):
            assert a == b, f"{what}: track {k}, frame {t}: RLE {b} != {a}"


def write_frames(folder: str, frames: list[np.ndarray]) -> str:
    os.makedirs(folder)
    for t, frame in enumerate(frames):  # frame8 before frame10: natural order
        write_ppm(os.path.join(folder, f"frame{t}.ppm"), frame)
    return folder


def check_case(segment: str, package: str, folder: str, frames, out: str, what: str, options=(), output_size=None,
               **changes) -> dict:
    start = time.monotonic()
    got, text = cpp_tracker(segment, package, folder, out, *options)
    cpp_s = time.monotonic() - start
    start = time.monotonic()
    expected, results = python_tracker(package, frames, output_size, **changes)
    python_s = time.monotonic() - start
    compare(expected, got, what)
    happened = track_events(results)
    same = "byte-identical" if text == json.dumps(expected) else "equal"
    print(f"ok: {what}: {len(got)} tracks ({happened}), results.json {same} "
          f"(visolo_segment {cpp_s:.1f} s, Python {python_s:.1f} s)")
    return happened


def check_rle(test_rle: str, folder: str) -> None:
    """encode_rle against pycocotools: empty, full, first pixel set or not, single pixels, long
    runs (several characters a count) and runs shorter than the count two before (negative
    differences), odd sizes."""
    g = torch.Generator().manual_seed(0)
    masks = []
    for h, w in [(1, 1), (3, 5), (72, 128), (64, 112), (37, 1001)]:
        masks += [torch.zeros(h, w, dtype=torch.bool), torch.ones(h, w, dtype=torch.bool)]
        for p in (0.002, 0.5, 0.98):
            masks.append(torch.rand(h, w, generator=g) < p)
        blob = torch.zeros(h, w, dtype=torch.bool)
        blob[h // 4:h // 4 + max(1, h // 2), w // 3:w // 3 + max(1, w // 3)] = True
        masks += [blob, ~blob]
        corner = torch.zeros(h, w, dtype=torch.bool)
        corner[0, 0] = corner[-1, -1] = True
        masks.append(corner)
    coco, ok = mask_api("the RLE check"), 0
    for size in sorted({tuple(m.shape) for m in masks}):  # test_rle reads masks of one size a file
        group = [m for m in masks if tuple(m.shape) == size]
        path = os.path.join(folder, f"masks-{size[0]}x{size[1]}.bin")
        with open(path, "wb") as f:
            f.write(np.array([len(group), *size], np.int64).tobytes())
            f.write(torch.stack(group).numpy().astype(np.uint8).tobytes())
        lines = subprocess.run([test_rle, path], capture_output=True, text=True, check=True).stdout.splitlines()
        for m, line in zip(group, lines, strict=True):
            expected = coco.encode(np.asfortranarray(m.numpy().astype(np.uint8)))["counts"].decode("ascii") \
                if m.any() else "null"
            assert line == expected, f"RLE of a {size} mask: {line!r}, pycocotools {expected!r}"
            ok += 1
    print(f"ok: {ok} masks: encode_rle gives pycocotools' counts")


def with_format(package: str, path: str, version: str) -> str:
    """A copy of ``package`` whose metadata file says another format (the tracker reads it
    before the model loads; the model's compiled-in metadata still says "1")."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("wrapper_metadata.json"):
                data = json.dumps({**json.loads(data), "visolo_fast.format": version}).encode()
            dst.writestr(info, data)
    return path


def without_setting(package: str, path: str, key: str) -> str:
    """A tiny AOTInductor package (x + 1) with ``package``'s metadata but ``key``."""
    metadata = {k: v for k, v in torch._inductor.aoti_load_package(package).get_metadata().items()
                if k.startswith("visolo_fast.") and k != key}

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return x + 1

    program = torch.export.export(Tiny(), (torch.zeros(2),))
    return torch._inductor.aoti_compile_and_package(program, package_path=path,
                                                    inductor_configs={"aot_inductor.metadata": metadata})


def check_refusals(segment: str, package: str, folder: str, tmp: str) -> None:
    """A package of another format or without a setting, a frame cut short, a frame whose
    header's size overflows height * width * 3, a memory cap above the package's, a tracking
    threshold out of range, a --timings file that cannot be written: one line naming the
    argument, exit status 2, before any frame runs, and no --out folder left behind (the last
    is refused after visolo_segment made it: it removes what it made)."""
    short = os.path.join(tmp, "short")
    shutil.copytree(folder, short)
    with open(os.path.join(short, "frame3.ppm"), "r+b") as f:
        f.truncate(100)
    huge = os.path.join(tmp, "huge")
    shutil.copytree(folder, huge)
    with open(os.path.join(huge, "frame3.ppm"), "wb") as f:
        f.write(b"P6\n4294967296 4294967296\n255\n" + bytes(100))
    cases = [
        (with_format(package, os.path.join(tmp, "format2.pt2"), "2"),
         folder, "error: PACKAGE: ", "metadata visolo_fast.format is '2', this tracker reads format 1"),
        (without_setting(package, os.path.join(tmp, "no-tracking-thr.pt2"), "visolo_fast.config.tracking_thr"),
         folder, "error: PACKAGE: ", "metadata visolo_fast.config.tracking_thr is missing"),
        (package, short, "error: INPUT: ", "frame3.ppm is cut short"),
        (package, huge, "error: INPUT: ",
         "frame3.ppm: its header says 4294967296 x 4294967296, and a PPM frame's sides must be at most 65536"),
        (package, folder, "error: Tracker: ", "max_memory_frames must be at least 3 and at most the package's 4, got 5",
         "--max-memory-frames", "5"),
        (package, folder, "error: Tracker: ", "tracking_thr must be a number in [0, 1] (the similarities are sigmoids), "
         "got -1", "--tracking-thr", "-1"),
        (package, folder, "error: --timings: ", "cannot write", "--timings", os.path.join(tmp, "nowhere", "t.csv")),
    ]
    refused = os.path.join(tmp, "refused")
    for pkg, frames, start, says, *options in cases:
        done = subprocess.run([segment, pkg, frames, "--out", os.path.join(refused, "out", ""), *options],
                              capture_output=True, text=True)
        lines = done.stderr.splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(start) and says in lines[0], \
            (done.returncode, done.stderr)
        assert not os.path.exists(refused), f"{lines[0]}: {refused} left behind"
    print(f"ok: {len(cases)} refusals, one line each")


def main(segment: str, test_rle: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        check_rle(test_rle, tmp)
        start = time.monotonic()
        package = export_package(lively_net(4, max_memory_frames=4), os.path.join(tmp, "lively.pt2"))
        print(f"exported {package} in {time.monotonic() - start:.1f} s")
        frames = sample_frames(FRAMES, H, W)
        folder = write_frames(os.path.join(tmp, "frames"), frames)
        check_refusals(segment, package, folder, tmp)

        happened = check_case(segment, package, folder, frames, os.path.join(tmp, "out"), "the package's settings")
        assert happened["new"] >= 2 and happened["returned"] >= 2, happened  # the video tests what it claims to
        happened = check_case(segment, package, folder, frames, os.path.join(tmp, "out-lost"),
                              "max_lost_frames=1, max_memory_frames=3, tracking_thr=0.3, output size 50 x 90",
                              ["--max-lost-frames", "1", "--max-memory-frames", "3", "--tracking-thr", "0.3",
                               "--output-size", "50x90"], (50, 90), max_lost_frames=1, max_memory_frames=3,
                              tracking_thr=0.3)
        assert happened["ended"] >= 1, happened
        # Frames of the input size: no resize on either side.
        same = sample_frames(8, *SIZE)
        check_case(segment, package, write_frames(os.path.join(tmp, "frames-input-size"), same), same,
                   os.path.join(tmp, "out-input-size"), "frames of the input size")
        check_official(segment, tmp)
    return 0


def check_official(segment: str, tmp: str) -> None:
    """The official, unbounded memory (the package exported without a cap) on a longer video
    whose objects leave and come back (the sample played forward, back, forward, back: 64
    frames, the memory grown to 15 entries), as it is and with tracks that end once away for
    more than 5 frames (they come back as new ones), and with the memory capped at 3."""
    start = time.monotonic()
    package = export_package(lively_net(4), os.path.join(tmp, "official.pt2"))
    print(f"exported {package} (the memory unbounded) in {time.monotonic() - start:.1f} s")
    clip = sample_frames(FRAMES, H, W)
    frames = (clip + clip[::-1]) * 2
    folder = write_frames(os.path.join(tmp, "frames-long"), frames)
    happened = check_case(segment, package, folder, frames, os.path.join(tmp, "out-official"),
                          f"the official memory, {len(frames)} frames")
    assert happened["returned"] >= 2, happened  # tracks away for frames and found again
    happened = check_case(segment, package, folder, frames, os.path.join(tmp, "out-official-lost"),
                          f"the official memory, {len(frames)} frames, max_lost_frames=5",
                          ["--max-lost-frames", "5"], max_lost_frames=5)
    assert happened["ended"] >= 1, happened
    check_case(segment, package, folder, frames, os.path.join(tmp, "out-official-capped"),
               f"{len(frames)} frames, max_memory_frames=3", ["--max-memory-frames", "3"], max_memory_frames=3)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} path/to/visolo_segment path/to/test_rle")
    sys.exit(main(sys.argv[1], sys.argv[2]))
