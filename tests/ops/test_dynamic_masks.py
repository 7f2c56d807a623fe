"""dynamic_masks: the reference against float64 math written out, and every backend
against the float64 reference (masks equal except within float rounding of the threshold)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend, require_cpu_flag, run_with_cpu_capability
from visolo_fast import backends
from visolo_fast.ops import dynamic_masks
from visolo_fast.ops.dynamic_masks import dynamic_masks_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# Mask quality (a mean of probabilities) against the float64 reference: the logits are
# computed in float32 from the same (rounded) inputs, then sums differ in their order.
QUALITY_RTOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-5, torch.bfloat16: 2e-5}
# Pixels whose float64 probability lies this close to the threshold may go either way.
NEAR = 1e-5


def by_hand(features, kernels, threshold):
    f, k = features.double(), kernels.double()
    if k.shape[0] == 0:
        empty = torch.zeros((0, 4 * f.shape[1], 4 * f.shape[2]), dtype=torch.float64)
        return empty > threshold, empty
    logits = torch.einsum("ke,ehw->khw", k, f)
    probs = torch.sigmoid(F.interpolate(logits[None], scale_factor=4, mode="bilinear", align_corners=False)[0])
    return probs > threshold, probs


@pytest.mark.parametrize("K,h,w", [(0, 5, 7), (1, 1, 1), (7, 5, 7), (12, 22, 39)])
def test_reference_matches_float64_math(K, h, w):
    g = torch.Generator().manual_seed(K + h)
    features = torch.randn(16, h, w, generator=g)
    kernels = torch.randn(K, 16, generator=g) * 0.3
    masks, areas, quality = dynamic_masks(features, kernels, 0.5, backend="reference")
    assert masks.shape == (K, 4 * h, 4 * w) and masks.dtype == torch.bool
    assert areas.dtype == torch.int64 and quality.dtype == torch.float32
    want_masks, probs = by_hand(features, kernels, 0.5)
    near = (probs - 0.5).abs() < 1e-6
    assert torch.equal(masks[~near], want_masks[~near])
    assert torch.equal(areas, masks.flatten(1).sum(1))
    want_quality = (probs * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)
    nonempty = areas > 0
    torch.testing.assert_close(quality[nonempty].double(), want_quality[nonempty], rtol=1e-5, atol=1e-6)
    assert torch.isnan(quality[~nonempty]).all()


def check(features, kernels, threshold, backend, device):
    """Runs the backend and compares it with the float64 reference of the same inputs."""
    masks, areas, quality = dynamic_masks(features.to(device), kernels.to(device), threshold, backend=backend)
    ref_masks, _, ref_quality = dynamic_masks_reference(features.double(), kernels.double(), threshold)
    _, probs = by_hand(features, kernels, threshold) if features.dim() == 3 else (None, None)
    assert masks.device.type == torch.device(device).type and masks.dtype == torch.bool
    assert masks.shape == ref_masks.shape and areas.shape == quality.shape == ref_masks.shape[:-2]
    want_dtype = torch.float64 if torch.float64 in (features.dtype, kernels.dtype) else torch.float32
    assert quality.dtype == want_dtype and areas.dtype == torch.int64
    masks, areas, quality = masks.cpu(), areas.cpu(), quality.cpu()
    differ = masks != ref_masks
    if probs is not None:
        # every disagreement sits at the threshold, and there are few of them
        near = (probs - threshold).abs() < NEAR
        assert not (differ & ~near).any(), "a mask pixel differs away from the threshold"
    assert differ.sum() <= max(4, masks.numel() // 100_000), f"{int(differ.sum())} pixels differ"
    assert torch.equal(areas, masks.flatten(-2).sum(-1))  # areas count the returned masks
    nonempty = areas > 0
    assert torch.isnan(quality[~nonempty]).all()
    torch.testing.assert_close(quality[nonempty].double(), ref_quality[nonempty], rtol=QUALITY_RTOL[features.dtype],
                               atol=1e-6)


SHAPES = [(0, 5, 7), (1, 1, 1), (7, 5, 7), (100, 22, 39), (5, 45, 80), (3, 88, 156)]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("K,h,w", SHAPES, ids=str)
def test_matches_reference(backend, device, K, h, w):
    require_backend(backend, device, "dynamic_masks")
    g = torch.Generator().manual_seed(K * 7 + h)
    check(torch.randn(32, h, w, generator=g), torch.randn(K, 32, generator=g) * 0.2, 0.5, backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(backend, device, dtype):
    require_backend(backend, device, "dynamic_masks")
    g = torch.Generator().manual_seed(3)
    features = torch.randn(64, 11, 13, generator=g).to(dtype)
    kernels = (torch.randn(9, 64, generator=g) * 0.15).to(dtype)
    check(features, kernels, 0.5, backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_official_size(backend, device):
    # E = 256 at 88 x 156, the official K = 252 on the CPU (a few on the Triton interpreter)
    require_backend(backend, device, "dynamic_masks")
    K = 3 if backend == "triton" and backends.triton_interpreted() else 252
    g = torch.Generator().manual_seed(252)
    check(torch.randn(256, 88, 156, generator=g), torch.randn(K, 256, generator=g) * 0.06, 0.5, backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_batched_thresholds_and_noncontiguous(backend, device):
    require_backend(backend, device, "dynamic_masks")
    g = torch.Generator().manual_seed(5)
    features = torch.randn(2, 8, 6, 10, generator=g).transpose(-1, -2)  # [2, 8, 10, 6], not contiguous
    kernels = torch.randn(2, 8, 4, generator=g).transpose(1, 2)  # [2, 4, 8], not contiguous
    for threshold in (0.5, 0.2, 0.9):
        check(features, kernels, threshold, backend, device)
        masks, areas, quality = dynamic_masks(features.to(device), kernels.to(device), threshold, backend=backend)
        for b in range(2):
            m, a, q = dynamic_masks(features[b].to(device), kernels[b].to(device), threshold, backend=backend)
            assert torch.equal(masks[b], m) and torch.equal(areas[b], a)
            torch.testing.assert_close(quality[b], q, equal_nan=True)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_empty_mask_has_nan_quality(backend, device):
    require_backend(backend, device, "dynamic_masks")
    features = -torch.ones(2, 3, 3, device=device)
    masks, areas, quality = dynamic_masks(features, torch.tensor([[1.0, 0.0], [-1.0, 0.0]], device=device),
                                          backend=backend)
    assert areas.tolist() == [0, 144] and torch.isnan(quality[0]) and quality[1] > 0.7


@settings(max_examples=20, deadline=None)
@given(K=st.integers(0, 6), E=st.integers(1, 20), h=st.integers(1, 9), w=st.integers(1, 9),
       threshold=st.sampled_from([0.5, 0.3, 0.8]), backend=st.sampled_from(["cpp", "triton"]))
def test_property_random_shapes(K, E, h, w, threshold, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "dynamic_masks")
    g = torch.Generator().manual_seed(K * 1000 + E * 100 + h * 10 + w)
    check(torch.randn(E, h, w, generator=g), torch.randn(K, E, generator=g), threshold, backend, device)


def test_cpp_and_triton_agree():
    require_backend("cpp", "cpu", "dynamic_masks")
    require_backend("triton", TRITON_DEVICE, "dynamic_masks")
    g = torch.Generator().manual_seed(9)
    features, kernels = torch.randn(16, 20, 30, generator=g), torch.randn(5, 16, generator=g) * 0.3
    cpp = dynamic_masks(features, kernels, backend="cpp")
    tri = dynamic_masks(features.to(TRITON_DEVICE), kernels.to(TRITON_DEVICE), backend="triton")
    assert torch.equal(cpp[0], tri[0].cpu()) and torch.equal(cpp[1], tri[1].cpu())
    torch.testing.assert_close(cpp[2], tri[2].cpu(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_bad_input(backend):
    with pytest.raises(ValueError, match="features"):
        dynamic_masks(torch.zeros(8, 5), torch.zeros(2, 8), backend=backend)
    with pytest.raises(ValueError, match="do not fit"):
        dynamic_masks(torch.zeros(8, 5, 5), torch.zeros(2, 7), backend=backend)
    with pytest.raises(TypeError, match="floating-point"):
        dynamic_masks(torch.zeros(8, 5, 5, dtype=torch.int64), torch.zeros(2, 8), backend=backend)


def test_cpp_op_checks_its_own_input():
    with pytest.raises(RuntimeError, match="dynamic_masks: kernels .* do not fit features"):
        torch.ops.visolo_fast.dynamic_masks(torch.zeros(8, 5, 5), torch.zeros(2, 7), 0.5)


def test_opcheck_cpp():
    g = torch.Generator().manual_seed(1)
    for args in [(torch.randn(8, 5, 6, generator=g), torch.randn(3, 8, generator=g), 0.5),
                 (torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 3, 8, generator=g), 0.3)]:
        torch.library.opcheck(torch.ops.visolo_fast.dynamic_masks.default, args)


def test_opcheck_triton():
    require_backend("triton", TRITON_DEVICE, "dynamic_masks")
    from visolo_fast.triton.dynamic_masks import dynamic_masks_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if backends.triton_interpreted():
        # NB: AOT dispatch traces into the Triton launch, and the interpreter cannot run a
        # kernel on the traced (storage-less) tensors: that check runs on a GPU only.
        checks = checks[:3]
    g = torch.Generator().manual_seed(2)
    features, kernels = torch.randn(8, 5, 6, generator=g), torch.randn(3, 8, generator=g)
    args = (features.to(TRITON_DEVICE), kernels.to(TRITON_DEVICE), 0.5)
    torch.library.opcheck(torch.ops.visolo_fast.dynamic_masks_triton.default, args, test_utils=checks)
    # the op as registered, called by itself (not through dynamic_masks' dispatch), computes the float64 masks
    masks, areas, quality = (t.cpu() for t in dynamic_masks_triton(*args))
    want_masks, probs = by_hand(features, kernels, 0.5)
    assert not ((masks != want_masks) & ((probs - 0.5).abs() >= NEAR)).any()
    assert torch.equal(areas, masks.flatten(1).sum(1))
    _, _, want_quality = dynamic_masks_reference(features.double(), kernels.double(), 0.5)
    torch.testing.assert_close(quality.double(), want_quality, rtol=QUALITY_RTOL[torch.float32], atol=1e-6, equal_nan=True)


def test_torch_compile_fullgraph():
    def f(features, kernels):
        masks, areas, quality = dynamic_masks(features * 1.0, kernels, 0.5, backend="cpp")
        return masks, areas * 2, quality + 1

    features, kernels = torch.randn(8, 6, 7), torch.randn(4, 8)
    got = torch.compile(f, fullgraph=True, backend="inductor")(features, kernels)
    want = f(features, kernels)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], equal_nan=True)


@pytest.mark.parametrize("flag,capability", [("avx512f", "AVX512"), ("avx2", "AVX2")])
def test_generic_and_vector_cpu_paths_agree(tmp_path, flag, capability):
    """The CPU loop has AVX-512 and AVX2 paths (chosen at run time, within ATen's capability)
    and a generic one: they give the same masks and areas bit for bit (the same products and
    sums), and the quality within ATen's sigmoid of each capability."""
    require_cpu_flag(flag, capability)
    code = """
from visolo_fast.ops import dynamic_masks
g = torch.Generator().manual_seed(3)
f = torch.randn(16, 11, 37, generator=g)  # W = 148: 9 vectors of 16 (18 of 8) and a tail of 4
k = torch.randn(9, 16, generator=g) * 0.5
out["masks"], out["areas"], out["quality"] = dynamic_masks(f, k, 0.5, backend="cpp")
out["capability"] = torch.tensor([ord(c) for c in torch.backends.cpu.get_cpu_capability()])
"""
    generic = run_with_cpu_capability("default", code, tmp_path)
    native = run_with_cpu_capability(capability.lower(), code, tmp_path)
    assert "".join(map(chr, generic["capability"].tolist())) == "DEFAULT"
    assert "".join(map(chr, native["capability"].tolist())) == capability
    assert torch.equal(generic["masks"], native["masks"]) and torch.equal(generic["areas"], native["areas"])
    torch.testing.assert_close(generic["quality"], native["quality"], rtol=1e-6, atol=1e-7)
    assert generic["masks"].any() and not generic["masks"].all()
