#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Checks the masks of mask_intersections: bool [K, H, W]; returns the output [K, K]
// (int64, on the masks' device).
at::Tensor mask_intersections_check_and_allocate(const at::Tensor& masks);

}  // namespace visolo_fast
