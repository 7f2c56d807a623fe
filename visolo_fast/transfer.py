"""Host data to a device without waiting for it."""

from __future__ import annotations

import torch


def to_device(data, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``data`` (a host tensor, or values for ``torch.tensor``) on ``device``, queued behind the
    device's work rather than waiting for it: a plain copy to a GPU from pageable memory
    synchronises with its stream (the host waits for every queued kernel); from pinned
    memory it is queued like a kernel."""
    host = data if isinstance(data, torch.Tensor) else torch.tensor(data, dtype=dtype)
    device = torch.device(device)
    if host.device == device:
        return host
    if device.type != "cuda" or host.device.type != "cpu":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
