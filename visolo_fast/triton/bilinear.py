"""Bilinear taps for the Triton kernels: kernels/bilinear.cuh's ``source``, PyTorch's
upsample_bilinear2d with align_corners=False, in float32."""

import triton
import triton.language as tl


@triton.jit
def bilinear_taps(dst, in_size, scale):
    """For output coordinates `dst`: input indices i0, i1 and their weights w0, w1."""
    src = tl.maximum(scale * (dst.to(tl.float32) + 0.5) - 0.5, 0.0)
    i0 = tl.minimum(src.to(tl.int64), in_size - 1)
    w1 = src - i0.to(tl.float32)
    i1 = i0 + (i0 < in_size - 1).to(tl.int64)
    return i0, i1, 1.0 - w1, w1
