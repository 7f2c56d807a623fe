"""grid_weight: VISOLO's score re-weighting (spec section 4).

A grid of the current frame that resembles some grid of an earlier frame is
more likely a real object: its category score is multiplied by the best
sigmoid similarity it has with each earlier frame, averaged over the (one or
two) earlier frames.
"""

from __future__ import annotations

import torch

from visolo_fast import backends
from visolo_fast._common import opmath_dtype

OP = "grid_weight"
# Compiled backends, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(query: torch.Tensor, keys: torch.Tensor) -> None:
    for name, t, dims in (("query", query, "[B, S, D]"), ("keys", keys, "[B, E, S, D]")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"grid_weight: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"grid_weight: {name} must be a floating-point tensor, got {t.dtype}")
        if t.dim() != len(dims.split(",")):
            raise ValueError(f"grid_weight: {name} must be {dims}, got shape {tuple(t.shape)}")
    if keys.shape[0] != query.shape[0] or keys.shape[3] != query.shape[2] or keys.shape[2] < 1 or keys.shape[1] < 1:
        raise ValueError(f"grid_weight: keys must be [B, E, S', D] with E, S' >= 1 and B, D as query {tuple(query.shape)}, "
                         f"got {tuple(keys.shape)}")
    if keys.device != query.device:
        raise ValueError(f"grid_weight: query and keys must be on one device, got {query.device} and {keys.device}")
    if keys.dtype != query.dtype:
        raise TypeError(f"grid_weight: query and keys must share one dtype, got {query.dtype} and {keys.dtype}")


def grid_weight_reference(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch, as the official ``getGridWeight``: fp32 (fp64 for fp64 inputs)."""
    dtype = opmath_dtype(query.dtype, keys.dtype)
    logits = torch.matmul(query.to(dtype).unsqueeze(1), keys.to(dtype).transpose(-1, -2))  # [B, E, S, S']
    return torch.sigmoid(logits).amax(dim=3).mean(dim=1)


def grid_weight(query: torch.Tensor, keys: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``w[b, i] = mean over e of (max over j of sigmoid(query[b, i] . keys[b, e, j]))``.

    Args:
        query (Tensor[B, S, D]): the current frame's tracking query embeddings.
        keys (Tensor[B, E, S', D]): the reference embeddings of E earlier frames (E = 1 or 2 in VISOLO).
        backend: see :mod:`visolo_fast.backends`.

    Returns:
        Tensor[B, S], float32 (float64 for float64 inputs).
    """
    check_input(query, keys)
    chosen = backends.resolve(backend, query.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return grid_weight_reference(query, keys)
    if chosen == "triton":
        from visolo_fast.triton.grid_weight import grid_weight_triton  # inputs checked above

        return grid_weight_triton(query, keys)
    return torch.ops.visolo_fast.grid_weight(query, keys)


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::grid_weight")
    def _grid_weight_fake(query, keys):
        return query.new_empty(query.shape[:2], dtype=opmath_dtype(query.dtype))
