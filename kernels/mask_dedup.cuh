// Math of visolo_fast::mask_dedup_keep (the IoU* duplicate removal from the pairwise
// intersections), shared by the CPU loop (csrc/mask_dedup.cpp) and the CUDA kernel.
#pragma once

#include <cstdint>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace mask_dedup_math {

// Does mask i cover more than `threshold` of mask j? NB: the official test, a float32
// division compared with the threshold rounded to float32 (a float tensor against a
// Python float): 1 / 5 is not > 0.2.
VF_INLINE bool covers(int64_t inter_ij, int64_t area_j, float threshold) {
  return static_cast<float>(inter_ij) / static_cast<float>(area_j) > threshold;
}

}  // namespace mask_dedup_math
}  // namespace visolo_fast
