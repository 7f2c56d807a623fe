#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace visolo_fast {

// Input checks shared by the CPU and CUDA implementations of memory_read (lengths: its
// dtype, shape and device; its values are checked where they are read).
void memory_read_check(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                       const at::Tensor& residual, const std::optional<at::Tensor>& lengths);

}  // namespace visolo_fast
