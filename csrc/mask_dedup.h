#pragma once

#include <ATen/core/Tensor.h>

namespace visolo_fast {

// Checks the intersections [K, K] of mask_dedup_keep; returns the output keep [K] (bool).
at::Tensor mask_dedup_check_and_allocate(const at::Tensor& inter);

}  // namespace visolo_fast
