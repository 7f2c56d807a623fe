"""Loads the CMake-built libvisolo_fast_ops with torch.ops.load_library and calls
visolo_fast::add_coords once. Run by ctest (python_load_library):

    python tests/cpp/load_library.py path/to/libvisolo_fast_ops.so

NB: does not import visolo_fast: visolo_fast._C registers the same ops, and a
second registration in one process is an error.
"""

import sys

import torch


def main(path: str) -> int:
    torch.ops.load_library(path)
    out = torch.ops.visolo_fast.add_coords(torch.zeros(1, 1, 3, 3))
    assert out.shape == (1, 3, 3, 3), f"shape {tuple(out.shape)}, expected (1, 3, 3, 3)"
    line = torch.tensor([-1.0, 0.0, 1.0])
    expected = torch.stack([torch.zeros(3, 3), line.view(3, 1).expand(3, 3), line.view(1, 3).expand(3, 3)])
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-6)
    print(f"ok: torch.ops.visolo_fast.add_coords from {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} path/to/libvisolo_fast_ops.so")
    sys.exit(main(sys.argv[1]))
