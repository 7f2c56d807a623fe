"""``python -m visolo_fast``: ``segment`` a video, the ``demo`` on the bundled sample, ``ytvis`` (a
YouTube-VIS dataset), ``evaluate`` (its AP), ``shapes`` (a small dataset to try them on), ``info``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch

import visolo_fast as vf
from visolo_fast import backends
from visolo_fast.checkpoint import _check_file
from visolo_fast.classes import BUILT_IN, load_classes
from visolo_fast.engine.precision import DTYPES, dtype_name
from visolo_fast.io import InputError
from visolo_fast.io.captures import DEFAULT_TIMEOUT
from visolo_fast.io.live import LatencyStats, Source, StoredSource, open_source
from visolo_fast.io.urls import redact
from visolo_fast.io.outputs import MASKS, RunOutputs, mask_files
from visolo_fast.io.video import quiet_opencv
from visolo_fast.threads import USER_VARIABLES, ThreadController, ThreadPlan, plan_threads, usable_cores


class UserError(Exception):
    """A mistake on the command line: printed as one line, exit status 2, no traceback."""


def _info(_args) -> int:
    print(f"visolo_fast {vf.__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"GPU: {gpu}")
    print(f"compiled extension: {'loaded' if backends.extension_loaded() else 'not built'}")
    for device in ("cpu", "cuda"):
        for name, reason in vf.available_backends(device).items():
            print(f"  {device:4} {name:9} {'usable' if reason is None else 'no: ' + reason}")
    given = ", ".join(f"{name}={os.environ[name]}" for name in USER_VARIABLES if os.environ.get(name)) or "none set"
    print(f"CPU threads: {usable_cores()} usable cores, torch uses {torch.get_num_threads()}; {given}; segment on the "
          f"CPU: {plan_threads().describe()}")
    return 0


def _no_gpu() -> str:
    return f"torch sees no GPU here (torch {torch.__version__}, {'CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'})"


def _extension_lacks(dispatch_key: str) -> tuple[int, int]:
    """(ops without a kernel for the dispatch key, ops) of the compiled extension; (0, 0) if unknown."""
    try:
        ops = [op for op in torch._C._dispatch_get_all_op_names() if op.startswith("visolo_fast::")]
        return sum(not torch._C._dispatch_has_kernel_for_dispatch_key(op, dispatch_key) for op in ops), len(ops)
    except (AttributeError, RuntimeError):  # private torch API: no check rather than a false refusal
        return 0, 0


def _backend_problem(backend: str, device: torch.device) -> str | None:
    """Why ``--backend`` cannot run on ``device`` here, in the command line's words; None if it can."""
    gpu = torch.cuda.is_available()
    if backend in ("cuda", "triton") and device.type == "cpu" and not (backend == "triton" and backends.triton_interpreted()):
        return ("runs on a GPU, and this run is on the CPU (--device cpu); "
                + ("add --device cuda, or use --backend cpp or auto on the CPU" if gpu
                   else f"{_no_gpu()}: use --backend cpp or auto (the default)"))
    if backend == "cpp" and device.type == "cuda":
        return "runs on the CPU, and this run is on a GPU (--device cuda); use --backend cuda, triton or auto on a GPU, or --device cpu"
    reason = backends.why_unavailable(backend, device)
    if reason is None and backend in ("cpp", "cuda"):
        missing, ops = _extension_lacks("CPU" if backend == "cpp" else "CUDA")
        if missing:
            reason = (f"the compiled extension visolo_fast._C lacks {'CPU' if backend == 'cpp' else 'CUDA'} kernels for "
                      f"{missing} of its {ops} ops (built without them, or from other sources); "
                      f"use --backend auto, or rebuild it: {backends.BUILD_HINT}")
    return reason


