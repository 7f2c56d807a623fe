#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Checks shared by the CPU and CUDA implementations of add_coords; returns the
// output [B, C + 2, H, W], allocated on x's device with x's dtype.
at::Tensor add_coords_check_and_allocate(const at::Tensor& x);

}  // namespace visolo_fast
