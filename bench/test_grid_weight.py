"""grid_weight at the model's shapes: S = 252 query grids against the 252 grids of each of
E = 1 or 2 earlier frames, D = 128, float32."""

import pytest
import torch
from common import grid_weight_inputs

from visolo_fast.ops.grid_weight import OP, grid_weight


def check(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("E", [1, 2], ids=lambda E: f"E={E}")
def test_grid_weight(run_op, target, E):
    q, k = grid_weight_inputs(E, target[1])
    run_op("grid_weight", f"E={E} S=252", lambda b: grid_weight(q, k, backend=b), check, OP)
