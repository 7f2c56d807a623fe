"""What the ops and their Triton launchers share: the dtype an op computes in, and how a
check says what it got.

NB: imports nothing of visolo_fast, so that ``visolo_fast.ops.*`` and ``visolo_fast.triton.*``
import it without loading the other (``visolo_fast.ops`` loads every op module)."""

from __future__ import annotations

import torch


def opmath_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype an op computes (and accumulates) in for inputs of ``dtypes``: float64 if
    any is float64, else float32 (half and bfloat16 compute in float32), as ATen's
    ``at::opmath_type`` in the C++ and CUDA implementations."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def described(x: object) -> str:
    """What a check got: a tensor's dtype and shape, else the argument's type."""
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
