// Math of visolo_fast::resize_masks: one output pixel of a binary mask resized the
// official way (bilinear on the 0/1 values in float32, align_corners=False, kept where
// >= threshold), read straight from the bool input. Shared by the CPU loop
// (csrc/resize_masks.cpp) and the CUDA kernel (kernels/resize_masks.cu).
#pragma once

#include <cstdint>

#include "kernels/bilinear.cuh"
#include "kernels/common.cuh"

namespace visolo_fast {
namespace resize_masks_math {

// PyTorch's scale for a resize to a given size: input / output in float32.
VF_INLINE float scale(int64_t in_size, int64_t out_size) {
  return static_cast<float>(in_size) / static_cast<float>(out_size);
}

// Output pixel at taps (ty, tx) of `mask` [H, W].
VF_INLINE bool pixel(const bool* mask, int64_t W, const bilinear::Tap<float>& ty, const bilinear::Tap<float>& tx,
                     float threshold) {
  const float v = bilinear::interpolate<float>(mask[ty.i0 * W + tx.i0], mask[ty.i0 * W + tx.i1],
                                               mask[ty.i1 * W + tx.i0], mask[ty.i1 * W + tx.i1], ty, tx);
  return v >= threshold;
}

}  // namespace resize_masks_math
}  // namespace visolo_fast
