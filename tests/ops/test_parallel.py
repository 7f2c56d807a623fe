"""The C++ ops' CPU loops are split over ATen's threads (the extension is compiled with
OpenMP): at the official worst case, K = 252 masks at 352 x 624, each op's loop runs on
as many threads as torch.set_num_threads allows, and on one when it allows one.

csrc/parallel.h notes the highest thread number that ran a chunk of an op's loop;
``torch.ops.visolo_fast.parallel_threads_seen()`` returns it and resets it. (The speed
that this buys is measured by ``bench/bench_threads.py``, not asserted.)"""

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import require_backend
from visolo_fast.ops import dynamic_masks, mask_intersections, matrix_nms, resize_masks

K = 252


def official_inputs():
    """features [256, 88, 156], kernels [K, 256]; masks [K, 352, 624] (blocks, ~20% set),
    labels [K], scores [K] sorted."""
    g = torch.Generator().manual_seed(0)
    features, kernels = torch.randn(256, 88, 156, generator=g), torch.randn(K, 256, generator=g) * 0.06
    masks = F.interpolate(torch.rand((1, K, 22, 39), generator=g), size=(352, 624))[0] > 0.8
    labels, scores = torch.randint(0, 4, (K,), generator=g), torch.rand(K, generator=g).sort(descending=True).values
    return features, kernels, masks, labels, scores


OPS = {
    "dynamic_masks": lambda i: dynamic_masks(i[0], i[1], 0.5, backend="cpp"),
    "mask_intersections": lambda i: mask_intersections(i[2], backend="cpp"),
    "resize_masks": lambda i: resize_masks(i[2], (360, 640), backend="cpp"),
    "matrix_nms": lambda i: matrix_nms(i[2], i[3], i[4], backend="cpp"),
}


@pytest.fixture(scope="module")
def inputs():
    return official_inputs()


@pytest.mark.parametrize("op", list(OPS))
def test_cpu_loops_use_every_thread(op, inputs):
    require_backend("cpp", "cpu", "matrix_nms_decay" if op == "matrix_nms" else op)
    seen = torch.ops.visolo_fast.parallel_threads_seen
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            seen()  # reset
            OPS[op](inputs)
            assert seen() == threads, f"{op}: its loop ran on other than {threads} threads"
    finally:
        torch.set_num_threads(before)
