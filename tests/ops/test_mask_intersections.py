"""mask_intersections: every backend equal to the official float product, exactly."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend, require_cpu_flag, run_with_cpu_capability
from visolo_fast import backends
from visolo_fast.ops.mask_intersections import mask_intersections, mask_intersections_reference


def adversarial(K: int, H: int = 40, W: int = 67) -> torch.Tensor:
    """Random blobs, plus the cases that break sloppy kernels: empty, full, identical,
    nested, one pixel, the last pixel (a partial 64-pixel word)."""
    g = torch.Generator().manual_seed(K)
    masks = torch.zeros((K, H, W), dtype=torch.bool)
    for k in range(K):
        y, x = torch.randint(0, H - 2, (1,), generator=g).item(), torch.randint(0, W - 2, (1,), generator=g).item()
        masks[k, y: y + torch.randint(1, 25, (1,), generator=g).item(), x: x + torch.randint(1, 40, (1,), generator=g).item()] = True
    special = [torch.zeros(H, W, dtype=torch.bool), torch.ones(H, W, dtype=torch.bool)]
    if K:
        special += [masks[0].clone(), masks[0] & (torch.rand(H, W, generator=g) > 0.5)]
    one = torch.zeros(H, W, dtype=torch.bool)
    one[-1, -1] = True
    special.append(one)
    for k, m in zip(range(1, K, 3), special):
        masks[k] = m
    return masks


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("K", [0, 1, 2, 7, 100])
def test_matches_reference(backend, device, K):
    require_backend(backend, device, "mask_intersections")
    masks = adversarial(K)
    got = mask_intersections(masks.to(device), backend=backend)
    assert got.dtype == torch.int64 and got.shape == (K, K)
    assert torch.equal(got.cpu(), mask_intersections_reference(masks))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_official_size(backend, device):
    require_backend(backend, device, "mask_intersections")
    K = 3 if backend == "triton" and backends.triton_interpreted() else 252
    g = torch.Generator().manual_seed(0)
    masks = torch.nn.functional.interpolate(torch.rand((1, K, 22, 39), generator=g), size=(352, 624))[0] > 0.7
    assert torch.equal(mask_intersections(masks.to(device), backend=backend).cpu(), mask_intersections_reference(masks))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_masks_without_pixels(backend, device):
    require_backend(backend, device, "mask_intersections")
    for shape in [(3, 0, 5), (2, 4, 0)]:
        got = mask_intersections(torch.zeros(shape, dtype=torch.bool, device=device), backend=backend)
        assert got.shape == (shape[0], shape[0]) and not got.any()


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_contiguous(backend, device):
    require_backend(backend, device, "mask_intersections")
    masks = adversarial(9).transpose(1, 2)
    assert torch.equal(mask_intersections(masks.to(device), backend=backend).cpu(), mask_intersections_reference(masks))


@settings(max_examples=20, deadline=None)
@given(K=st.integers(0, 40), H=st.integers(1, 20), W=st.integers(1, 20), backend=st.sampled_from(["cpp", "triton"]))
def test_property_random(K, H, W, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "mask_intersections")
    masks = torch.rand((K, H, W), generator=torch.Generator().manual_seed(K * H * W)) > 0.5
    assert torch.equal(mask_intersections(masks.to(device), backend=backend).cpu(), mask_intersections_reference(masks))


def test_bad_input():
    with pytest.raises(TypeError, match="masks must be a bool"):
        mask_intersections(torch.zeros(2, 3, 3))
    with pytest.raises(RuntimeError, match="mask_intersections: masks must be a bool"):
        torch.ops.visolo_fast.mask_intersections(torch.zeros(2, 3))


def test_opcheck_and_compile():
    masks = adversarial(5)
    torch.library.opcheck(torch.ops.visolo_fast.mask_intersections.default, (masks,))

    def f(m):
        return mask_intersections(m, backend="cpp") * 2

    assert torch.equal(torch.compile(f, fullgraph=True, backend="inductor")(masks), f(masks))
    require_backend("triton", TRITON_DEVICE, "mask_intersections")
    from visolo_fast.triton.mask_intersections import mask_intersections_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.visolo_fast.mask_intersections_triton.default, (masks.to(TRITON_DEVICE),),
                          test_utils=checks if backends.triton_interpreted() else checks + ("test_aot_dispatch_dynamic",))
    # the op as registered, called by itself (not through mask_intersections' dispatch), counts exactly
    assert torch.equal(mask_intersections_triton(masks.to(TRITON_DEVICE)).cpu(), mask_intersections_reference(masks))


def test_generic_and_vector_cpu_paths_agree(tmp_path):
    require_cpu_flag("avx512_vpopcntdq")
    """The pair loop has an AVX-512 VPOPCNTDQ path (chosen at run time) and a POPCNT one:
    the same counts, exactly, and the reference's."""
    code = """
from visolo_fast.ops import mask_intersections
g = torch.Generator().manual_seed(5)
masks = torch.rand(7, 23, 61, generator=g) > 0.6  # 1403 pixels: 21 words, 2 vectors of 8 and a tail
masks[3] = False
masks[4, :12] = False  # a mask whose words start late
out["inter"] = mask_intersections(masks, backend="cpp")
out["reference"] = mask_intersections(masks, backend="reference")
"""
    generic = run_with_cpu_capability("default", code, tmp_path)
    native = run_with_cpu_capability(torch.backends.cpu.get_cpu_capability().lower(), code, tmp_path)
    assert torch.equal(generic["inter"], generic["reference"]) and torch.equal(native["inter"], native["reference"])
