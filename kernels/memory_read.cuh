// Math of the CUDA kernel of visolo_fast::memory_read (kernels/memory_read.cu): the
// online softmax over key blocks. NB: the CPU implementation (csrc/memory_read.cpp)
// runs the BLAS and ATen's softmax instead, faster on a CPU than any loop of ours; these
// functions are tested on a GPU only.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace memory_read_math {

// Softmax state of one query over the keys seen so far (flash-attention style): the
// running maximum m of the logits and the sum l of exp(logit - m). Adding a block of
// keys whose maximum is `block_max` rescales what was accumulated by `rescale()`.
template <typename acc_t>
struct Online {
  acc_t m;
  acc_t l;
};

template <typename acc_t>
VF_INLINE Online<acc_t> online_start() {
  return {-static_cast<acc_t>(INFINITY), static_cast<acc_t>(0)};
}

// The new maximum after a block with maximum block_max, and the factor that rescales
// the old sum and accumulators. NB: with no key seen yet (m = -inf) the factor is 0,
// never exp(-inf - -inf) = NaN.
template <typename acc_t>
VF_INLINE acc_t online_max(const Online<acc_t>& s, acc_t block_max) {
  return s.m > block_max ? s.m : block_max;
}
template <typename acc_t>
VF_INLINE acc_t online_rescale(const Online<acc_t>& s, acc_t new_max) {
  return s.m == -static_cast<acc_t>(INFINITY) ? static_cast<acc_t>(0) : exp_(s.m - new_max);
}

}  // namespace memory_read_math
}  // namespace visolo_fast
