#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace visolo_fast {

// Checks the inputs of dynamic_masks and computes the low-resolution logits
// kernels @ features with a library GEMM (MKL / cuBLAS), in float32 (float64 for
// float64 inputs): [M, h, w] contiguous, M = K or B * K maps.
at::Tensor dynamic_masks_logits(const at::Tensor& features, const at::Tensor& kernels);

// The outputs (masks [(B,) K, 4h, 4w] bool, areas int64, quality) allocated for
// `logits` [M, h, w], shaped as the inputs ask (batched or not).
std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_masks_allocate(const at::Tensor& features,
                                                                      const at::Tensor& kernels,
                                                                      const at::Tensor& logits);

}  // namespace visolo_fast
