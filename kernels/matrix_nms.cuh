// Math of visolo_fast::matrix_nms_decay (Matrix NMS from the pairwise intersections),
// shared by the CPU loop (csrc/matrix_nms.cpp) and the CUDA kernels (kernels/matrix_nms.cu).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace matrix_nms_math {

// NaN-propagating max / min, as torch.max / torch.min reductions.
template <typename acc_t>
VF_INLINE acc_t max_nan(acc_t a, acc_t b) {
  return (a != a || b > a) ? (a != a ? a : b) : (b != b ? b : a);
}
template <typename acc_t>
VF_INLINE acc_t min_nan(acc_t a, acc_t b) {
  return (a != a || b < a) ? (a != a ? a : b) : (b != b ? b : a);
}

// decay_iou[i, j] of the official code: the IoU of masks i < j when their labels agree,
// from exact pixel counts (float32 holds them exactly up to 2^24), 0 for i >= j.
// NB: two empty masks give 0 / 0 = NaN, and NaN * 0 (labels differ) stays NaN, as in
// the official code, where NaN then spreads through the maxima and minima below.
template <typename acc_t>
VF_INLINE acc_t decay_iou(const int64_t* inter, const int64_t* labels, int64_t K, int64_t i, int64_t j) {
  if (i >= j) {
    return static_cast<acc_t>(0);
  }
  const acc_t x = static_cast<acc_t>(inter[i * K + j]);
  const acc_t iou = x / ((static_cast<acc_t>(inter[j * K + j]) + static_cast<acc_t>(inter[i * K + i])) - x);
  return iou * static_cast<acc_t>(labels[i] == labels[j] ? 1 : 0);
}

// How much mask i was itself overlapped by a better one: max over k of decay_iou[k, i].
template <typename acc_t>
VF_INLINE acc_t compensation(const int64_t* inter, const int64_t* labels, int64_t K, int64_t i) {
  acc_t m = static_cast<acc_t>(0);
  for (int64_t k = 0; k < i; ++k) {
    m = max_nan(m, decay_iou<acc_t>(inter, labels, K, k, i));
  }
  return m;
}

template <typename acc_t>
VF_INLINE acc_t kernel_value(acc_t x, bool gaussian, acc_t sigma) {
  return gaussian ? exp_(-sigma * (x * x)) : static_cast<acc_t>(1) - x;
}

// The decay of mask j: min over i of kernel(decay_iou[i, j]) / kernel(compensation[i]).
template <typename acc_t>
VF_INLINE acc_t decay(const int64_t* inter, const int64_t* labels, const acc_t* compensate, int64_t K, int64_t j,
                      bool gaussian, acc_t sigma) {
  acc_t m = static_cast<acc_t>(INFINITY);
  for (int64_t i = 0; i < K; ++i) {
    m = min_nan(m, kernel_value(decay_iou<acc_t>(inter, labels, K, i, j), gaussian, sigma) /
                       kernel_value(compensate[i], gaussian, sigma));
  }
  return m;
}

}  // namespace matrix_nms_math
}  // namespace visolo_fast
