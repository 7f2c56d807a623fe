"""Shared by the benchmarks: timing, and the rows appended to bench/results/."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import subprocess
import time
from collections.abc import Callable

import torch

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FIELDS = ["date", "commit", "device", "op", "shape", "dtype", "backend", "median_ms", "ratio_to_reference", "peak_mb"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(RESULTS), timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int = 30, warmup: int = 3) -> float:
    """The median wall time of fn() in milliseconds (synchronising the GPU around each call)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000


def append_rows(name: str, rows: list[dict], fields: list[str] = FIELDS) -> str:
    """Appends rows to bench/results/<name>.csv (header written once); returns the path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.csv")
    new = not os.path.exists(path)
    if not new:  # an older file keeps its columns
        with open(path, newline="") as f:
            fields = next(csv.reader(f), fields)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        stamp = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit()}
        for row in rows:
            writer.writerow({**stamp, **row})
    return path


def available(op: str, implemented: tuple[str, ...], device: torch.device) -> list[str]:
    """The reference, then the op's compiled backends that run on `device` (never the
    Triton interpreter: it is a correctness tool, no benchmark)."""
    from visolo_fast import backends

    return ["reference"] + [b for b in implemented if backends.why_unavailable(b, device, op) is None
                            and not (b == "triton" and device.type == "cpu")]


def peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    """The CUDA allocator's peak during fn() beyond what was allocated before, in MB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def print_table(rows: list[dict]) -> None:
    print(f"{'op':>14} {'shape':>22} {'dtype':>9} {'backend':>13} {'median ms':>10} {'vs reference':>13} {'peak MB':>8}")
    for r in rows:
        peak = f"{r['peak_mb']:>8.1f}" if r.get("peak_mb") is not None else f"{'':>8}"
        print(f"{r['op']:>14} {r['shape']:>22} {r['dtype']:>9} {r['backend']:>13} {r['median_ms']:>10.3f} "
              f"{r['ratio_to_reference']:>12.2f}x {peak}")
