"""mask_dedup: every backend against the official per-pair loop: the same keep flags."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend
from tests.ops.test_mask_intersections import adversarial
from tests.ops.test_matrix_nms import random_case
from visolo_fast import backends
from visolo_fast.ops import mask_dedup
from visolo_fast.ops.mask_dedup import mask_dedup_from_intersections, mask_dedup_official


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("K", [0, 1, 2, 9, 40, 100])
@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_matches_the_mask_dedup_official(backend, device, K, threshold):
    require_backend(backend, device, "mask_dedup_keep")
    masks, _, _ = random_case(K, 1, seed=K)
    if K > 3:
        masks[3] = False  # an empty mask is never kept
        masks[2] = masks[1]  # an identical pair
    keep = mask_dedup(masks.to(device), threshold, backend=backend).cpu()
    assert keep.dtype == torch.bool and keep.shape == (K,)
    assert torch.equal(keep, mask_dedup_official(masks, threshold))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_adversarial_and_official_size(backend, device):
    require_backend(backend, device, "mask_dedup_keep")
    masks = adversarial(60)
    assert torch.equal(mask_dedup(masks.to(device), backend=backend).cpu(), mask_dedup_official(masks, 0.5))
    empty = torch.zeros((7, 5, 9), dtype=torch.bool)
    assert not mask_dedup(empty.to(device), backend=backend).any()
    if backend == "triton" and backends.triton_interpreted():
        return  # the official size is too slow for the interpreter's intersections
    g = torch.Generator().manual_seed(2)
    big = torch.nn.functional.interpolate(torch.rand((1, 100, 22, 39), generator=g), size=(352, 624))[0] > 0.75
    assert torch.equal(mask_dedup(big.to(device), backend=backend).cpu(), mask_dedup_official(big, 0.5))


@settings(max_examples=20, deadline=None)
@given(K=st.integers(0, 30), threshold=st.sampled_from([0.5, 0.2, 0.9]), backend=st.sampled_from(["cpp", "triton"]))
def test_property_random(K, threshold, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "mask_dedup_keep")
    masks, _, _ = random_case(K, 1, seed=K + 100)
    assert torch.equal(mask_dedup(masks.to(device), threshold, backend=backend).cpu(), mask_dedup_official(masks, threshold))


def test_opcheck_and_compile():
    masks, _, _ = random_case(8, 1, seed=3)
    inter = masks.flatten(1).float().matmul(masks.flatten(1).float().T).long()
    torch.library.opcheck(torch.ops.visolo_fast.mask_dedup_keep.default, (inter, 0.5))

    def f(m):
        return mask_dedup(m, backend="cpp") & True

    assert torch.equal(torch.compile(f, fullgraph=True, backend="inductor")(masks), f(masks))
    with pytest.raises(TypeError, match="inter must be an int64"):
        mask_dedup_from_intersections(inter.float())
    require_backend("triton", TRITON_DEVICE, "mask_dedup_keep")
    from visolo_fast.triton.mask_dedup import mask_dedup_keep_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.visolo_fast.mask_dedup_keep_triton.default, (inter.to(TRITON_DEVICE), 0.5),
                          test_utils=checks if backends.triton_interpreted() else checks + ("test_aot_dispatch_dynamic",))
    # the op as registered, called by itself (not through mask_dedup's dispatch), keeps what the official loop keeps
    assert torch.equal(mask_dedup_keep_triton(inter.to(TRITON_DEVICE), 0.5).cpu(), mask_dedup_official(masks, 0.5))


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_exactly_half_covered_is_kept(backend):
    # NB: Triton on its device: CPU tensors only under the interpreter, CUDA ones on a GPU.
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "mask_dedup_keep")
    masks = torch.zeros((2, 4, 4), dtype=torch.bool, device=device)
    masks[0, :2] = True
    masks[1, 1:3] = True  # half of mask 1 lies in mask 0
    assert mask_dedup(masks, backend=backend).tolist() == [True, True]
    masks[1, 2, 0] = False  # now 4 of 7 pixels: > 0.5
    assert mask_dedup(masks, backend=backend).tolist() == [True, False]
    # 1 / 5 is not > 0.2 in float32 (the official comparison), whatever float64 says
    fifth = torch.zeros((2, 1, 5), dtype=torch.bool, device=device)
    fifth[0, 0, 0] = True
    fifth[1] = True
    assert mask_dedup(fifth, 0.2, backend=backend).tolist() == [True, True]


def test_removed_masks_remove_nothing():
    # 1 is a duplicate of 0; 2 is covered by 1 but not by 0: 2 stays
    masks = torch.zeros((3, 1, 10), dtype=torch.bool)
    masks[0, 0, 0:6] = True
    masks[1, 0, 2:8] = True
    masks[2, 0, 6:9] = True
    assert mask_dedup(masks).tolist() == [True, False, True]


def test_bad_input():
    with pytest.raises(TypeError, match="masks must be a bool"):
        mask_dedup(torch.zeros((2, 4)))
