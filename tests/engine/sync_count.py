"""Counts what would make the host wait for a GPU, on any device.

On a GPU, an operation whose output size depends on the data (``nonzero``, boolean-mask
indexing, ``unique``, ...), a read of a tensor's value on the host (``.item()``,
``bool()``, ``.tolist()``, ``.numpy()``) and a copy to the host each drain the device's
queue. On the CPU nothing waits, but the same calls are made: counting them here tells
what a frame would cost in synchronisations on a GPU.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ATen ops whose output size (or a host value) comes from the data.
_SYNCING = {aten.nonzero, aten._local_scalar_dense, aten.masked_select, aten._unique, aten._unique2, aten.unique_dim,
            aten.unique_consecutive, aten.unique_dim_consecutive}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


def _is_bool_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype in (torch.bool, torch.uint8)


class _Dispatch(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in _SYNCING:
            self.counts[packet.__name__] += 1
        elif packet in _INDEXING and any(_is_bool_tensor(i) for i in (args[1] if len(args) > 1 else ())):
            self.counts[f"{packet.__name__} (bool mask)"] += 1
        elif packet is aten.repeat_interleave and kwargs.get("output_size") is None:
            self.counts["repeat_interleave (no output_size)"] += 1
        elif packet in (aten._to_copy, aten.copy_):
            src = args[1] if packet is aten.copy_ else args[0]
            dst = args[0].device if packet is aten.copy_ else kwargs.get("device")
            if dst is not None and torch.device(dst).type == "cpu" and src.device.type != "cpu":
                self.counts["copy to host"] += 1
        return func(*args, **kwargs)


class _Function(TorchFunctionMode):
    """Host reads that do not reach the dispatcher (``.item()`` and ``bool()`` do: as
    ``_local_scalar_dense``)."""

    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.numpy, torch.Tensor.tolist):
            self.counts[f"Tensor.{func.__name__}"] += 1
        return func(*args, **(kwargs or {}))


class SyncCounter:
    """``with SyncCounter() as c: ...``; then ``c.counts`` (per op) and ``c.total``."""

    def __init__(self):
        self.counts: Counter = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> SyncCounter:
        self._modes = [_Function(self.counts), _Dispatch(self.counts)]
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
