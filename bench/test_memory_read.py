"""memory_read at the model's shapes: S = 252 query grids, D = 128, V = 512, T memory
frames (N = T * 252 keys), float32. Run with ``pytest bench/ --benchmark-only``."""

import pytest
import torch
from common import memory_read_inputs

from visolo_fast.ops.memory_read import OP, memory_read


def check(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("T", [3, 9, 40], ids=lambda T: f"T={T}")
def test_memory_read(run_op, target, T):
    q, k, v, r = memory_read_inputs(T, target[1])
    run_op("memory_read", f"T={T} N={T * 252}", lambda b: memory_read(q, k, v, r, backend=b), check, OP)
