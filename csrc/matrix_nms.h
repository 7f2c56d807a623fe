#pragma once

#include <ATen/core/Tensor.h>

#include <string_view>

namespace visolo_fast {

// Checks the inputs of matrix_nms_decay; returns the output [K] (scores' precision, at
// least float32) and whether the kernel is gaussian.
at::Tensor matrix_nms_check_and_allocate(const at::Tensor& inter, const at::Tensor& labels, const at::Tensor& scores,
                                         std::string_view kernel, bool* gaussian);

}  // namespace visolo_fast
