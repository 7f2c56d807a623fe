"""Loads the CMake-built libvisolo_fast_ops with torch.ops.load_library and calls
visolo_fast::mask_intersections once. Run by ctest (python_load_library):

    python tests/cpp/load_library.py path/to/libvisolo_fast_ops.so

NB: does not import visolo_fast: visolo_fast._C registers the same ops, and a
second registration in one process is an error.
"""

import sys

import torch


def main(path: str) -> int:
    torch.ops.load_library(path)
    masks = torch.tensor([[[1, 1, 0], [0, 1, 0]], [[0, 1, 1], [0, 1, 1]], [[0, 0, 0], [0, 0, 0]]], dtype=torch.bool)
    out = torch.ops.visolo_fast.mask_intersections(masks)
    expected = torch.tensor([[3, 2, 0], [2, 4, 0], [0, 0, 0]])
    assert torch.equal(out, expected), f"got {out.tolist()}, expected {expected.tolist()}"
    print(f"ok: torch.ops.visolo_fast.mask_intersections from {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} path/to/libvisolo_fast_ops.so")
    sys.exit(main(sys.argv[1]))
