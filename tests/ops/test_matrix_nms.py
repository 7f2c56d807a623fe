"""matrix_nms: the reference against the spec's formulas written out pair by pair in
float64, and every backend against the reference (scores within 1e-6 relative)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend
from tests.ops.test_mask_intersections import adversarial
from visolo_fast import BackendUnavailable, backends
from visolo_fast.ops import matrix_nms
from visolo_fast.ops.matrix_nms import matrix_nms_from_intersections, matrix_nms_reference


def matrix_nms_by_pairs(masks, labels, scores, kernel, sigma):
    """Spec section 5 step 5, element by element."""
    K = masks.shape[0]
    m = masks.reshape(K, -1).double()
    area = m.sum(1)

    def iou(i, j):  # i < j, same label
        inter = (m[i] * m[j]).sum()
        return (inter / (area[i] + area[j] - inter)).item()

    def f(x):
        return math.exp(-sigma * x * x) if kernel == "gaussian" else 1 - x

    comp = [max([iou(k, i) for k in range(i) if labels[k] == labels[i]], default=0.0) for i in range(K)]
    out = []
    for j in range(K):
        decay = min(f(iou(i, j) if i < j and labels[i] == labels[j] else 0.0) / f(comp[i]) for i in range(K))
        out.append(scores[j].item() * decay)
    return torch.tensor(out, dtype=torch.float64)


def random_case(K, labels_n, seed, size=(12, 17)):
    g = torch.Generator().manual_seed(seed)
    # blobs: random boxes, so overlaps are frequent and varied
    masks = torch.zeros((K, *size), dtype=torch.bool)
    for k in range(K):
        y0, x0 = torch.randint(0, size[0] - 2, (2,), generator=g).tolist()[0], torch.randint(0, size[1] - 2, (1,), generator=g).item()
        h, w = torch.randint(2, 8, (2,), generator=g).tolist()
        masks[k, y0:y0 + h, x0:x0 + w] = True
    labels = torch.randint(0, labels_n, (K,), generator=g)
    scores = torch.sort(torch.rand(K, generator=g), descending=True).values
    return masks, labels, scores


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("K,labels_n", [(1, 1), (2, 1), (9, 1), (23, 3), (40, 7)])
def test_reference_matches_the_formulas(K, labels_n, kernel):
    masks, labels, scores = random_case(K, labels_n, seed=K * 10 + labels_n)
    expected = matrix_nms_by_pairs(masks, labels, scores, kernel, 2.0)
    got = matrix_nms(masks, labels, scores, kernel=kernel, sigma=2.0, backend="reference")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)
    got64 = matrix_nms(masks, labels, scores.double(), kernel=kernel, backend="reference")
    torch.testing.assert_close(got64, expected, rtol=1e-12, atol=1e-12)


def test_empty_input():
    out = matrix_nms(torch.zeros((0, 4, 4), dtype=torch.bool), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    assert out.shape == (0,)


def test_two_empty_masks_give_nan_as_the_official_code():
    masks = torch.zeros((3, 4, 4), dtype=torch.bool)
    masks[0, :2] = True
    out = matrix_nms(masks, torch.tensor([0, 1, 2]), torch.tensor([0.9, 0.8, 0.7]))
    assert torch.isnan(out).all()


def test_bad_input():
    masks = torch.zeros((2, 4, 4), dtype=torch.bool)
    with pytest.raises(TypeError, match="masks must be a bool"):
        matrix_nms(masks.float(), torch.zeros(2, dtype=torch.int64), torch.zeros(2))
    with pytest.raises(TypeError, match=r"labels must be an int64 Tensor\[2\]"):
        matrix_nms(masks, torch.zeros(3, dtype=torch.int64), torch.zeros(2))
    with pytest.raises(TypeError, match=r"scores must be a floating-point Tensor\[2\]"):
        matrix_nms(masks, torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="kernel must be one of"):
        matrix_nms(masks, torch.zeros(2, dtype=torch.int64), torch.zeros(2), kernel="box")
    with pytest.raises(BackendUnavailable, match="runs on CUDA tensors"):
        matrix_nms(masks, torch.zeros(2, dtype=torch.int64), torch.zeros(2), backend="cuda")


def compare(masks, labels, scores, kernel, backend, device, sigma=2.0):
    want = matrix_nms_reference(masks, labels, scores, kernel, sigma)
    got = matrix_nms(masks.to(device), labels.to(device), scores.to(device), kernel=kernel, sigma=sigma, backend=backend)
    assert got.dtype == want.dtype and got.shape == want.shape
    # NaN exactly where the reference has NaN (the official empty-mask quirk)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-7, equal_nan=True)


CASES = {
    "random-one-label": lambda K: (random_case(K, 1, K)[0], torch.zeros(K, dtype=torch.int64)),
    "random-many-labels": lambda K: random_case(K, 7, K)[:2],
    "adversarial": lambda K: (adversarial(K), torch.randint(0, 3, (K,), generator=torch.Generator().manual_seed(K))),
    "all-empty": lambda K: (torch.zeros((K, 5, 9), dtype=torch.bool), torch.arange(K) % 2),
    "identical": lambda K: (random_case(1, 1, 3)[0].expand(K, -1, -1).clone(), torch.zeros(K, dtype=torch.int64)),
    "nested": lambda K: (torch.stack([torch.arange(60).reshape(6, 10) < 60 - 5 * k for k in range(K)]) if K else
                         torch.zeros((0, 6, 10), dtype=torch.bool), torch.zeros(K, dtype=torch.int64)),
}


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("K", [0, 1, 2, 11, 100])
def test_backends_match_reference(backend, device, kernel, case, K):
    require_backend(backend, device, "matrix_nms_decay")
    masks, labels = CASES[case](K)
    scores = torch.sort(torch.rand(K, generator=torch.Generator().manual_seed(K)), descending=True).values
    if K > 3:
        scores[2] = scores[3]  # a tie
    compare(masks, labels, scores, kernel, backend, device)
    compare(masks, labels, scores.double(), kernel, backend, device, sigma=0.5)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_official_size(backend, device):
    require_backend(backend, device, "matrix_nms_decay")
    K = 4 if backend == "triton" and backends.triton_interpreted() else 252
    g = torch.Generator().manual_seed(1)
    masks = torch.nn.functional.interpolate(torch.rand((1, K, 22, 39), generator=g), size=(352, 624))[0] > 0.6
    labels = torch.randint(0, 5, (K,), generator=g)
    scores = torch.sort(torch.rand(K, generator=g), descending=True).values
    compare(masks, labels, scores, "gaussian", backend, device)


@settings(max_examples=20, deadline=None)
@given(K=st.integers(0, 30), labels_n=st.integers(1, 4), kernel=st.sampled_from(["gaussian", "linear"]),
       backend=st.sampled_from(["cpp", "triton"]))
def test_property_random(K, labels_n, kernel, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "matrix_nms_decay")
    masks, labels, scores = random_case(K, labels_n, seed=K * 10 + labels_n)
    compare(masks, labels, scores, kernel, backend, device)


def test_from_intersections_checks_them():
    with pytest.raises(TypeError, match=r"inter must be an int64 Tensor\[K, K\]"):
        matrix_nms_from_intersections(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64), torch.zeros(2))
    with pytest.raises(RuntimeError, match="matrix_nms: kernel must be"):
        torch.ops.visolo_fast.matrix_nms_decay(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64),
                                               torch.zeros(2), "box", 2.0)


def test_opcheck_and_compile():
    masks, labels, scores = random_case(6, 2, 6)
    inter = masks.flatten(1).float().matmul(masks.flatten(1).float().T).long()
    for kernel in ("gaussian", "linear"):
        torch.library.opcheck(torch.ops.visolo_fast.matrix_nms_decay.default, (inter, labels, scores, kernel, 2.0))

    def f(m, l, s):
        return matrix_nms(m, l, s, backend="cpp") + 1

    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="inductor")(masks, labels, scores),
                               f(masks, labels, scores))
    require_backend("triton", TRITON_DEVICE, "matrix_nms_decay")
    from visolo_fast.triton.matrix_nms import matrix_nms_decay_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    args = (inter.to(TRITON_DEVICE), labels.to(TRITON_DEVICE), scores.to(TRITON_DEVICE), "gaussian", 2.0)
    torch.library.opcheck(torch.ops.visolo_fast.matrix_nms_decay_triton.default, args,
                          test_utils=checks if backends.triton_interpreted() else checks + ("test_aot_dispatch_dynamic",))
    # the op as registered, called by itself (not through matrix_nms' dispatch), decays as the reference
    torch.testing.assert_close(matrix_nms_decay_triton(*args).cpu(), matrix_nms_reference(masks, labels, scores),
                               rtol=1e-6, atol=1e-7, equal_nan=True)
