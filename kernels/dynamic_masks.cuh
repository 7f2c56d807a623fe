// Math of visolo_fast::dynamic_masks after the low-resolution product: one pixel of
// the x4 upsampled logits, its probability and its mask bit. Shared by the CPU loop
// (csrc/dynamic_masks.cpp) and the CUDA kernel (kernels/dynamic_masks.cu).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/bilinear.cuh"
#include "kernels/common.cuh"

namespace visolo_fast {
namespace dynamic_masks_math {

// One output pixel: `prob` is its probability where `on` (the mask bit), else 0.
template <typename acc_t>
struct Pixel {
  bool on;
  acc_t prob;
};

// The mask bit is sigmoid(logit) > threshold, decided on the logit: logit > cut with
// cut = logit(threshold) (cut_for), so the exp is only computed inside the mask.
// NB: the two tests agree except where sigmoid(logit) is within float rounding of the
// threshold (|logit - cut| ~ 1e-7): the op's contract allows those pixels to differ.
template <typename acc_t>
VF_INLINE Pixel<acc_t> classify(acc_t logit, acc_t cut) {
  return logit > cut ? Pixel<acc_t>{true, sigmoid(logit)} : Pixel<acc_t>{false, static_cast<acc_t>(0)};
}

// logit(threshold) in double; -inf / +inf for thresholds at or beyond 0 / 1.
inline double cut_for(double threshold) {
  if (!(threshold > 0.0)) {
    return -INFINITY;
  }
  if (!(threshold < 1.0)) {
    return INFINITY;
  }
  return std::log(threshold / (1.0 - threshold));
}

// Output pixel (y, x) of map `logits` [h, w], upsampled x4.
template <typename acc_t>
VF_INLINE acc_t upsampled_logit(const acc_t* logits, int64_t w, const bilinear::Tap<acc_t>& ty,
                                const bilinear::Tap<acc_t>& tx) {
  return bilinear::interpolate(logits[ty.i0 * w + tx.i0], logits[ty.i0 * w + tx.i1], logits[ty.i1 * w + tx.i0],
                               logits[ty.i1 * w + tx.i1], ty, tx);
}

}  // namespace dynamic_masks_math
}  // namespace visolo_fast
