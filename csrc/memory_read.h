#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Input checks shared by the CPU and CUDA implementations of memory_read.
void memory_read_check(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                       const at::Tensor& residual);

}  // namespace visolo_fast
