#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Input checks shared by the CPU and CUDA implementations of grid_weight.
void grid_weight_check(const at::Tensor& query, const at::Tensor& keys);

}  // namespace visolo_fast
