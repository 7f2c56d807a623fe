"""visolo_fast/triton/launch.py: recording() notes the launches a GPU would get, and an
interpreted launch with bfloat16 tensors computes what a GPU would."""

import pytest
import torch

from tests.conftest import TRITON_DEVICE, require_backend
from visolo_fast.ops.grid_weight import grid_weight_reference
from visolo_fast.ops.memory_read import memory_read_reference


def test_recording_notes_the_launch_and_runs_nothing():
    from visolo_fast.triton.grid_weight import grid_weight_triton
    from visolo_fast.triton.launch import TensorArg, recording

    q, k = torch.randn(1, 20, 32), torch.randn(1, 2, 20, 32)
    with recording() as launches:
        grid_weight_triton(q, k)
    assert len(launches) == 1
    (launch,) = launches
    assert launch.kernel.fn.__name__ == "_grid_weight_kernel"
    assert launch.args[0] == TensorArg(torch.float32, q.data_ptr() % 16) and launch.args[3:] == (20, 2, 20, 32)
    assert launch.meta["DOT_F32"] is True


@pytest.mark.parametrize("op", ["grid_weight", "memory_read"])
def test_half_precision_launches_do_not_depend_on_the_interpreter(op):
    """bfloat16 gets the variant float16 gets (tensor-core dots), interpreted or not: the
    interpreter's launches, and so the tests, are a GPU's."""
    from visolo_fast.triton.grid_weight import grid_weight_triton
    from visolo_fast.triton.launch import recording
    from visolo_fast.triton.memory_read import memory_read_triton

    metas = {}
    for dtype in (torch.float16, torch.bfloat16):
        q = torch.randn(1, 16, 32).to(dtype)
        with recording() as launches:
            if op == "grid_weight":
                grid_weight_triton(q, torch.randn(1, 2, 16, 32).to(dtype))
            else:
                memory_read_triton(q, q, torch.randn(1, 16, 48).to(dtype), torch.randn(1, 16, 48).to(dtype))
        (launch,) = launches
        metas[dtype] = launch.meta
    assert metas[torch.bfloat16] == metas[torch.float16] and metas[torch.bfloat16]["DOT_F32"] is False


def test_interpreted_bfloat16_dots_are_right():
    """The interpreter's bfloat16 tl.dot is wrong; launch() runs such kernels on float32 copies."""
    require_backend("triton", TRITON_DEVICE, "grid_weight")
    from visolo_fast.triton.grid_weight import grid_weight_triton
    from visolo_fast.triton.memory_read import memory_read_triton

    g = torch.Generator().manual_seed(3)
    q, k = [(torch.randn(*s, generator=g) * 0.3).bfloat16() for s in ((1, 24, 32), (1, 2, 40, 32))]
    got = grid_weight_triton(q.to(TRITON_DEVICE), k.to(TRITON_DEVICE)).cpu().double()
    assert (got - grid_weight_reference(q.double(), k.double())).abs().max() <= 2e-3
    keys, values, residual = [torch.randn(*s, generator=g).bfloat16() for s in ((1, 40, 32), (1, 40, 48), (1, 24, 48))]
    args = (q, keys * 0.3, values, residual)
    got = memory_read_triton(*[a.to(TRITON_DEVICE) for a in args]).cpu().double()
    assert got.dtype == torch.float64 and (got - memory_read_reference(*[a.double() for a in args])).abs().max() <= 3e-2
