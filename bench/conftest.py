"""The op microbenchmarks (pytest-benchmark): every backend of an op and its reference,
side by side, at the official shapes.

    pytest bench/ --benchmark-only                            # time them (~2-3 minutes on 2 CPU cores)
    pytest bench/ --benchmark-only --benchmark-save=NAME      # and save bench/results/<machine>/NNNN_NAME.json
    pytest bench/ --benchmark-only --benchmark-compare        # and compare with the latest saved run
    pytest bench/                                             # no timing: each case once, checked (a smoke test)

pyproject.toml's addopts has ``--benchmark-disable`` (so that ``pytest`` on the tests never
times anything); pytest-benchmark refuses ``--benchmark-only`` together with it, so here
``--benchmark-only`` also turns on ``--benchmark-enable`` (the plugin's own override of
``--benchmark-disable``). Saved runs go to bench/results/ unless ``--benchmark-storage``
says otherwise. Each benchmark's group is "<op> <shape> <device>", so its table shows
the backends next to the reference of the same device; the summary at the end (and
``extra_info["ratio_to_reference"]`` in the saved JSON) gives each backend's median
against the reference's.
"""

from __future__ import annotations

import os

import pytest
import torch

from visolo_fast import backends

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's default --benchmark-storage

# (backend, device) of every case; the reference of a device is in each of its groups.
TARGETS = [("reference", "cpu"), ("cpp", "cpu"), ("reference", "cuda"), ("cuda", "cuda"), ("triton", "cuda")]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # NB: runs before pytest-benchmark's pytest_configure builds its session from the options.
    if config.getoption("benchmark_only", False):
        config.option.benchmark_enable = True
    if getattr(config.option, "benchmark_storage", None) == DEFAULT_STORAGE:
        config.option.benchmark_storage = "file://" + RESULTS


@pytest.fixture(params=TARGETS, ids=[f"{b}-{d}" for b, d in TARGETS])
def target(request):
    """(backend, device) of one case; GPU cases skip without a GPU."""
    backend, device = request.param
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU")
    if backend == "triton" and backends.triton_interpreted():
        pytest.skip("TRITON_INTERPRET=1: the Triton interpreter is a correctness tool, not timed")
    return backend, torch.device(device)


_REFERENCE_OUTPUTS: dict[tuple, object] = {}


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.cpu()
    return tuple(_to_cpu(t) for t in x)


@pytest.fixture
def run_op(target, benchmark):  # NB: target first: a GPU case skips before the benchmark fixture exists
    """``run_op(op, shape, call, check, op_name=None, dtype="float32")``: times ``call(backend)``
    on the case's backend, in the group "<op> <shape> <device>".

    Before the timing (untimed, also the warm-up) the backend's output is compared with the
    reference's on the same inputs by ``check(got, want)`` (both on the CPU): a benchmark of
    a wrong kernel is worthless. ``op_name`` is the registered op whose kernel the backend
    needs (default ``op``)."""
    backend, device = target

    def run(op, shape, call, check, op_name=None, dtype="float32"):
        reason = backends.why_unavailable(backend, device, op_name or op)
        if reason is not None:
            benchmark.skipped = True  # no "fixture not used" warning
            pytest.skip(reason)
        key = (op, shape, device.type)
        got = call(backend)
        if backend == "reference":
            _REFERENCE_OUTPUTS[key] = _to_cpu(got)
        else:
            if key not in _REFERENCE_OUTPUTS:
                _REFERENCE_OUTPUTS[key] = _to_cpu(call("reference"))
            check(_to_cpu(got), _REFERENCE_OUTPUTS[key])
        benchmark.group = f"{op} {shape} {device.type}"
        benchmark.extra_info.update(op=op, shape=shape, backend=backend, device=device.type, dtype=dtype)
        if device.type == "cuda":
            def timed():
                call(backend)
                torch.cuda.synchronize(device)
            torch.cuda.synchronize(device)
        else:
            def timed():
                call(backend)
        benchmark(timed)

    return run


def _ratios(rows):
    """rows: (group, backend, median) -> {(group, backend): reference median / median}."""
    reference = {group: median for group, backend, median in rows if backend == "reference"}
    return {(group, backend): reference[group] / median for group, backend, median in rows
            if group in reference and median > 0}


def pytest_benchmark_update_json(config, benchmarks, output_json):
    rows = [(b["group"], b["extra_info"].get("backend"), b["stats"]["median"]) for b in output_json["benchmarks"]]
    ratios = _ratios(rows)
    for b in output_json["benchmarks"]:
        ratio = ratios.get((b["group"], b["extra_info"].get("backend")))
        if ratio is not None:
            b["extra_info"]["ratio_to_reference"] = round(ratio, 4)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    done = [b for b in getattr(session, "benchmarks", []) if b.extra_info.get("backend")]
    if not done:
        return
    rows = [(b.group, b.extra_info["backend"], b.stats.median) for b in done]
    ratios = _ratios(rows)
    terminalreporter.write_sep("-", "median per backend, and the reference's median over it (higher: faster)")
    width = max(len(g) for g, _, _ in rows)
    for group, backend, median in sorted(rows, key=lambda r: (r[0], r[1] != "reference", r[1])):
        ratio = ratios.get((group, backend))
        text = f"{ratio:6.2f}x" if ratio is not None else "    (no reference)"
        terminalreporter.write_line(f"{group:<{width}}  {backend:<10} {median * 1000:10.3f} ms  {text}")