def _compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` (inductor) cannot work here; None if it should."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on a GPU needs Triton, which is not installed (`pip install triton`); or drop --compile"
        return None
    compilers = [c for c in (os.environ.get("CXX"), "g++", "c++", "clang++") if c]
    if not any(shutil.which(c) for c in compilers):
        return (f"torch.compile on the CPU needs a C++ compiler, and none of {', '.join(compilers)} is on PATH; "
                f"install g++ or drop --compile")
    return None


def _check_options(args) -> None:
    """Refuses options that cannot work here before the input is opened or the output folder made:
    one line that names the option, says why and what to use instead."""
    if getattr(args, "package", None):
        given = [option for option, on in (("--weights", args.weights), ("--trusted", args.trusted),
                                            (f"--backend {args.backend}", args.backend != "auto"),
                                            (f"--dtype {dtype_name(args.dtype)}", args.dtype != torch.float32),
                                            ("--compile", args.compile), ("--cuda-graphs", args.cuda_graphs),
                                            ("--device cuda", args.device != "cpu")) if on]
        if given:
            raise UserError(f"{given[0]}: a --package holds its weights, device, dtype and compiled code (chosen by "
                            f"`python -m visolo_fast export`); drop {given[0].split()[0]}")
        from visolo_fast.engine.package import PackageError, check_file

        try:
            check_file(args.package)
        except PackageError as exc:
            raise UserError(f"--package {exc}") from None
    else:
        _check_engine_options(args)
    _check_outputs(args)


def _check_engine_options(args) -> None:
    """The options of the engine a run makes from --weights (--device, --backend, --dtype, ...)."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device cuda: {_no_gpu()}; use --device cpu (the default)")
    if args.backend == "reference":
        extras = [option for option, given in ((f"--dtype {dtype_name(args.dtype)}", args.dtype != torch.float32),
                                               ("--compile", args.compile), ("--cuda-graphs", args.cuda_graphs)) if given]
        if extras:
            raise UserError(f"{extras[0]}: the reference engine (--backend reference) runs in float32 without "
                            f"--compile or --cuda-graphs; use --backend auto (the fast engine) or drop {extras[0].split()[0]}")
    elif args.backend != "auto":
        problem = _backend_problem(args.backend, device)
        if problem is not None:
            raise UserError(f"--backend {args.backend}: {problem}")
    if args.cuda_graphs and device.type != "cuda":
        raise UserError("--cuda-graphs: CUDA graphs replay work on a GPU, and this run is on the CPU (--device cpu); "
                        + ("add --device cuda" if torch.cuda.is_available() else f"{_no_gpu()}: drop --cuda-graphs"))
    if args.dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError(f"--dtype bfloat16: the GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 support; "
                        f"use --dtype float16 or float32")
    if args.compile:
        problem = _compile_problem(device)
        if problem is not None:
            raise UserError(f"--compile: {problem}")
    _check_weights(args)
    _dtype_notes(args.dtype, device)


def _check_outputs(args) -> None:
    """The options of a run's outputs and inputs (--out, --save-masks, --latency-log, ...)."""
    _check_out(args.out)
    inputs = getattr(args, "input", None) or []
    if getattr(args, "save_masks", False):
        for out in [args.out] if len(inputs) <= 1 else [os.path.join(args.out, str(i)) for i in range(len(inputs))]:
            _, others = mask_files(out)
            if others:
                raise UserError(f"--save-masks: {os.path.join(out, MASKS)} holds files named as this run's masks "
                                f"that visolo_fast did not write ({len(others)}, such as {others[0]}), which it would "
                                f"overwrite; use another --out, or move them")
    if getattr(args, "queue_size", None) is not None and not args.every_frame:
        raise UserError("--queue-size: it sizes the --every-frame queue, and no --every-frame was given")
    if getattr(args, "rtsp_transport", None) and not any(i.lower().startswith(("rtsp://", "rtsps://")) for i in inputs):
        raise UserError(f"--rtsp-transport {args.rtsp_transport}: it is for rtsp:// inputs, and none was given")
    if getattr(args, "latency_log", None):
        log = args.latency_log
        if os.path.isdir(log):
            raise UserError(f"--latency-log: cannot write to {log}: a folder, not a file")
        folder = os.path.dirname(os.path.abspath(log))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"--latency-log: cannot write to {log}: {folder} is not a writable folder")


def _check_weights(args) -> None:
    if args.trusted and not args.weights:
        raise UserError("--trusted: it says how to load the --weights file, and no --weights was given")
    if args.weights:
        try:
            _check_file(args.weights)
        except vf.CheckpointError as exc:
            raise UserError(f"--weights {exc}") from None


def _dtype_notes(dtype: torch.dtype, device: torch.device) -> None:
    """What a reduced precision costs on this CPU, where it is slow."""
    if dtype == torch.float16 and device.type == "cpu":
        print("note: --dtype float16 on the CPU: its convolutions are far slower than float32 on most CPUs "
              "(bfloat16 is the fast reduced precision there)")
    if dtype == torch.bfloat16 and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print("note: --dtype bfloat16 on this CPU: it has no bfloat16 convolutions (oneDNN needs AVX-512 or AMX), "
              "so they are emulated, about 8x slower than float32 (measured on an AVX2 CPU); use float32 here")


def _check_out(path: str) -> None:
    """The output folder can be made (or is one), without making it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--out: cannot write to {path}: a file, not a folder")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"--out: cannot write to {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out: cannot write to {path}: {parent} is not writable")


def _load_net(args, device: torch.device, classes: tuple[str, ...] | None, caps: dict | None = None):
    """The network (with ``--max-memory-frames``, ``--max-lost-frames`` and ``caps``, the live
    defaults, in its config), or with ``--package`` the package's engine."""
    changes = {**(caps or {}), **{cap: getattr(args, cap) for cap in ("max_memory_frames", "max_lost_frames")
                                  if isinstance(getattr(args, cap, None), int)}}
    if getattr(args, "package", None):
        from visolo_fast.engine.package import PackageError, built_config

        try:
            cap = built_config(args.package).max_memory_frames
            if caps and "max_memory_frames" in caps and cap is not None:
                # The live default (no --max-memory-frames given), within the package's cap.
                changes["max_memory_frames"] = min(caps["max_memory_frames"], cap)
            engine = vf.Engine.from_package(args.package, **changes)
        except PackageError as exc:
            raise UserError(f"--package {exc}") from None
        print(f"package: {args.package} ({engine.device.type}, {dtype_name(engine.runner.dtype)}, "
              f"weights: {engine.runner.checkpoint})")
        if classes is not None and len(classes) != engine.config.num_classes:
            raise UserError(f"--classes: {len(classes)} class names, but the package has {engine.config.num_classes} "
                            f"classes")
        return engine
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device cuda: {_no_gpu()}; use --device cpu (the default)")
    if args.weights:
        try:
            net = vf.load_model(args.weights, device=device, trusted=args.trusted)
        except vf.CheckpointError as exc:
            if exc.needs_trust:
                raise UserError(f"--weights {exc.detail}; if you trust the file, add --trusted "
                                f"(loading it can run code stored in it)") from None
            raise UserError(f"--weights {exc}") from None
        print(f"weights: {args.weights} ({net.config.num_classes} classes)")
    else:
        torch.manual_seed(0)
        net = vf.VisoloNet().eval().to(device)
        print("!" * 78)
        print("! No --weights: the network has RANDOM weights. Its scores and masks are")
        print("! meaningless; this run shows the pipeline and its speed, nothing more.")
        print("!" * 78)
    if classes is not None and len(classes) != net.config.num_classes:
        raise UserError(f"--classes: {len(classes)} class names, but the checkpoint has {net.config.num_classes} classes")
    net.config = dataclasses.replace(net.config, **changes)
    return net


@contextlib.contextmanager
def _output_folder(path: str) -> Iterator[str]:
    """Makes the output folder (and its missing parents) and checks that it is writable; on
    the way out, whatever happened, removes the folders it made that are still empty (a run
    stopped before its first file leaves no empty folder; one that was there is left as it was)."""
    made, parent = [], os.path.abspath(path)
    while not os.path.exists(parent):
        made.append(parent)  # deepest first
        parent = os.path.dirname(parent)
    try:
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, ".visolo_fast_write_test")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as exc:
            raise UserError(f"--out: cannot write to {path}: {exc.strerror or exc}") from None
        yield path
    finally:
        for folder in made:
            try:
                os.rmdir(folder)  # NB: only an empty folder is removed
            except OSError:
                break


def _tidy(path: str) -> str:
    """``path`` as given, without repeated or trailing separators or ``.`` parts, for messages
    and the file names made from it (``..`` is kept: after a link it is not the folder above)."""
    parts = [part for part in path.split(os.sep) if part not in ("", ".")]
    return (os.sep if path.startswith(os.sep) else "") + os.sep.join(parts) or "."


def _backend_message(backend: str, exc: vf.BackendUnavailable) -> str:
    """A BackendUnavailable raised while running, in the command line's words (not an op's name)."""
    if not exc.implemented:
        return f"--backend {backend}: a step of the network has no {backend} implementation; use --backend auto"
    return f"--backend {backend}: {exc.reason}"


LIVE_MEMORY_FRAMES = 10  # the memory of a 36-frame YouTube-VIS video (frame 0, every 5th, the previous, the current)
LIVE_LOST_FRAMES = 30  # a lost track may come back within 30 processed frames (a YouTube-VIS video's length, about)


class _Progress:
    """The progress line on stderr (rewritten in place) and whole lines said between its updates
    (by reader threads too)."""

    def __init__(self):
        self._lock, self._shown = threading.Lock(), 0

    def update(self, text: str) -> None:
        with self._lock:
            print("\r" + text.ljust(self._shown), end="", file=sys.stderr, flush=True)
            self._shown = len(text)

    def say(self, line: str) -> None:
        with self._lock:
            print(("\n" if self._shown else "") + line, file=sys.stderr, flush=True)
            self._shown = 0

    def end(self) -> None:
        with self._lock:
            print(file=sys.stderr, flush=True)
            self._shown = 0


@dataclasses.dataclass
class _Input:
    """One INPUT of a run: its source, tracker, files and latencies."""

    number: int
    source: Source
    tracker: vf.Tracker
    outputs: RunOutputs
    stats: LatencyStats
    error: str | None = None
    flushed: bool = False

    def written(self) -> str:
        if not self.outputs.frames:
            return "nothing was written (no frame was finished)"
        of = f" of {self.source.count}" if self.source.count else ""
        return f"{self.outputs.files()} cover frames 0..{self.outputs.frames - 1} only ({self.outputs.frames}{of} frames)"


def _step(engine: vf.Engine, trackers: list, images: list) -> list:
    """One frame of each tracker: one batched pass through the fast engine (step_many)."""
    if len(trackers) == 1 or not engine.batched:
        return [tracker.step(image) for tracker, image in zip(trackers, images)]
    return vf.step_many(trackers, images)


def _run(model, sources: list[Source], args, class_names, out_dir: str, wake: threading.Event | None = None,
         progress: _Progress | None = None, t0: float | None = None) -> int:
    """Runs the frames of every source through one engine (several sources in one batch);
    writes each one's overlay, results.json and masks, and the latency log.

    The files are made with the first finished frame (an interrupted start leaves the folder
    as it was). A frame that cannot be read stops its source: what was finished before it is
    written, and the error says which frames the files cover.
    """
    progress = progress or _Progress()
    t0 = time.monotonic() if t0 is None else t0
    try:
        engine = model if isinstance(model, vf.Engine) else \
            vf.Engine(model, backend=args.backend, dtype=args.dtype, compile=args.compile, cuda_graphs=args.cuda_graphs)
    except ValueError as exc:  # an engine option that cannot run here (--dtype, --compile, --cuda-graphs)
        raise UserError(str(exc)) from None
    except vf.BackendUnavailable as exc:
        raise UserError(_backend_message(args.backend, exc)) from None
    device = engine.device
    plan = plan_threads(args.threads, device)
    print(f"threads: {plan.describe()}")
    single, live = len(sources) == 1, any(source.live for source in sources)
    with contextlib.ExitStack() as stack:
        inputs = []
        for number, source in enumerate(sources):
            folder = out_dir if single else stack.enter_context(_output_folder(os.path.join(out_dir, str(number))))
            size = tuple(args.output_size) if args.output_size else tuple(source.size)
            inputs.append(_Input(number, source, vf.Tracker(engine, output_size=size),
                                 RunOutputs(folder, source.fps, size, class_names, args.save_masks,
                                            realtime=source.live and not source.every_frame), LatencyStats()))
        latency_log = stack.enter_context(open(args.latency_log, "w", buffering=1)) if getattr(args, "latency_log", None) else None
        if latency_log:
            latency_log.write("input,frame,source_frame,capture_s,result_s,latency_ms\n")
        return _loop(engine, inputs, args, device, wake, progress, latency_log, single, live, t0, plan)


def _loop(engine, inputs: list[_Input], args, device, wake, progress: _Progress, latency_log, single: bool,
          live: bool, t0: float, plan: ThreadPlan) -> int:
    start, interrupted = time.perf_counter(), False
    threads = ThreadController(plan)  # sets the count: closed in the finally below
    active = list(inputs)

    def finish(run: _Input) -> None:
        active.remove(run)
        run.tracker.flush()
        run.flushed = True

    def status() -> str:
        done = sum(run.outputs.frames for run in inputs)
        fps = done / (time.perf_counter() - start)
        line = f"frame {done}"
        if single and inputs[0].source.count:
            line += f"/{inputs[0].source.count}"
        line += f"  {fps:.2f} FPS  {sum(run.tracker.num_tracks for run in inputs)} tracks"
        if live:
            stats = LatencyStats.merged([run.stats for run in inputs]) if not single else inputs[0].stats
            line += f"  dropped {sum(run.source.dropped for run in inputs)}  latency {stats.summary()}"
        return line

    try:
        while active:
            if wake is not None:
                wake.clear()  # NB: before polling: a frame that comes after its poll sets it again
            ready = []
            for run in list(active):
                try:
                    frame = run.source.poll()
                except InputError as exc:
                    run.error, frame = str(exc), None
                if frame is None:
                    if run.source.ended:
                        finish(run)
                    continue
                ready.append((run, frame))
            if not ready:
                if active and wake is not None:
                    wake.wait(0.1)
                continue
            began = time.perf_counter()
            results = _step(engine, [run.tracker for run, _ in ready], [frame.image for _, frame in ready])
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the results' masks are ready: the latency's end
            threads.record((time.perf_counter() - began) / len(ready))  # per frame: batches differ in size
            now = time.monotonic()
            for (run, frame), result in zip(ready, results):
                run.stats.add(now - frame.time)
                try:
                    run.outputs.add(frame.image, result, frame.time)
                except OSError as exc:
                    raise UserError(f"--out: {exc}; stopped there: {run.written()}") from None
                if latency_log:  # NB: after the outputs: a row for each frame they hold
                    latency_log.write(f"{run.number},{result.index},{frame.index},{frame.time - t0:.6f},{now - t0:.6f},"
                                      f"{(now - frame.time) * 1000:.3f}\n")
            progress.update(status())
    except KeyboardInterrupt:
        interrupted = True
    except InputError as exc:
        raise UserError(f"{exc}; stopped there: {'; '.join(run.written() for run in inputs)}") from None
    except vf.BackendUnavailable as exc:
        raise UserError(f"{_backend_message(args.backend, exc)}; stopped there: "
                        f"{'; '.join(run.written() for run in inputs)}") from None
    except UserError:
        raise
    except Exception:
        progress.say(f"error: stopped by the error below: {'; '.join(run.written() for run in inputs)}")
        raise
    finally:
        progress.end()  # ends the progress line
        threads.close()  # torch's count as before (main() may run in a caller's process)
        failures = []  # NB: every input's files closed, whatever one of them raises
        for run in inputs:
            for close in (run.source.close, functools.partial(run.outputs.close, run.tracker)):
                try:
                    close()  # the readers stop (one blocked in a read counts what it reads as queued)
                except Exception as exc:  # noqa: BLE001 -- raised below, once all are closed
                    failures.append(exc)
        if failures:
            raise failures[0]
    elapsed = time.perf_counter() - start
    done = sum(run.outputs.frames for run in inputs)
    notes = set().union(*(run.source.notes | run.outputs.notes for run in inputs))
    for note in sorted(notes):
        print(f"note: {note}")
    for run in inputs:
        if run.outputs.removed:
            print(f"note: removed the {run.outputs.removed} mask PNGs of an earlier run from {run.outputs.masks}/")
        if run.source.live and run.source.every_frame and run.source.waited >= 0.05:
            print(f"note: {_name(run, single)}: the reader waited {run.source.waited:.1f} s for room in the queue "
                  f"(--every-frame, --queue-size {args.queue_size}): the stream backed up in its transport meanwhile, "
                  f"which capture -> result does not count")
    failed = [run for run in inputs if run.error]
    if not done:
        print("interrupted before the first frame was finished: nothing written" if interrupted
              else "no frame was finished: nothing written")
    else:
        tracks = sum(run.tracker.num_tracks for run in inputs)
        of = "" if single else f" of {len(inputs)} inputs"
        print(f"{'interrupted after' if interrupted else 'done:'} {done} frames{of}, {tracks} tracks, "
              f"{done / elapsed if elapsed else 0:.2f} FPS, device {device}, backend {args.backend}")
    for run in inputs:
        print(f"{_name(run, single)}: {_counts(run)}" + (f"; latency capture -> result {run.stats.summary()}"
                                                        if run.stats.count else ""))
    for run in inputs:
        outputs = run.outputs
        if outputs.frames:
            print(f"wrote {outputs.overlay}, {outputs.results}" + (f", {outputs.masks}/" if args.save_masks else ""))
    if latency_log is not None:
        print(f"wrote {args.latency_log} ({done} rows: capture -> result of each frame)")
    print(threads.summary())
    if single and failed:
        raise UserError(f"{failed[0].error}; stopped there: {failed[0].written()}")
    for run in failed:
        print(f"error: {run.error}; stopped there: {run.written()}", file=sys.stderr)
    if interrupted:
        return 130
    return 2 if failed or not done else 0


def _counts(run: _Input) -> str:
    """What became of every frame read from an input (its source closed): ``9 read = 4
    processed + 5 dropped + 0 still queued at the end`` (+ those taken when the run stopped)."""
    read, taken, dropped, queued = run.source.counts()
    cut = taken - run.outputs.frames  # taken, not finished: the run stopped during their step
    return (f"{read} read = {run.outputs.frames} processed + {dropped} dropped + {queued} still queued at the end"
            + (f" + {cut} stopped in the model" if cut else ""))


def _name(run: _Input, single: bool) -> str:
    return f"input {run.number} ({redact(run.source.spec)})" if not single else f"input ({redact(run.source.spec)})"


def _classes(args) -> tuple[str, ...]:
    try:
        return load_classes(args.classes)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _export(args) -> int:
    from visolo_fast.engine.package import check_path, export_package

    device = torch.device(args.device)
    _check_weights(args)
    if os.path.isdir(args.out):
        raise UserError(f"--out: {args.out} is a folder; give the package's file name (such as visolo.pt2)")
    try:
        check_path(args.out)
    except ValueError:
        raise UserError(f"--out: {args.out}: a package's file name ends with .pt2 (AOTInductor's), such as "
                        f"visolo.pt2") from None
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--out: cannot write to {args.out}: {folder} is not a writable folder")
    _dtype_notes(args.dtype, device)
    net = _load_net(args, device, None)
    source = "random weights (demo)"
    if args.weights:
        with open(args.weights, "rb") as f:
            source = f"{os.path.basename(args.weights)} (sha256 {hashlib.file_digest(f, 'sha256').hexdigest()[:16]})"
    print(f"exporting the frame function ({device.type}, {dtype_name(args.dtype)}, input "
          f"{net.config.input_size[0]} x {net.config.input_size[1]}): torch.export, then AOTInductor compiles it "
          f"(a minute or more)", flush=True)
    start = time.perf_counter()
    try:
        path = export_package(net, args.out, args.dtype, checkpoint=source)
    except Exception as exc:  # noqa: BLE001  (torch.export and inductor raise many kinds)
        raise UserError(f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    print(f"package: {path} ({os.path.getsize(path) / 1e6:.1f} MB, {time.perf_counter() - start:.0f} s); run it with "
          f"`python -m visolo_fast segment INPUT --package {path}`, visolo_fast.Engine.from_package or visolo_segment")
    return 0


def _segment(args) -> int:
    classes = _classes(args)
    _check_options(args)
    progress, wake, t0 = _Progress(), threading.Event(), time.monotonic()
    sources: list[Source] = []
    try:
        for spec in args.input:
            try:
                sources.append(open_source(spec, every_frame=args.every_frame or None, queue_size=args.queue_size or 32,
                                           timeout=args.timeout, reconnect=args.reconnect,
                                           rtsp_transport=args.rtsp_transport or "tcp",
                                           log=lambda line: progress.say(f"warning: {line}"), wake=wake))
            except InputError as exc:
                raise UserError(str(exc)) from None
        live = [source for source in sources if source.live]
        if args.every_frame and not live:
            print("note: --every-frame: the inputs are files or folders, whose every frame is read anyway")
        caps = {}  # for what was not given ("none": the official rule, asked for)
        if live and args.max_memory_frames is None:
            caps["max_memory_frames"] = LIVE_MEMORY_FRAMES
        if live and args.max_lost_frames is None:
            caps["max_lost_frames"] = LIVE_LOST_FRAMES
        model = _load_net(args, torch.device(args.device), classes, caps)
        if caps:
            said = [f"the model's memory is capped at {model.config.max_memory_frames} frames (--max-memory-frames)"
                    if "max_memory_frames" in caps else "",
                    f"a track lost for more than {LIVE_LOST_FRAMES} frames ends (--max-lost-frames)"
                    if "max_lost_frames" in caps else ""]
            print(f"note: a live input: {' and '.join(x for x in said if x)}, so that an endless stream runs at a flat "
                  f"cost ('none' for the official, unbounded rule)")
        for number, (spec, source) in enumerate(zip(args.input, sources)):
            mode = ""
            if source.live:
                mode = (f", every frame through a queue of {source.queue_size}" if source.every_frame
                        else ", newest frame: the others dropped")
            to = "" if len(sources) == 1 else f" -> {os.path.join(args.out, str(number))}{os.sep}"
            print(f"input{'' if len(sources) == 1 else ' ' + str(number)}: {redact(str(spec))} ({source.kind}{mode}, "
                  f"{source.size[0]} x {source.size[1]}, {source.fps:g} FPS){to}")
        with _output_folder(args.out) as out_dir:
            return _run(model, sources, args, classes, out_dir, wake, progress, t0)
    finally:
        for source in sources:
            source.close()


def _demo(args) -> int:
    from visolo_fast.sample import sample_frames

    classes = _classes(args)
    _check_options(args)
    model = _load_net(args, torch.device(args.device), classes)
    frames = sample_frames(args.frames)
    print(f"sample: {len(frames)} frames of {frames[0].shape[0]} x {frames[0].shape[1]}")
    with _output_folder(args.out) as out_dir:
        return _run(model, [StoredSource(_Frames(frames, fps=10.0))], args, classes, out_dir)


def _ytvis(args) -> int:
    from visolo_fast.dataset import RunError, import_ray
    from visolo_fast.io import DatasetError, YtvisDataset

    _check_options(args)
    if args.ray is None and args.ray_workers is not None:
        raise UserError("--ray-workers: it sizes a Ray run, and no --ray was given")
    if args.ray is not None:
        try:
            import_ray()
        except RunError as exc:
            raise UserError(str(exc)) from None
    try:
        dataset = YtvisDataset(args.annotations, args.images)
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    missing = dataset.missing_files()
    if missing:
        for video, path in missing:
            print(f"missing: video {video.id}: {path}", file=sys.stderr)
        videos = len({video.id for video, _ in missing})
        raise UserError(f"--images: {len(missing)} of the {dataset.num_frames} frames that {args.annotations} lists "
                        f"are not under {args.images} ({videos} of {len(dataset.videos)} videos; all listed above): "
                        f"is --images the folder its file_names are relative to?")
    if args.classes is not None:
        names = _classes(args)
        if tuple(names) != dataset.category_names:
            first = next((i for i, (a, b) in enumerate(zip(names, dataset.category_names)) if a != b), None)
            where = (f"label {first} is {names[first]!r} in --classes, {dataset.category_names[first]!r} in the json"
                     if first is not None else f"{len(names)} names in --classes, {len(dataset.category_names)} "
                                               f"categories in the json")
            raise UserError(f"--classes: the checkpoint's classes are not the json's categories sorted by id ({where}): "
                            f"the labels would map to the wrong category ids")
    device = torch.device(args.device)
    net = _load_net(args, device, None)
    if net.config.num_classes != len(dataset.category_ids):
        raise UserError(f"--weights: the checkpoint has {net.config.num_classes} classes, {args.annotations} has "
                        f"{len(dataset.category_ids)} categories: a checkpoint trained on another dataset?")
    with _output_folder(args.out) as out_dir:
        return _run_dataset(args, dataset, net, device, out_dir)


def _run_dataset(args, dataset, net, device: torch.device, out_dir: str) -> int:
    """The videos of ``dataset`` not done yet in ``out_dir``; results.json and results.zip of those done."""
    from visolo_fast.dataset import RayOptions, ResultStore, RunError, run_dataset, write_results

    header = {"annotations": os.path.abspath(args.annotations), "videos": len(dataset.videos),
              "weights": os.path.abspath(args.weights) if args.weights else "random (seed 0)",
              "device": device.type, "backend": args.backend, "dtype": dtype_name(args.dtype),
              "max_memory_frames": args.max_memory_frames}
    engine = dict(backend=args.backend, dtype=args.dtype, compile=args.compile, cuda_graphs=args.cuda_graphs)
    if args.ray is None:
        try:
            local, ray = vf.Engine(net, **engine), None
        except ValueError as exc:  # an engine option that cannot run here (--dtype, --compile, --cuda-graphs)
            raise UserError(str(exc)) from None
        except vf.BackendUnavailable as exc:
            raise UserError(_backend_message(args.backend, exc)) from None
    else:
        local, ray = None, RayOptions(args.ray or None, net, engine, device.type, args.ray_workers)
    print(f"dataset: {args.annotations}: {len(dataset.videos)} videos, {dataset.num_frames} frames, "
          f"{len(dataset.category_ids)} categories")
    try:
        store = ResultStore(out_dir, header)  # before the run: a Ctrl-C below still has it to write from
    except RunError as exc:
        raise UserError(str(exc)) from None
    start, failed, interrupted = time.perf_counter(), [], False
    try:
        failed = run_dataset(dataset, store, engine=local, ray=ray, log=lambda line: print(line, flush=True))
    except RunError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        interrupted = True
    json_path, zip_path = write_results(out_dir, dataset, store)
    done = len(store.done)
    print(f"{'interrupted' if interrupted else 'done'}: {done} of {len(dataset.videos)} videos "
          f"({sum(d.frames for d in store.done.values())} frames) in {store.path}, "
          f"{time.perf_counter() - start:.1f} s this run")
    for failure in failed:
        print(f"failed: video {failure.video_id}: {failure.reason}")
    complete = done == len(dataset.videos)
    print(f"wrote {json_path} and {zip_path}" + ("" if complete else f" (covering {done} of {len(dataset.videos)} "
          f"videos: not ready for the servers; run the same command again to do the others)"))
    if interrupted:
        return 130
    return 0 if complete else 1


def _evaluate(args) -> int:
    import zipfile

    from visolo_fast.evaluation import EvaluationError, _load_json, evaluate_ytvis, summary_lines

    results = args.results
    try:
        if zipfile.is_zipfile(results):
            with zipfile.ZipFile(results) as z:
                if "results.json" not in z.namelist():
                    raise UserError(f"--results: {results} has no results.json at its root (it has "
                                    f"{z.namelist()[:5]}); the servers need it there too")
                results = json.loads(z.read("results.json"))
        else:
            results = _load_json(results, "results")
        if results == []:  # NB: scored, every AP would be 0 (or -1): a number that hides the empty file
            raise UserError(f"--results {args.results}: an empty list, no results to score (a run that finished "
                            f"no video, or found no track in any)")
        stats = evaluate_ytvis(args.annotations, results)
    except (EvaluationError, OSError) as exc:
        message = str(exc)  # "results[3] (video_id 7): ...", "annotations: cannot read ...": as the options
        raise UserError(f"--{message}" if message.startswith(("results", "annotations")) else message) from None
    for line in summary_lines(stats):
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def _shapes(args) -> int:
    from visolo_fast.io.shapes import make_shapes_dataset

    _check_out(args.out)
    path = make_shapes_dataset(args.out, args.videos, args.frames, args.size)
    print(f"wrote {path} and {os.path.join(args.out, 'JPEGImages')}/ ({args.videos} videos)")
    return 0


class _Frames:
    """A list of frames with a FrameSource's attributes."""

    def __init__(self, frames: list[np.ndarray], fps: float):
        self.frames, self.fps, self.count, self.notes = frames, fps, len(frames), set()
        self.spec, self.kind, self.size = "sample", "the bundled sample", frames[0].shape[:2]

    def __iter__(self):
        return iter(self.frames)

    def close(self) -> None:
        pass


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HxW, such as 720x1280, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return h, w


def _dtype(text: str) -> torch.dtype:
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"must be {', '.join(list(DTYPES)[:-1])} or {list(DTYPES)[-1]}, got {text!r}")
    return DTYPES[text]


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _at_least_3(text: str) -> int:
    value = _integer(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"must be at least 3 (frame 0, the previous and the current frame), got {value}")
    return value


def _memory_frames(text: str) -> int | str:
    return "none" if text.lower() == "none" else _at_least_3(text)


def _lost_frames(text: str) -> int | str:
    return "none" if text.lower() == "none" else _positive(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # refused below, with the text given
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _count(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with an option's value that is refused (by its type's check, or not one of
    its choices) as the run's other errors: one line, ``error: --option: why``, exit status 2
    (a :class:`UserError`, printed by :func:`main`). A wrong command line (an unknown option or
    command, a missing value) keeps argparse's usage and message. Subparsers are of this class too."""

    def _get_value(self, action, arg_string):
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as exc:
            raise _refused(action, exc) from None

    def _check_value(self, action, value):
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            raise _refused(action, exc) from None


def _refused(action: argparse.Action, exc: argparse.ArgumentError) -> Exception:
    # NB: a positional's value (the command's name, among them) is the command line's shape: argparse's error
    return UserError(f"{'/'.join(action.option_strings)}: {exc.message}") if action.option_strings else exc


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m visolo_fast", description=vf.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, devices, and which backends are usable (and why not)").set_defaults(run=_info)
    segment = sub.add_parser("segment", help="segment and track a video file, a folder of frames, a stream or a camera")
    segment.add_argument("input", metavar="INPUT", nargs="+",
                         help="a video file, a folder of .jpg/.png frames, a pipe, a stream URL (rtsp://, http://, "
                              "udp://, ...), a camera index or device (/dev/video0); several: one engine, each its own "
                              "outputs in OUT/0, OUT/1, ...")
    segment.add_argument("--out", default="visolo_out", help="output folder (default visolo_out)")
    segment.add_argument("--every-frame", action="store_true",
                         help="live inputs (streams, cameras): every frame, in order, through a bounded queue (default: "
                              "the newest frame, the others dropped and counted); files are never dropped")
    segment.add_argument("--queue-size", type=_positive, metavar="N",
                         help="frames the --every-frame queue holds (default 32); when full, the reader waits")
    segment.add_argument("--rtsp-transport", choices=["tcp", "udp"],
                         help="RTP over the RTSP connection (tcp, the default) or over UDP, for rtsp:// inputs")
    segment.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                         help="seconds each phase of a live input may take: opening it (a stream's first frame waits "
                              "for its first keyframe), its first frame, and each frame after that, before it counts as "
                              f"lost and is reopened (default {DEFAULT_TIMEOUT:g})")
    segment.add_argument("--reconnect", type=_count, default=5, metavar="N",
                         help="tries to reopen a live input that was lost, with backoff 0.5 s, 1 s, 2 s ... 8 s (default 5)")
    segment.add_argument("--latency-log", metavar="FILE",
                         help="write one CSV row per frame: input, frame, source frame, capture and result times (s), "
                              "latency (ms)")
    segment.set_defaults(run=_segment)
    demo = sub.add_parser("demo", help="segment and track the bundled sample clip")
    demo.add_argument("--frames", type=_positive, default=8, help="number of sample frames (default 8)")
    demo.add_argument("--out", default="visolo_demo", help="output folder (default visolo_demo)")
    demo.set_defaults(run=_demo)
    ytvis = sub.add_parser("ytvis", help="every video of a YouTube-VIS dataset: results.json and results.zip for the "
                                         "benchmark servers (resumable)")
    ytvis.add_argument("--annotations", required=True, help="the dataset's json (YouTube-VIS 2019 / 2021 or OVIS layout)")
    ytvis.add_argument("--images", required=True, help="the folder the json's file_names are relative to (JPEGImages/)")
    ytvis.add_argument("--out", default="ytvis_out", help="output folder (default ytvis_out)")
    ytvis.add_argument("--classes", help=f"the checkpoint's class names ({', '.join(sorted(BUILT_IN))} or a file): "
                                         f"checked against the json's categories (default: not checked, only counted)")
    ytvis.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run the videos over a Ray cluster: its ADDRESS, or none to start one on this machine "
                            "(pip install 'visolo_fast[ray]')")
    ytvis.add_argument("--ray-workers", type=_positive, metavar="N",
                       help="Ray workers, one model each (default: one per GPU with --device cuda, else one per 2 CPUs)")
    ytvis.set_defaults(run=_ytvis)
    export = sub.add_parser("export", help="the network's frame as an AOTInductor package (.pt2): run it with "
                                           "--package, Engine.from_package or the C++ tracker, nothing compiled at start")
    export.add_argument("--out", default="visolo.pt2", help="the package file to write (default visolo.pt2)")
    export.set_defaults(run=_export)
    for p in (segment, demo, ytvis, export):
        p.add_argument("--weights", help="a VISOLO checkpoint (official .pth or saved by visolo_fast); "
                                         "default: random weights")
        p.add_argument("--trusted", action="store_true",
                       help="load --weights with pickled Python objects (torch.load weights_only=False): it can run "
                            "code stored in the file, only for files you trust")
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
        p.add_argument("--dtype", default=torch.float32, type=_dtype,
                       help="network precision: float32 (default), float16, bfloat16 (fast engine; decisions stay float32)")
        p.add_argument("--max-memory-frames", type=_memory_frames, metavar="N",
                       help=f"cap the model's memory at N >= 3 frames (endless streams; default: the official, unbounded; "
                            f"{LIVE_MEMORY_FRAMES} for live inputs, 'none' to keep it unbounded there too)"
                       if p is not export else "the package's memory cap, N >= 3 frames: it runs with N or fewer "
                                               "(default: unbounded, the official memory)")
    for p in (segment, demo, ytvis):
        p.add_argument("--backend", default="auto", choices=list(backends.BACKENDS))
        p.add_argument("--compile", action="store_true", help="torch.compile the network (fast engine; slow first frames)")
        p.add_argument("--cuda-graphs", action="store_true", help="replay the network from CUDA graphs (fast engine, --device cuda)")
    for p in (segment, demo):
        p.add_argument("--threads", type=_positive, metavar="N",
                       help="torch's CPU threads, fixed (default: adapted while running to the step's time, between "
                            "all usable cores and fewer; OMP_NUM_THREADS, OMP_WAIT_POLICY or GOMP_SPINCOUNT set: "
                            "torch's count, fixed)")
        p.add_argument("--package", metavar="PT2",
                       help="run a package written by `python -m visolo_fast export` (its weights, device and dtype; "
                            "instead of --weights)")
        p.add_argument("--max-lost-frames", type=_lost_frames, metavar="N",
                       help=f"a track lost for more than N >= 1 frames ends (endless streams; default: the official, "
                            f"kept for good; {LIVE_LOST_FRAMES} for live inputs, 'none' to keep them there too)")
        p.add_argument("--classes", default="ytvis2019",
                       help=f"class names: {', '.join(sorted(BUILT_IN))} or a file with one name a line")
        p.add_argument("--output-size", type=_size, help="HxW of the output masks and overlay (default: the input's)")
        p.add_argument("--save-masks", action="store_true", help="also write masks/NNNNNN.png, pixel = track id + 1")
    evaluate = sub.add_parser("evaluate", help="YouTube-VIS AP and AR of a results file (the official evaluation)")
    evaluate.add_argument("--annotations", required=True, help="the ground truth: a YouTube-VIS json with annotations")
    evaluate.add_argument("--results", required=True, help="results.json (or results.zip) of the videos")
    evaluate.add_argument("--json", metavar="OUT", help="also write the 12 numbers to this json file")
    evaluate.set_defaults(run=_evaluate)
    shapes = sub.add_parser("shapes", help="write a small YouTube-VIS-layout dataset of moving shapes, with ground truth")
    shapes.add_argument("out", metavar="OUT", help="the dataset's folder (JPEGImages/ and annotations.json)")
    shapes.add_argument("--videos", type=_positive, default=3, help="number of videos (default 3)")
    shapes.add_argument("--frames", type=_positive, default=6, help="frames of the first video (default 6; video v has v more)")
    shapes.add_argument("--size", type=_size, default=(72, 128), help="HxW of the frames (default 72x128)")
    shapes.set_defaults(run=_shapes)
    return parser


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[list[int]]:
    """While in it, SIGTERM stops a run as Ctrl-C does (a KeyboardInterrupt: the files of the
    frames done are closed, valid); the list it gives holds the SIGTERMs received. Only the
    first one interrupts: a second one, sent while the run closes its files, cannot cut that
    short. The previous handler is back on the way out. Outside the main thread, where Python
    cannot set a handler, it does nothing."""
    received: list[int] = []

    def handler(signum, _frame) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        # NB: None: a handler set outside Python, which cannot be put back; the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: list[str] | None = None) -> int:
    """Runs a command line; returns its exit status: 0 done, 1 a dataset run with videos left,
    2 an error, 130 stopped by Ctrl-C, 143 (128 + SIGTERM) stopped by SIGTERM, which is
    handled as Ctrl-C (``python -m visolo_fast`` then ends by the signal itself)."""
    quiet_opencv()  # before the first video is opened: our one-line errors, not FFmpeg's and OpenCV's logs
    with _sigterm_as_ctrl_c() as terminated:
        try:
            args = _parser().parse_args(argv)
            for cap in ("max_memory_frames", "max_lost_frames"):
                if getattr(args, cap, None) == "none" and args.command != "segment":
                    setattr(args, cap, None)  # the default there
            if getattr(args, "out", None):
                args.out = _tidy(args.out)
            status = args.run(args)
        except UserError as exc:
            print("error: " + " ".join(str(exc).split()), file=sys.stderr)
            status = 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            status = 130
    return 128 + signal.SIGTERM if terminated else status
