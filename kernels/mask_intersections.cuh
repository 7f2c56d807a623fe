// Math of visolo_fast::mask_intersections: binary masks packed 64 pixels to a word,
// and the pixel count of a & b by AND + popcount. Shared by the CPU loops
// (csrc/mask_intersections.cpp) and the CUDA kernels (kernels/mask_intersections.cu).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common.cuh"

namespace visolo_fast {
namespace mask_intersections_math {

VF_INLINE int popcount(uint64_t x) {
#ifdef __CUDA_ARCH__
  return __popcll(x);
#else
  return __builtin_popcountll(x);
#endif
}

// Eight bools (bytes 0 or 1, little-endian in v) to eight bits. NB: the bit order differs
// from the pixel order; only AND and popcount ever read the words, so it does not matter.
VF_INLINE uint64_t pack8(uint64_t v) {
  return (v * 0x0102040810204080ULL) >> 56;
}

// Word `word` of a mask of `n` pixels: its pixels [64 word, 64 word + 64), zeros past n.
VF_INLINE uint64_t pack_word(const bool* mask, int64_t n, int64_t word) {
  const int64_t start = word * 64;
  uint64_t out = 0;
  if (start + 64 <= n) {
    for (int byte = 0; byte < 8; ++byte) {
      uint64_t v;
      memcpy(&v, mask + start + 8 * byte, 8);
      out |= pack8(v) << (8 * byte);
    }
  } else {
    for (int64_t p = start; p < n; ++p) {
      out |= static_cast<uint64_t>(mask[p] ? 1 : 0) << (p - start);
    }
  }
  return out;
}

// |a & b| over words [begin, end).
VF_INLINE int64_t and_count(const uint64_t* a, const uint64_t* b, int64_t begin, int64_t end) {
  int64_t count = 0;
  for (int64_t w = begin; w < end; ++w) {
    count += popcount(a[w] & b[w]);
  }
  return count;
}

}  // namespace mask_intersections_math
}  // namespace visolo_fast
