// Math of visolo_fast::grid_weight, shared by the CPU loop (csrc/grid_weight.cpp) and
// the CUDA kernel (kernels/grid_weight.cu).
#pragma once

#include <cstdint>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace grid_weight_math {

// The weight of one query from its best logit against each of E earlier frames: mean
// over e of sigmoid(max logit), which is the max of the sigmoids (sigmoid is monotone).
template <typename acc_t>
VF_INLINE acc_t from_best(const acc_t* best, int64_t E) {
  acc_t sum = 0;
  for (int64_t e = 0; e < E; ++e) sum += sigmoid(best[e]);
  return sum / static_cast<acc_t>(E);
}

}  // namespace grid_weight_math
}  // namespace visolo_fast
