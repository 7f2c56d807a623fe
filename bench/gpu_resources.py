"""Ahead-of-time compile and resource check of every GPU kernel, without a GPU.

    python bench/gpu_resources.py [--out FILE] [--arch 80 90] [--cuda-objects FILE|DIR|GLOB]
                                  [--engine-launches FILE]

What it checks, for each arch (sm_80 = A100, sm_90 = H100/H200):

- Triton: the launches the ops make at the official sizes (VISOLO at 352 x 624: S = 252
  grids, 88 x 156 mask features, up to K = 252 masks, T = 1..8 and 40 memory frames,
  masks resized to 720 x 1280; float32, bfloat16 and float16 where the op takes them)
  are recorded by running each Triton launcher on CPU tensors under
  :func:`visolo_fast.triton.launch.recording` (nothing runs); so are the launches of an
  engine run (bench/engine_launches.py, in a subprocess: the public Engine and Tracker with
  backend="triton" in float32, bfloat16 and float16, fixed_shapes True and False, 3 frames
  at 352 x 624, the Triton ops' values from their references; or read from
  --engine-launches FILE where that script wrote them). All are deduplicated to distinct
  (kernel, signature, constexprs, options), specialised as Triton's own launcher would
  (its binder and ``_pack_args``) and compiled with ``triton.compile`` for the target,
  two at a time; ptxas's ``-v`` log gives registers, spills and stack frame, the
  metadata the shared memory.
- CUDA: ``cuobjdump --dump-resource-usage`` on the extension setup.py built and linked
  (visolo_fast/_C*.so; or --cuda-objects, e.g. its objects build/temp/kernels/*.o) gives
  registers, stack, static shared memory per kernel per arch; every kernel must have code
  for every arch checked (the CUDA part of CI's check that each kernel is compiled and
  linked for sm_80 and sm_90).

It exits 1 if a kernel fails to compile or lacks code for an arch, needs more shared memory per block than the
GPU has (sm_80: 166,912 B; sm_90: 232,448 B), or uses local memory: a Triton kernel
with any spill or stack frame, a CUDA kernel with a stack frame beyond its known local
arrays (cuobjdump cannot tell spills from arrays). Why: none of this shows without a
GPU (the interpreter runs no ptxas), and on a GPU it shows as a slow kernel, a first
launch stalled for minutes in ptxas, or a launch that fails at the largest size only.

Writes the table to --out (default bench/results/gpu-resources-triton<version>.txt).
Needs no GPU and not the compiled extension for the Triton part (the engine run needs the
package's dependencies, as ``import visolo_fast``); runs under Triton 3.6
and 3.8 (their compile API is the same: ASTSource(fn, signature, constexprs, attrs),
GPUTarget(backend, arch, warp_size), knobs.nvidia.dump_ptxas_log; checked at start).
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import contextlib
import glob
import importlib
import importlib.util
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# NB: .ci/run sets TRITON_INTERPRET=1 for the tests; under it @triton.jit gives interpreted
# functions, which do not compile. Must be dropped before Triton is imported.
os.environ.pop("TRITON_INTERPRET", None)
# NB: a fresh cache: a cached kernel skips ptxas (no log, no compile time).
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpu-resources-triton-cache-")
atexit.register(shutil.rmtree, os.environ["TRITON_CACHE_DIR"], ignore_errors=True)

import torch  # noqa: E402
import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402


def _import_launchers() -> None:
    """Makes ``visolo_fast.triton.*`` importable without running visolo_fast/__init__.py.

    NB: the package's __init__ imports the whole package (the engine, the dataset tools
    with pycocotools, Pillow, OpenCV), which the GPU image lacks; the Triton launchers
    need only backends.py, _common.py and triton/. Not the compiled extension either.
    """
    if "visolo_fast" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("visolo_fast", os.path.join(ROOT, "visolo_fast", "__init__.py"),
                                                  submodule_search_locations=[os.path.join(ROOT, "visolo_fast")])
    sys.modules["visolo_fast"] = importlib.util.module_from_spec(spec)


_import_launchers()
from visolo_fast.triton.launch import Launch, TensorArg, recording  # noqa: E402

SMEM_LIMIT = {80: 166912, 90: 232448}  # bytes of shared memory one block may use (A100; H100/H200)
# CUDA kernels whose stack frame holds a local array by design (bytes at most), not spills.
CUDA_LOCAL_ARRAYS = {"grid_weight_kernel": 64}  # acc_t best[kMaxFrames = 8] in kernels/grid_weight.cu (double: 64 B)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
S, D, V, E_MASK, H, W = 252, 128, 512, 256, 88, 156  # grids, key dim, value channels, mask features [E, h, w]


def _cases():
    """(label, call) of every Triton launcher at the official sizes; each call launches its kernels."""
    from visolo_fast.triton.dynamic_masks import dynamic_masks_triton
    from visolo_fast.triton.grid_weight import grid_weight_triton
    from visolo_fast.triton.mask_dedup import mask_dedup_keep_triton
    from visolo_fast.triton.mask_intersections import mask_intersections_triton
    from visolo_fast.triton.matrix_nms import matrix_nms_decay_triton
    from visolo_fast.triton.memory_read import memory_read_triton
    from visolo_fast.triton.resize_masks import resize_masks_triton

    def name(dtype):
        return str(dtype).removeprefix("torch.")

    for dtype in DTYPES:
        yield f"dynamic_masks {name(dtype)} K=252", lambda dtype=dtype: dynamic_masks_triton(
            torch.randn(E_MASK, H, W).to(dtype), torch.randn(252, E_MASK).to(dtype), 0.5)
        for E in (1, 2):
            yield f"grid_weight {name(dtype)} E={E}", lambda dtype=dtype, E=E: grid_weight_triton(
                torch.randn(1, S, D).to(dtype), torch.randn(1, E, S, D).to(dtype))
        for T in (*range(1, 9), 40):
            for with_lengths in (False, True):
                def read(dtype=dtype, T=T, with_lengths=with_lengths):
                    q, k = torch.randn(1, S, D).to(dtype), torch.randn(1, T * S, D).to(dtype)
                    values, residual = torch.empty(1, T * S, V, dtype=dtype), torch.empty(1, S, V, dtype=dtype)
                    lengths = torch.full((1,), T * S) if with_lengths else None
                    return memory_read_triton(q, k, values, residual, lengths)
                yield f"memory_read {name(dtype)} T={T}{' lengths' if with_lengths else ''}", read
        for kernel in ("gaussian", "linear"):
            yield f"matrix_nms {name(dtype)} {kernel} K=252", lambda dtype=dtype, kernel=kernel: matrix_nms_decay_triton(
                torch.zeros(252, 252, dtype=torch.int64), torch.zeros(252, dtype=torch.int64), torch.rand(252).to(dtype),
                kernel, 2.0)
    # K = 100: the fast engine's instance slots at fixed shapes (max_per_frame), which its
    # duplicate removal runs over.
    for K in (1, 64, 100, 252):
        masks = torch.zeros(K, 4 * H, 4 * W, dtype=torch.bool)
        yield f"mask_intersections K={K}", lambda masks=masks: mask_intersections_triton(masks)
        yield f"mask_dedup K={K}", lambda K=K: mask_dedup_keep_triton(torch.zeros(K, K, dtype=torch.int64), 0.5)
        yield f"resize_masks K={K} -> 720x1280", lambda masks=masks: resize_masks_triton(masks, [720, 1280], 0.5)


def record_launches() -> list[tuple[str, Launch]]:
    """(case label, launch) of every launch the cases make, in order."""
    launches = []
    for label, call in _cases():
        with torch.no_grad(), recording() as recorded:
            call()
        if not recorded:
            raise RuntimeError(f"{label}: the launcher made no launch")
        launches += [(label, r) for r in recorded]
    return launches


def engine_launches(path: str | None) -> list[tuple[str, Launch]]:
    """(case label, launch) of the engine runs of bench/engine_launches.py: read from ``path``
    if it exists, else recorded now in a subprocess (written to ``path`` if given).

    NB: a subprocess: the engine takes the Triton backend for CPU tensors only with
    TRITON_INTERPRET=1, under which @triton.jit gives functions that do not compile."""
    if path is None or not os.path.exists(path):
        with tempfile.TemporaryDirectory() as tmp:
            out = path or os.path.join(tmp, "engine-launches.json")
            env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
                p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
            run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "engine_launches.py"), "--out", out],
                                 env=env, capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"gpu_resources: the engine run failed:\n{run.stderr[-3000:]}")
            print(run.stderr, end="", file=sys.stderr)
            with open(out) as f:
                recorded = json.load(f)
    else:
        with open(path) as f:
            recorded = json.load(f)

    def arg(a):
        return TensorArg(getattr(torch, a["dtype"]), a["address"]) if isinstance(a, dict) else a

    return [(r["case"], Launch(getattr(importlib.import_module(r["module"]), r["kernel"]), tuple(map(arg, r["args"])),
                               {k: arg(v) for k, v in r["meta"].items()})) for r in recorded]


@dataclass
class Job:
    """One distinct Triton compile: a kernel specialised as its launcher would, for one arch."""

    module: str
    kernel: str
    arch: int
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict
    cases: list[str] = field(default_factory=list)

    def key(self):
        return (self.module, self.kernel, self.arch, repr(self.signature), repr(self.constexprs), repr(self.attrs),
                repr(sorted(self.options.items())))


def specialise(launch: Launch, arch: int) -> Job:
    """What ``JITFunction.run`` would compile for ``launch`` on a GPU of ``arch``: its own
    binder (ints equal to 1 become constexprs, pointers and ints divisible by 16 get
    attributes) and ``_pack_args`` (options from the launch's num_warps etc.)."""
    kernel = launch.kernel
    backend = make_backend(GPUTarget("cuda", arch, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kwargs = dict(launch.meta, debug=kernel.debug or knobs.runtime.debug,
                  instrumentation_mode=knobs.compilation.instrumentation_mode)
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return Job(kernel.fn.__module__, kernel.fn.__name__, arch, signature, constexprs, attrs, dict(options.__dict__))


PTXAS_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
PTXAS_REGS = re.compile(r"Used (\d+) registers")


def compile_job(job: Job) -> dict:
    """Compiles ``job`` (in a worker process); its registers, spills, stack, shared memory, seconds or error."""
    _import_launchers()
    fn = getattr(importlib.import_module(job.module), job.kernel)
    knobs.nvidia.dump_ptxas_log = True
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):  # Triton prints ptxas's log
            compiled = triton.compile(ASTSource(fn, job.signature, job.constexprs, job.attrs),
                                      target=GPUTarget("cuda", job.arch, 32), options=job.options)
    except Exception as exc:  # reported in the table: a kernel that does not compile fails the check
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:200],
                "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    text = log.getvalue()
    regs, spills = PTXAS_REGS.search(text), PTXAS_SPILLS.search(text)
    if regs is None or spills is None:
        return {"error": f"no ptxas -v figures in the compile's output: {text[-200:]!r}", "seconds": seconds}
    stack, stores, loads = map(int, spills.groups())
    return {"regs": int(regs.group(1)), "stack": stack, "spill_stores": stores, "spill_loads": loads,
            "smem": compiled.metadata.shared, "seconds": seconds}


def variant_labels(jobs: list[Job]) -> dict[int, str]:
    """For each job, what tells it from its kernel's other jobs of the same arch: the dtype
    of the pointers that differ (most common first, then ``name:dtype`` for the others),
    constexprs, ``name%16`` for ints divisible by 16."""
    labels = {}
    for job in jobs:
        siblings = [j for j in jobs if j.kernel == job.kernel and j.arch == job.arch]

        def shown(j, name, i):
            kind = j.signature[name]
            if kind == "constexpr":
                return f"{name}={j.constexprs[(i,)]}"
            if kind.startswith("*"):
                return kind[1:]
            return f"{name}%16" if ["tt.divisibility", 16] in j.attrs.get((i,), []) else ""

        differing = [(i, name) for i, name in enumerate(job.signature) if len({shown(j, name, i) for j in siblings}) > 1]
        pointers = [shown(job, name, i) for i, name in differing if job.signature[name].startswith("*")]
        common = max(pointers, key=pointers.count) if pointers else None
        parts = [common] if common else []
        for i, name in differing:
            value = shown(job, name, i)
            if job.signature[name].startswith("*"):
                if value != common:
                    parts.append(f"{name.removesuffix('_ptr')}:{value}")
            elif value:
                parts.append(value)
        labels[id(job)] = " ".join(parts) or "-"
    return labels


@dataclass
class CudaKernel:
    obj: str
    name: str
    arch: int
    regs: int
    stack: int
    smem: int
    local: int


def find_cuobjdump() -> str:
    """cuobjdump on PATH, in the CUDA toolkit, else the one in Triton's wheel."""
    for candidate in (shutil.which("cuobjdump"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump"),
                      os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("gpu_resources: no cuobjdump (not on PATH, in $CUDA_HOME/bin, or in Triton's wheel)")


def short_name(mangled: str) -> str:
    """``void visolo_fast::(anonymous namespace)::grid_weight_kernel<c10::Half, float>(...)`` -> ``grid_weight_kernel<Half, float>``."""
    demangled = subprocess.run(["c++filt", mangled], capture_output=True, text=True).stdout.strip() or mangled
    demangled = re.sub(r"\([^()]*\)$", "", demangled.removeprefix("void "))
    for namespace in ("(anonymous namespace)::", "visolo_fast::", "c10::"):
        demangled = demangled.replace(namespace, "")
    return demangled


def cuda_resources(pattern: str) -> list[CudaKernel]:
    objects = sorted(glob.glob(pattern))
    if not objects:
        raise SystemExit(f"gpu_resources: nothing matches {pattern!r}: build the extension with its CUDA kernels first "
                         f"(pip install --no-build-isolation -e .) or pass --cuda-objects")
    cuobjdump, kernels = find_cuobjdump(), []
    for obj in objects:
        out = subprocess.run([cuobjdump, "--dump-resource-usage", obj], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"gpu_resources: cuobjdump failed on {obj}: {out.stderr.strip()}")
        arch = None
        for line in out.stdout.splitlines():
            if m := re.match(r"arch = sm_(\d+)", line):
                arch = int(m.group(1))
            elif m := re.match(r"\s*Function (\S+):", line):
                name = m.group(1)
            elif m := re.match(r"\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", line):
                kernels.append(CudaKernel(os.path.relpath(obj, ROOT), short_name(name), arch, *map(int, m.groups())))
    return kernels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", f"gpu-resources-triton{triton.__version__}.txt"))
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=sorted(SMEM_LIMIT))
    parser.add_argument("--cuda-objects", default=os.path.join(ROOT, "visolo_fast", "_C*.so"),
                        help="the compiled extension, or a directory or glob of CUDA objects (default: the extension "
                             "setup.py linked, visolo_fast/_C*.so)")
    parser.add_argument("--engine-launches", metavar="FILE",
                        help="the engine run's launches as bench/engine_launches.py writes them: read if FILE exists, "
                             "else recorded and written there (default: recorded, not kept)")
    args = parser.parse_args()
    pattern = os.path.join(args.cuda_objects, "*.o") if os.path.isdir(args.cuda_objects) else args.cuda_objects
    started = time.perf_counter()
    # NB: fork the workers now, before torch computes anything (its thread pools do not survive a fork).
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    list(pool.map(int, range(2)))

    launches = record_launches()
    engine_started = time.perf_counter()
    recorded_now = not (args.engine_launches and os.path.exists(args.engine_launches))
    launches += engine_launches(args.engine_launches)
    engine_seconds = time.perf_counter() - engine_started
    jobs: dict = {}
    for arch in args.arch:
        for label, launch in launches:
            job = specialise(launch, arch)
            job = jobs.setdefault(job.key(), job)
            if label not in job.cases:
                job.cases.append(label)
    jobs = list(jobs.values())
    # the slowest compiles (the widest tiles) first, so that the two workers finish together
    order = sorted(jobs, key=lambda j: -max((v for k, v in j.constexprs.items() if isinstance(v, int)), default=0))
    futures = {id(j): pool.submit(compile_job, j) for j in order}
    cuda = cuda_resources(pattern)
    results = {i: f.result() for i, f in futures.items()}
    pool.shutdown()
    elapsed = time.perf_counter() - started

    failures, lines = [], []
    labels = variant_labels(jobs)
    lines.append(f"Triton {triton.__version__}, torch {torch.__version__}: {len(launches)} launches recorded, "
                 f"{len(jobs)} distinct compiles for sm_{', sm_'.join(map(str, args.arch))}")
    header = f"{'kernel':<26} {'variant':<42} {'arch':<6} {'regs':>4} {'spill st/ld B':>13} {'stack B':>7} {'smem B':>7} {'compile s':>9}"
    lines += ["", header, "-" * len(header)]
    for job in sorted(jobs, key=lambda j: (j.kernel, labels[id(j)], j.arch)):
        r = results[id(job)]
        where = f"{job.kernel} {labels[id(job)]} sm_{job.arch}"
        if "error" in r:
            failures.append(f"{where}: does not compile: {r['error']}")
            lines.append(f"{job.kernel:<26} {labels[id(job)]:<42} sm_{job.arch:<3} FAILED: {r['error']}")
            continue
        lines.append(f"{job.kernel:<26} {labels[id(job)]:<42} sm_{job.arch:<3} {r['regs']:>4} "
                     f"{str(r['spill_stores']) + '/' + str(r['spill_loads']):>13} {r['stack']:>7} {r['smem']:>7} "
                     f"{r['seconds']:>9.1f}")
        if r["spill_stores"] or r["spill_loads"] or r["stack"]:
            failures.append(f"{where}: local memory: {r['spill_stores']} B spill stores, {r['spill_loads']} B spill loads, "
                            f"{r['stack']} B stack frame")
        if r["smem"] > SMEM_LIMIT[job.arch]:
            failures.append(f"{where}: {r['smem']} B shared memory, sm_{job.arch} allows {SMEM_LIMIT[job.arch]}")
    for arch in args.arch:
        total = sum(results[id(j)]["seconds"] for j in jobs if j.arch == arch)
        lines.append(f"compile time sm_{arch}: {total:.1f} s (sum over kernels, 2 workers)")

    shown = os.path.relpath(pattern, ROOT) if os.path.abspath(pattern).startswith(ROOT + os.sep) else pattern
    lines += ["", f"CUDA kernels ({shown}, cuobjdump --dump-resource-usage; static shared memory only)", ""]
    header = f"{'kernel':<60} {'arch':<6} {'regs':>4} {'stack B':>7} {'local B':>7} {'smem B':>7}"
    lines += [header, "-" * len(header)]
    built = sorted({k.arch for k in cuda})
    for arch in args.arch:
        if arch not in built:
            failures.append(f"CUDA: the objects hold no sm_{arch} code (they hold sm_{', sm_'.join(map(str, built))}): "
                            f"build with TORCH_CUDA_ARCH_LIST including {arch / 10:.1f}, or pass --arch")
    archs: dict[str, set[int]] = {}
    for k in cuda:
        archs.setdefault(k.name, set()).add(k.arch)
    for name, have in sorted(archs.items()):
        if missing := [a for a in args.arch if a not in have and a in built]:
            failures.append(f"CUDA kernel {name}: no code for sm_{', sm_'.join(map(str, missing))} "
                            f"(has sm_{', sm_'.join(map(str, sorted(have)))})")
    for k in sorted(cuda, key=lambda k: (k.name, k.arch)):
        if k.arch not in args.arch:
            continue
        lines.append(f"{k.name:<60} sm_{k.arch:<3} {k.regs:>4} {k.stack:>7} {k.local:>7} {k.smem:>7}")
        allowed = CUDA_LOCAL_ARRAYS.get(k.name.split("<")[0], 0)
        if k.stack + k.local > allowed:
            failures.append(f"{k.name} sm_{k.arch} ({k.obj}): {k.stack} B stack + {k.local} B local memory, "
                            f"{allowed} B of known local arrays")
        if k.smem > SMEM_LIMIT[k.arch]:
            failures.append(f"{k.name} sm_{k.arch}: {k.smem} B shared memory, sm_{k.arch} allows {SMEM_LIMIT[k.arch]}")

    lines += ["", "Launches recorded (case -> kernel variant):"]
    for job in sorted((j for j in jobs if j.arch == args.arch[0]), key=lambda j: (j.kernel, labels[id(j)])):
        lines.append(f"  {job.kernel} {labels[id(job)]}: {'; '.join(job.cases)}")
    engine = (f"the engine run recorded in {engine_seconds:.0f} s" if recorded_now
              else f"the engine run's launches read from {os.path.basename(args.engine_launches)}")
    lines += ["", f"run time: {elapsed:.1f} s ({engine}; 2 compile workers, {os.cpu_count()} CPUs)",
              "FAILED:" if failures else "OK: every kernel compiles, fits shared memory and uses no local memory for spills"]
    lines += [f"  {f}" for f in failures]
    report = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(report, end="")
    print(f"written to {os.path.relpath(args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
