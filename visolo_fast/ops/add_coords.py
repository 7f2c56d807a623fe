"""add_coords: append the row and column coordinate channels to a feature map.

VISOLO's ``addCoord``: before the kernel branch and the mask branch, two
channels are appended to the res4 features, first the row coordinate then the
column coordinate, each ``linspace(-1, 1)`` over the map's height and width.
"""

from __future__ import annotations

import torch

from visolo_fast import backends

OP = "add_coords"
# Compiled backends, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"add_coords: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"add_coords: x must be [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"add_coords: x must be float64, float32, float16 or bfloat16, got {x.dtype}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"add_coords: x must have H >= 1 and W >= 1, got {tuple(x.shape)}")


def add_coords_reference(x: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch, the official way: ``torch.linspace`` on the CPU, moved to x's device."""
    B, _, H, W = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    ys = torch.linspace(-1, 1, H, dtype=dtype).to(x.device)
    xs = torch.linspace(-1, 1, W, dtype=dtype).to(x.device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).to(x.dtype)
    return torch.cat([x, grid.expand(B, 2, H, W)], dim=1)


def add_coords(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Appends the coordinate channels (y then x) to ``x``.

    Args:
        x (Tensor[B, C, H, W]): feature map, float64/32/16 or bfloat16, any strides.
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        Tensor[B, C + 2, H, W], contiguous, x's dtype and device: channels ``:C`` are
        x; channel C is ``linspace(-1, 1, H)`` along the rows, channel C + 1 is
        ``linspace(-1, 1, W)`` along the columns.
    """
    check_input(x)
    chosen = backends.resolve(backend, x.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return add_coords_reference(x)
    if chosen == "triton":
        from visolo_fast.triton.add_coords import add_coords_triton

        return add_coords_triton(x)
    # cpp and cuda are the same dispatcher op; the device of x picks the kernel.
    return torch.ops.visolo_fast.add_coords(x)


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::add_coords")
    def _add_coords_fake(x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        return x.new_empty((B, C + 2, H, W))
