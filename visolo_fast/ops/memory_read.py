"""memory_read: VISOLO's grid memory matching (spec section 2, "Memory read").

Every grid of the current frame attends to every grid of every memory frame: the
similarity of its tracking query with their reference embeddings (raw dot products,
no scaling), a softmax over all T * S of them at once, and the weighted sum of their
memory values, added to the current feature. The category and kernel memories share
the weights, so they are read together as one [N, 2 * dim] value matrix.
"""

from __future__ import annotations

import torch

from visolo_fast import backends
from visolo_fast._common import described, opmath_dtype

OP = "memory_read"
# Compiled backends, fastest first, for backend="auto".
IMPLEMENTED = ("cuda", "triton", "cpp")


def check_input(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, residual: torch.Tensor,
                lengths: torch.Tensor | None = None) -> None:
    names = ("query", "keys", "values", "residual")
    for name, t in zip(names, (query, keys, values, residual)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 3:
            raise TypeError(f"memory_read: {name} must be a 3-d floating-point tensor, got {described(t)}")
    B, S, D = query.shape
    N = keys.shape[1]
    V = values.shape[2]
    for name, t, want in (("keys", keys, (B, N, D)), ("values", values, (B, N, V)), ("residual", residual, (B, S, V))):
        if tuple(t.shape) != want:
            raise ValueError(f"memory_read: {name} must be {list(want)} (query is [B, S, D] = {list(query.shape)}), "
                             f"got {list(t.shape)}")
    if N == 0 and B * S > 0:
        raise ValueError(f"memory_read: keys must hold N >= 1 memory grids, got {list(keys.shape)}")
    if len({t.dtype for t in (query, keys, values, residual)}) != 1:
        raise TypeError(f"memory_read: query, keys, values and residual must share one dtype, got "
                        f"{[str(t.dtype) for t in (query, keys, values, residual)]}")
    if len({t.device for t in (query, keys, values, residual)}) != 1:
        raise ValueError(f"memory_read: query, keys, values and residual must be on one device, got "
                         f"{[str(t.device) for t in (query, keys, values, residual)]}")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64 or tuple(lengths.shape) != (B,):
            raise TypeError(f"memory_read: lengths must be None or an int64 Tensor[B] = [{B}], got {described(lengths)}")
        if lengths.device != query.device:
            raise ValueError(f"memory_read: lengths must be on the inputs' device {query.device}, got {lengths.device}")
        # NB: its values are checked by the kernels (C++: an error; CUDA: a device assert; Triton:
        # a device assert in its debug mode, else clamped to [1, N]): reading them here would
        # synchronise with a GPU, and break a compiled graph.


def memory_read_reference(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, residual: torch.Tensor,
                          lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Plain PyTorch, as the official ``Memory`` module: bmm, softmax, bmm, add; fp32
    (fp64 for fp64 inputs) inside, the inputs' dtype out. With ``lengths``, the keys past
    each batch element's length get no weight (and their values are not used)."""
    dtype = opmath_dtype(query.dtype)
    logits = torch.bmm(query.to(dtype), keys.to(dtype).transpose(1, 2))
    vals = values.to(dtype)
    if lengths is not None:
        stored = torch.arange(keys.shape[1], device=keys.device) < lengths[:, None]  # [B, N]
        logits = logits.masked_fill(~stored[:, None, :], float("-inf"))
        vals = vals.masked_fill(~stored[:, :, None], 0.0)  # NB: 0 * NaN would be NaN
    return (residual.to(dtype) + torch.bmm(torch.softmax(logits, dim=-1), vals)).to(residual.dtype)


def memory_read(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, residual: torch.Tensor,
                backend: str = "auto", lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``residual + softmax(query @ keys^T, dim=-1) @ values``, over each batch element's
    first ``lengths[b]`` keys.

    Args:
        query (Tensor[B, S, D]): the current frame's tracking query embeddings (D = 128 in VISOLO).
        keys (Tensor[B, N, D]): the reference embeddings of all memory grids (N = T * S).
        values (Tensor[B, N, V]): their memory values (V = 512: category and kernel side by side).
        residual (Tensor[B, S, V]): the current frame's features, added to what is read.
        backend: see :mod:`visolo_fast.backends`.
        lengths (int64 Tensor[B] or None): how many of the N keys (and values) of each batch
            element are stored, in [1, N]; the rest is padding, never read. A memory of fixed
            capacity N keeps the shapes (a compiled graph, a CUDA graph) from changing as it fills.
            None: all N.

    Returns:
        Tensor[B, S, V] in the inputs' dtype, accumulated in float32 (float64 for float64).
    """
    check_input(query, keys, values, residual, lengths)
    chosen = backends.resolve(backend, query.device, OP, IMPLEMENTED)
    if chosen == "reference":
        return memory_read_reference(query, keys, values, residual, lengths)
    if chosen == "triton":
        from visolo_fast.triton.memory_read import memory_read_triton  # inputs checked above

        return memory_read_triton(query, keys, values, residual, lengths)
    return torch.ops.visolo_fast.memory_read(query, keys, values, residual, lengths)


if backends.extension_loaded():

    @torch.library.register_fake("visolo_fast::memory_read")
    def _memory_read_fake(query, keys, values, residual, lengths=None):
        return residual.new_empty(residual.shape)
