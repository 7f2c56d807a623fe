#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Checks the inputs of resize_masks; returns the output [K, height, width] (bool, on
// the masks' device).
at::Tensor resize_masks_check_and_allocate(const at::Tensor& masks, at::IntArrayRef size);

}  // namespace visolo_fast
