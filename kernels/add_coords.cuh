// Math of visolo_fast::add_coords, shared by the CPU loop (csrc/add_coords.cpp)
// and the CUDA kernel (kernels/add_coords.cu).
#pragma once

#include <cstdint>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace add_coords_math {

// Value i of linspace(-1, 1, n), in double.
// NB: rounded once to float (see to_output), so the grid is exactly symmetric
// and the centre of an odd n is exactly 0. torch.linspace on the CPU (what the
// official code uses) accumulates in float in its vectorised path and can
// differ from this by an ulp or two (it gives -1.4e-8 instead of 0 for
// n = 21): the tests compare with a tolerance of 1e-6 for that reason.
VF_INLINE double coord(int64_t i, int64_t n) {
  return n > 1 ? -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n - 1) : -1.0;
}

// A coordinate in the output dtype: through float32 (as the official float32
// linspace) for float32/16 and bfloat16, kept whole for float64.
template <typename scalar_t>
VF_INLINE scalar_t to_output(double v) {
  return static_cast<scalar_t>(static_cast<float>(v));
}

template <>
VF_INLINE double to_output<double>(double v) {
  return v;
}

// Element `idx` of the contiguous output [B, C + 2, H, W], for the CUDA kernel's
// one-thread-per-element loop (the CPU copies whole channel blocks and calls coord /
// to_output for the coordinate planes): channel c < C is
// x[b, c], channel C is the y coordinate (over H), channel C + 1 the x
// coordinate (over W). `x` is the contiguous input [B, C, H, W].
template <typename scalar_t>
VF_INLINE scalar_t output_element(const scalar_t* x, int64_t idx, int64_t C, int64_t H, int64_t W) {
  const int64_t w = idx % W;
  int64_t rest = idx / W;
  const int64_t h = rest % H;
  rest /= H;
  const int64_t c = rest % (C + 2);
  const int64_t b = rest / (C + 2);
  if (c < C) {
    return x[((b * C + c) * H + h) * W + w];
  }
  return to_output<scalar_t>(c == C ? coord(h, H) : coord(w, W));
}

}  // namespace add_coords_math
}  // namespace visolo_fast
