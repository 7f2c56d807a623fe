"""matrix_nms: the reference against the spec's formulas written out pair by pair in float64."""

import math

import pytest
import torch

from visolo_fast import BackendUnavailable
from visolo_fast.ops import matrix_nms


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
    got = matrix_nms(masks, labels, scores, kernel=kernel, sigma=2.0)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)
    got64 = matrix_nms(masks, labels, scores.double(), kernel=kernel)
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
    with pytest.raises(BackendUnavailable, match="not implemented"):
        matrix_nms(masks, torch.zeros(2, dtype=torch.int64), torch.zeros(2), backend="cpp")
