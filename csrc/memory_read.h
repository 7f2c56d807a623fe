#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Input checks shared by the CPU and CUDA implementations of memory_read.
void memory_read_check(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                       const at::Tensor& residual);

// float64 for float64 inputs, else float32: what the ops accumulate in.
at::ScalarType accumulate_type(const at::Tensor& a, const at::Tensor& b);

}  // namespace visolo_fast
