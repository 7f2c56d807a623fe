"""resize_masks: every backend against the official resize (F.interpolate of the 0/1
values in float32), exactly, but for pixels at the threshold within float rounding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend
from visolo_fast import backends
from visolo_fast.ops import resize_masks


def official(masks, size, threshold=0.5):
    if masks.shape[0] == 0:  # F.interpolate refuses empty batches
        values = torch.zeros((0, *size))
        return values >= threshold, values
    values = F.interpolate(masks.float()[None], size=size, mode="bilinear", align_corners=False)[0]
    return values >= threshold, values


def check(masks, size, backend, device, threshold=0.5):
    got = resize_masks(masks.to(device), size, threshold, backend=backend)
    want, values = official(masks, size, threshold)
    assert got.dtype == torch.bool and got.shape == want.shape and got.device.type == torch.device(device).type
    differ = got.cpu() != want
    # NB: a value of exactly the threshold (say 0.5 halfway between a 0 and a 1) may round
    # either way; nothing else may differ
    near = (values - threshold).abs() <= 1e-6
    assert not (differ & ~near).any()


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("size", [(360, 640), (100, 37), (352, 624), (1, 1), (720, 1280)], ids=str)
def test_matches_the_official_resize(backend, device, size):
    require_backend(backend, device, "resize_masks")
    g = torch.Generator().manual_seed(size[0])
    K = 2 if backend == "triton" and backends.triton_interpreted() and size[0] > 100 else 5
    # blocky masks (as real ones) plus noise, so edges of every orientation occur
    masks = F.interpolate((torch.rand((1, K, 22, 39), generator=g) > 0.5).float(), size=(352, 624))[0] > 0.5
    masks ^= torch.rand(masks.shape, generator=g) > 0.98
    check(masks, size, backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_no_masks_and_thresholds(backend, device):
    require_backend(backend, device, "resize_masks")
    assert resize_masks(torch.zeros((0, 8, 8), dtype=torch.bool, device=device), (4, 6), backend=backend).shape == (0, 4, 6)
    masks = torch.rand((3, 17, 23), generator=torch.Generator().manual_seed(0)) > 0.5
    for threshold in (0.25, 0.5, 0.75):
        check(masks, (40, 31), backend, device, threshold)
    # At the masks' own size the compiled backends copy the masks, for thresholds in (0, 1] only.
    for threshold in (0.0, 1e-6, 0.5, 1.0, 1.5):
        check(masks, (17, 23), backend, device, threshold)


@settings(max_examples=20, deadline=None)
@given(K=st.integers(0, 3), H=st.integers(1, 30), W=st.integers(1, 30), h=st.integers(1, 50), w=st.integers(1, 50),
       backend=st.sampled_from(["cpp", "triton"]))
def test_property_random_sizes(K, H, W, h, w, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "resize_masks")
    masks = torch.from_numpy(np.random.default_rng(K + H * W + h * w).random((K, H, W)) > 0.5)
    check(masks, (h, w), backend, device)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_bad_input(backend):
    with pytest.raises(TypeError, match="bool"):
        resize_masks(torch.zeros((2, 8, 8)), (4, 4), backend=backend)
    with pytest.raises(ValueError, match="size must be"):
        resize_masks(torch.zeros((2, 8, 8), dtype=torch.bool), (4, 0), backend=backend)


def test_cpp_op_checks_its_own_input():
    with pytest.raises(RuntimeError, match="resize_masks: masks must be a bool"):
        torch.ops.visolo_fast.resize_masks(torch.zeros((2, 8, 8)), [4, 4], 0.5)


def test_opcheck():
    masks = torch.rand((3, 9, 11)) > 0.5
    torch.library.opcheck(torch.ops.visolo_fast.resize_masks.default, (masks, [5, 7], 0.5))
    require_backend("triton", TRITON_DEVICE, "resize_masks")
    from visolo_fast.triton.resize_masks import resize_masks_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.visolo_fast.resize_masks_triton.default, (masks.to(TRITON_DEVICE), [5, 7], 0.5),
                          test_utils=checks if backends.triton_interpreted() else checks + ("test_aot_dispatch_dynamic",))
    # the op as registered, called by itself (not through resize_masks' dispatch), resizes as the official code
    want, values = official(masks, (5, 7))
    differ = resize_masks_triton(masks.to(TRITON_DEVICE), [5, 7], 0.5).cpu() != want
    assert not (differ & ((values - 0.5).abs() > 1e-6)).any()


def test_torch_compile_fullgraph():
    masks = torch.rand((3, 9, 11)) > 0.5

    def f(m):
        return resize_masks(m, (5, 7), backend="cpp") | m[:, :5, :7]

    assert torch.equal(torch.compile(f, fullgraph=True, backend="inductor")(masks), f(masks))
