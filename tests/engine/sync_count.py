"""Counts what would make the host wait for a GPU.

On a GPU, an operation whose output size depends on the data (``nonzero``, boolean-mask
indexing, ``unique``, ...), a read of a tensor's value on the host (``.item()``,
``bool()``, ``.tolist()``, ``np.asarray``), a copy to the host, and a blocking copy from
pageable host memory to the GPU each drain the device's queue. On the CPU nothing waits,
but the same calls are made: counting them tells what a frame would cost in
synchronisations on a GPU. A copy to the host is counted at ``.cpu()`` / ``.to("cpu")``
(a no-op on the CPU, so still seen there), and a host read of its result is not counted
again. Not seen: what C++ code does inside an op (none of ours reads device data), and
copies from the host to a device, which happen on a GPU only (counted there).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ATen ops whose output size (or a host value) comes from the data.
_SYNCING = {aten.nonzero, aten._local_scalar_dense, aten.masked_select, aten._unique, aten._unique2, aten.unique_dim,
            aten.unique_consecutive, aten.unique_dim_consecutive, aten.equal, aten.is_nonzero}
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
            dst = src.device if dst is None else torch.device(dst)
            blocking = not (args[2] if packet is aten.copy_ and len(args) > 2 else kwargs.get("non_blocking", False))
            if packet is aten.copy_ and dst.type == "cpu" and src.device.type != "cpu":
                self.counts["copy to host"] += 1  # NB: .cpu() and .to() are counted as they are called
            elif dst.type != "cpu" and src.device.type == "cpu" and (blocking or not src.is_pinned()):
                self.counts["blocking copy to the device"] += 1
        return func(*args, **kwargs)


def _to_host(func, args, kwargs) -> bool:
    if func is torch.Tensor.cpu:
        return True
    if func is torch.Tensor.to:
        target = kwargs.get("device", args[1] if len(args) > 1 else None)
        return isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"
    return False


class _Function(TorchFunctionMode):
    """Copies to the host, as called (on the CPU they dispatch nothing), and host reads that
    do not reach the dispatcher (``.item()`` and ``bool()`` do: ``_local_scalar_dense``)."""

    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts
        self.on_host: dict[int, torch.Tensor] = {}  # results of counted copies (kept alive: ids stay theirs)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _to_host(func, args, kwargs):
            self.counts["copy to host"] += 1
            out = func(*args, **kwargs)
            self.on_host[id(out)] = out
            return out
        if func in (torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.__array__) and id(args[0]) not in self.on_host:
            self.counts[f"Tensor.{func.__name__}"] += 1
        return func(*args, **kwargs)


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
