"""Where the engine's time goes: named stages, timed when a :class:`StageTimes` is active.

Each stage is also a ``torch.profiler.record_function`` range (``visolo_fast::<stage>``),
so it shows up in a profiler trace. With no :class:`StageTimes` active, a stage costs
one global lookup and the (disabled) profiler range: nothing is synchronised.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch

# "network" is the reference engine's backbone, heads and memory read in one pass.
STAGES = ("backbone", "heads", "memory", "masks", "nms", "association", "network")

_active: StageTimes | None = None


class StageTimes:
    """Accumulates the wall time of each stage while active (``with StageTimes(device) as t``).

    NB: on a GPU the device is synchronised before and after every stage so that its
    kernels are counted in it: the stages then add up to more than an unsynchronised run.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    def __enter__(self) -> StageTimes:
        global _active
        if _active is not None:
            raise RuntimeError("StageTimes: another StageTimes is already active")
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def stage(name: str, timed: bool = True):
    """Times the enclosed code as stage ``name`` (one of :data:`STAGES`); with ``timed=False``
    it does nothing (code traced, compiled or captured as one graph, which is timed whole:
    a timer would synchronise the GPU inside a CUDA graph capture)."""
    if name not in STAGES:
        raise ValueError(f"stage: name must be one of {STAGES}, got {name!r}")
    return _timed(name) if timed else nullcontext()


@contextmanager
def _timed(name: str):
    with torch.profiler.record_function(f"visolo_fast::{name}"):
        timer = _active
        if timer is None:
            yield
            return
        timer.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            timer.sync()
            timer.seconds[name] += time.perf_counter() - start
