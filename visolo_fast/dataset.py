"""Dataset mode: every video of a YouTube-VIS json streamed through the tracker, results
kept on disk video by video, ``results.json`` and ``results.zip`` for the benchmark servers.

The unit of work is a video. Each finished video is one line of ``OUT/videos.jsonl``,
written and synced to disk when the video ends, so a stop (Ctrl-C, a crash, a lost
machine) loses at most the videos in progress, and the same command run again skips the
finished ones. The file's first line records what the results depend on (the annotations,
the weights, the engine settings): a rerun with other settings is refused rather than
mixed into the same results.

Videos run one after another in this process, or over a Ray cluster (``ray=``): one model
per worker (per GPU on a GPU cluster), a video a task, the lines written by this process
as the videos finish. Either way ``results.json`` lists the videos in the json's order, so
the two give the same file.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import torch

from visolo_fast.engine import Engine, Tracker
from visolo_fast.io import FrameSource, InputError, ResultsRecorder, Video, YtvisDataset

STORE = "videos.jsonl"


class RunError(RuntimeError):
    """The run cannot start or go on (the output folder holds another run's results, Ray is
    missing or its cluster has no room): the message says why and what to do."""


@dataclass(frozen=True)
class VideoDone:
    """A finished video: its YouTube-VIS result entries (one per track)."""

    video_id: int | str
    frames: int
    seconds: float
    results: list[dict]


@dataclass(frozen=True)
class VideoFailed:
    video_id: int | str
    reason: str  # such as "frame 3 (path) cannot be decoded, ..."


def segment_ytvis_video(engine: Engine, video: Video, category_ids: tuple[int, ...]) -> VideoDone | VideoFailed:
    """Streams one video through a new tracker of ``engine``; masks at the video's
    height x width, one RLE or None per frame per track. A frame that is missing,
    unreadable or of another size fails the video (not the run)."""
    start = time.perf_counter()
    try:
        source = FrameSource.from_files(list(video.files), f"video {video.id}")
        tracker = Tracker(engine, output_size=(video.height, video.width))
        recorder = ResultsRecorder()
        for frame in source:
            recorder.add(tracker.step(frame))
        tracker.flush()
    except InputError as exc:
        return VideoFailed(video.id, str(exc).removeprefix(f"video {video.id}: "))
    return VideoDone(video.id, len(video.files), time.perf_counter() - start,
                     recorder.results(tracker, video.id, category_ids))


class ResultStore:
    """``OUT/videos.jsonl``: a header line, then one line per finished video."""

    def __init__(self, out_dir: str, header: dict):
        """Opens the store of ``out_dir``, or starts one. ``header``: what the results depend
        on; a store made with another header is refused (:class:`RunError`)."""
        self.path = os.path.join(out_dir, STORE)
        self.done: dict[int | str, VideoDone] = {}
        if os.path.exists(self.path):
            self._load(header)
        else:
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(json.dumps(header) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _load(self, header: dict) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        try:
            found = json.loads(lines[0])
        except ValueError:
            raise RunError(f"--out: {self.path} is not a results file of this command; use another --out") from None
        if found != header:
            changed = sorted(k for k in set(found) | set(header) if found.get(k) != header.get(k))
            raise RunError(f"--out: {self.path} holds results made with other settings ({', '.join(changed)}: "
                           f"{', '.join(f'{found.get(k)!r} then, {header.get(k)!r} now' for k in changed)}); "
                           f"use another --out, or delete it to start over")
        good = len(lines[0]) + 1
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                break  # the line a stop cut short: its video runs again
            self.done[record["video_id"]] = VideoDone(**record)
            good += len(line) + 1
        if good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def add(self, done: VideoDone) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(done.__dict__) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[done.video_id] = done


def write_results(out_dir: str, dataset: YtvisDataset, store: ResultStore) -> tuple[str, str]:
    """``results.json`` (the finished videos' entries, in the json's video order) and
    ``results.zip`` with ``results.json`` at its root, each replaced whole."""
    entries = [entry for video in dataset.videos if video.id in store.done for entry in store.done[video.id].results]
    json_path, zip_path = os.path.join(out_dir, "results.json"), os.path.join(out_dir, "results.zip")
    with open(json_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(entries, f)
    os.replace(json_path + ".tmp", json_path)
    with zipfile.ZipFile(zip_path + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(json_path, "results.json")
    os.replace(zip_path + ".tmp", zip_path)
    return json_path, zip_path


class Progress:
    """Per video and overall: frames, frames/s, ETA (from this run's rate)."""

    def __init__(self, total_videos: int, total_frames: int, skipped: int, skipped_frames: int,
                 log: Callable[[str], None]):
        self.total_videos, self.remaining = total_videos, total_frames - skipped_frames
        self.count, self.frames, self.log = skipped, 0, log
        self.start = time.perf_counter()

    def __call__(self, outcome: VideoDone | VideoFailed, frames: int) -> None:
        self.count += 1
        self.remaining -= frames
        if isinstance(outcome, VideoDone):
            self.frames += frames
        rate = self.frames / max(time.perf_counter() - self.start, 1e-9)
        eta = self.remaining / rate if rate > 0 else 0.0
        head = f"[{self.count}/{self.total_videos}] video {outcome.video_id}"
        if isinstance(outcome, VideoFailed):
            self.log(f"{head}: FAILED: {outcome.reason}")
        else:
            self.log(f"{head}: {outcome.frames} frames, {len(outcome.results)} tracks, "
                     f"{outcome.frames / max(outcome.seconds, 1e-9):.2f} FPS | overall {self.frames} frames, "
                     f"{rate:.2f} FPS, ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def run_dataset(dataset: YtvisDataset, store: ResultStore, engine: Engine | None = None,
                ray: RayOptions | None = None, log: Callable[[str], None] = print) -> list[VideoFailed]:
    """Runs the videos that ``store`` does not hold yet, adding each as it finishes;
    returns the videos that failed.

    Args:
        engine: the engine of every video, when they run in this process.
        ray: run over a Ray cluster instead (:class:`RayOptions`).
    """
    todo = [video for video in dataset.videos if video.id not in store.done]
    skipped = len(dataset.videos) - len(todo)
    if skipped:
        log(f"resuming: {skipped} of {len(dataset.videos)} videos already done in {store.path}")
    progress = Progress(len(dataset.videos), dataset.num_frames, skipped,
                        sum(len(v.files) for v in dataset.videos if v.id in store.done), log)
    failed: list[VideoFailed] = []

    def finished(video: Video, outcome: VideoDone | VideoFailed) -> None:
        if isinstance(outcome, VideoDone):
            store.add(outcome)
        else:
            failed.append(outcome)
        progress(outcome, len(video.files))

    if not todo:
        return failed
    if ray is not None:
        _run_on_ray(ray, todo, dataset.category_ids, finished, log)
    else:
        for video in todo:
            finished(video, segment_ytvis_video(engine, video, dataset.category_ids))
    return failed


@dataclass(frozen=True)
class RayOptions:
    """How to run over Ray.

    Attributes:
        address: a running cluster's address (``ray.init(address=...)``), or None to start
            a local one on this machine (or join the one ``RAY_ADDRESS`` names).
        net: the model (on the CPU); sent to the workers once through Ray's object store.
        engine: the keyword arguments of :class:`Engine` besides the model.
        device: ``cpu`` or ``cuda``: on ``cuda`` each worker holds one GPU.
        workers: how many workers (None: one per GPU, or on the CPU one per 2 CPUs).
    """

    address: str | None
    net: torch.nn.Module
    engine: dict
    device: str
    workers: int | None = None


class _Worker:
    """A Ray actor: one model, one engine, videos one after another."""

    def __init__(self, net: torch.nn.Module, engine: dict, device: str, threads: int):
        torch.set_num_threads(threads)
        self.engine = Engine(net.to(device), **engine)

    def run(self, video: Video, category_ids: tuple[int, ...]) -> VideoDone | VideoFailed:
        return segment_ytvis_video(self.engine, video, category_ids)


def import_ray():
    """The ray module, or a RunError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise RunError("--ray: Ray is not installed; pip install 'visolo_fast[ray]' (or pip install ray)") from None
    return ray


def _run_on_ray(options: RayOptions, todo: list[Video], category_ids: tuple[int, ...],
                finished: Callable[[Video, VideoDone | VideoFailed], None], log: Callable[[str], None]) -> None:
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        # NB: ray.init in the main thread makes SIGTERM exit at once; the command's own handler
        # (SIGTERM as Ctrl-C: the results so far written) is put back
        term = signal.getsignal(signal.SIGTERM)
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False, logging_level="warning")
        if threading.current_thread() is threading.main_thread() and term is not None:
            signal.signal(signal.SIGTERM, term)
    try:
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if options.device == "cuda":
            workers = options.workers or gpus
            if workers < 1 or workers > gpus:
                raise RunError(f"--ray: the cluster has {gpus} GPUs, {workers or 'no'} workers of one GPU each "
                               f"cannot start; use --ray-workers <= {gpus}, or --device cpu")
            per_worker = {"num_gpus": 1, "num_cpus": 1}
            threads = max(1, cpus // workers)
        else:
            workers = options.workers or max(1, cpus // 2)
            if cpus < workers:
                raise RunError(f"--ray-workers {workers}: the cluster has {cpus} CPUs, one worker needs at least one")
            threads = max(1, cpus // workers)
            per_worker = {"num_cpus": threads}
        log(f"ray: {workers} workers ({per_worker}) on a cluster of {cpus} CPUs, {gpus} GPUs")
        actor = ray.remote(_Worker)
        net = ray.put(options.net.cpu())
        pool = [actor.options(**per_worker).remote(net, options.engine, options.device, threads)
                for _ in range(min(workers, len(todo)))]
        queue, running = list(reversed(todo)), {}
        for worker in pool:
            video = queue.pop()
            running[worker.run.remote(video, category_ids)] = (worker, video)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            worker, video = running.pop(ready[0])
            finished(video, ray.get(ready[0]))
            if queue:
                video = queue.pop()
                running[worker.run.remote(video, category_ids)] = (worker, video)
    finally:
        if started:
            ray.shutdown()
