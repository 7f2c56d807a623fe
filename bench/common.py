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
    return (f"cpu ({_cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")


def _cpu_model() -> str:
    # NB: the machines these runs are on differ (AVX-512 Intel, AVX2 AMD): say which one.
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def commit() -> str:
    # NB: a copy of the tree without .git (the GPU machine's) names its commit in
    # GPU_CHECK_COMMIT (bench/gpu_check.sh passes it on).
    fallback = os.environ.get("GPU_CHECK_COMMIT") or "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(RESULTS), timeout=10)
        return out.stdout.strip() or fallback
    except (OSError, subprocess.SubprocessError):
        return fallback


def write_report(report: str, path: str) -> None:
    """Prints a benchmark's report and writes it to ``path`` (under bench/results/ by default)."""
    print(report)
    with open(path, "w") as f:
        f.write(report)
    print(f"report written to {os.path.relpath(path)}")


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
    """Appends rows to bench/results/<name>.csv (header written once); returns its path,
    relative to the working directory (it goes into reports)."""
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
    return os.path.relpath(path)


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


# The official inputs of the op benchmarks, shared by bench/test_*.py (pytest-benchmark)
# and the same as the scripts bench/bench_*.py build (same seeds, same formulas).

MEMORY_S, MEMORY_D, MEMORY_V = 252, 128, 512  # query grids, key channels, value channels
MASK_E, MASK_h, MASK_w = 256, 88, 156  # mask features: channels, height, width (masks are 4h x 4w = 352 x 624)


def memory_read_inputs(T: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """query [1, S, D], keys [1, T S, D], values [1, T S, V], residual [1, S, V] of T memory frames."""
    S, D, V = MEMORY_S, MEMORY_D, MEMORY_V
    g = torch.Generator().manual_seed(T)
    q, k = torch.randn(1, S, D, generator=g) * 0.1, torch.randn(1, T * S, D, generator=g) * 0.1
    v, r = torch.randn(1, T * S, V, generator=g), torch.randn(1, S, V, generator=g)
    return tuple(t.to(device=device, dtype=dtype) for t in (q, k, v, r))


def grid_weight_inputs(E: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """query [1, S, D] and the keys [1, E, S, D] of E earlier frames."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, MEMORY_S, MEMORY_D, generator=g) * 0.1
    k = torch.randn(1, E, MEMORY_S, MEMORY_D, generator=g) * 0.1
    return q.to(device=device, dtype=dtype), k.to(device=device, dtype=dtype)


def dynamic_masks_inputs(kind: str, K: int, device: torch.device):
    """features [E, h, w] and kernels [K, E]. kind "random": random kernels, masks of about
    half the frame in salt-and-pepper pieces (the C++ backend's worst case); "objects":
    kernel k reads channel k, a smooth blob on a negative background (masks of a few
    percent of the frame, as trained masks are)."""
    E, h, w = MASK_E, MASK_h, MASK_w
    g = torch.Generator().manual_seed(K)
    if kind == "random":
        return torch.randn(E, h, w, generator=g).to(device), (torch.randn(K, E, generator=g) * 0.06).to(device)
    if kind != "objects":
        raise ValueError(f"kind must be 'random' or 'objects', got {kind!r}")
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    centres = torch.rand(E, 2, generator=g) * torch.tensor([h, w])
    radius = 4 + 8 * torch.rand(E, 1, 1, generator=g)
    d2 = (yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2
    features = 6 * (1 - d2 / radius**2).clamp(min=-1) + 0.1 * torch.randn(E, h, w, generator=g)
    kernels = torch.eye(E)[torch.arange(K) % E]
    return features.to(device), kernels.to(device)


def object_masks(K: int, device: torch.device) -> torch.Tensor:
    """bool [K, 352, 624]: the reference dynamic masks of the object-like inputs (what resize_masks gets)."""
    from visolo_fast.ops.dynamic_masks import dynamic_masks_reference

    features, kernels = dynamic_masks_inputs("objects", K, torch.device("cpu"))
    return dynamic_masks_reference(features, kernels, 0.5)[0].to(device)


def nms_inputs(K: int, device: torch.device, size: tuple[int, int] = (352, 624)):
    """masks bool [K, H, W] (blocky random masks, about 20% set), labels int64 [K] (4 labels)
    and scores float32 [K] sorted descending, as the engine hands them to Matrix NMS."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(K)
    masks = F.interpolate(torch.rand((1, K, 22, 39), generator=g), size=size)[0] > 0.8
    labels = torch.randint(0, 4, (K,), generator=g)
    scores = torch.sort(torch.rand(K, generator=g), descending=True).values
    return masks.to(device), labels.to(device), scores.to(device)
