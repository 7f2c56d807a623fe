"""The dtypes the fast engine runs its network in, by name (the API, the CLI's ``--dtype`` and
a package's metadata use these names), and what its float32 means on a GPU."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """``"bfloat16"`` for ``torch.bfloat16``: the name of one of :data:`DTYPES`."""
    return str(dtype).removeprefix("torch.")


@contextlib.contextmanager
def ieee_float32(device: torch.device):
    """float32 means float32 on a GPU too: cuDNN convolutions default to TF32 (a 10-bit
    mantissa) on Ampere and later, and a user may have enabled it for matrix products;
    either would break the parity with the reference and the float32 decisions. The
    engine runs its frames under this (bfloat16 is the fast choice)."""
    if device.type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
