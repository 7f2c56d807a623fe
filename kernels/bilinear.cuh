// Bilinear interpolation taps as PyTorch's upsample_bilinear2d computes them with
// align_corners=False, shared by dynamic_masks (x4 upsampling of mask logits) and
// resize_masks (binary masks to the video's size).
#pragma once

#include <cstdint>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace bilinear {

// An output coordinate reads the input at i0 (weight w0) and i1 (weight w1).
template <typename acc_t>
struct Tap {
  int64_t i0, i1;
  acc_t w0, w1;
};

// `scale` is input_size / output_size (or 1 / scale_factor when one was given), in
// acc_t as PyTorch's opmath. NB: the source coordinate is clamped at 0 from below
// (align_corners=False), and i1 stays inside the input at the last row / column.
template <typename acc_t>
VF_INLINE Tap<acc_t> source(int64_t dst, int64_t in_size, acc_t scale) {
  acc_t src = scale * (static_cast<acc_t>(dst) + static_cast<acc_t>(0.5)) - static_cast<acc_t>(0.5);
  if (src < static_cast<acc_t>(0)) {
    src = static_cast<acc_t>(0);
  }
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in_size - 1) {
    i0 = in_size - 1;
  }
  const acc_t w1 = src - static_cast<acc_t>(i0);
  return {i0, i0 + (i0 < in_size - 1 ? 1 : 0), static_cast<acc_t>(1) - w1, w1};
}

// Between the values at t.i0 (a) and t.i1 (b).
template <typename acc_t>
VF_INLINE acc_t lerp(acc_t a, acc_t b, const Tap<acc_t>& t) {
  return t.w0 * a + t.w1 * b;
}

// The value at a point between four input values, a = (i0h, i0w), b = (i0h, i1w),
// c = (i1h, i0w), d = (i1h, i1w), in the order of PyTorch's CUDA kernel: along the
// row first, so a CPU loop may interpolate whole rows first and get the same numbers.
template <typename acc_t>
VF_INLINE acc_t interpolate(acc_t a, acc_t b, acc_t c, acc_t d, const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
  return lerp(lerp(a, b, tx), lerp(c, d, tx), ty);
}

}  // namespace bilinear
}  // namespace visolo_fast
