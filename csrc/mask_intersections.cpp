// visolo_fast::mask_intersections: schema, input checks and the CPU implementation.
//
// inter[i, j] = |M_i & M_j| (pixels), inter[i, i] = |M_i|: what Matrix NMS and the
// IoU* duplicate removal both need, from bit-packed masks (64 pixels a word).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "csrc/mask_intersections.h"
#include "kernels/mask_intersections.cuh"

namespace visolo_fast {

at::Tensor mask_intersections_check_and_allocate(const at::Tensor& masks) {
  TORCH_CHECK(masks.dim() == 3 && masks.scalar_type() == at::kBool,
              "mask_intersections: masks must be a bool [K, H, W], got ", masks.scalar_type(), " ", masks.sizes());
  return at::empty({masks.size(0), masks.size(0)}, masks.options().dtype(at::kLong));
}

namespace {

using mask_intersections_math::and_count;

// The pair loop, compiled for a CPU with the POPCNT instruction (x86-64-v2: every x86
// CPU since 2008); called only when the CPU has it. NB: the generic build of the same
// loop computes popcount with bit tricks, several times slower.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
#endif
int64_t and_count_fast(const uint64_t* a, const uint64_t* b, int64_t begin, int64_t end) {
  return and_count(a, b, begin, end);
}

at::Tensor mask_intersections_cpu(const at::Tensor& masks) {
  at::Tensor inter = mask_intersections_check_and_allocate(masks);
  const int64_t K = masks.size(0), n = masks.size(1) * masks.size(2), words = (n + 63) / 64;
  if (K == 0) {
    return inter;
  }
  const at::Tensor in = masks.contiguous();
  const bool* src = in.const_data_ptr<bool>();
  std::vector<uint64_t> packed(K * words);
  // Each mask's nonzero words lie in [lo, hi): a pair only scans where both have pixels.
  std::vector<int64_t> lo(K), hi(K);
  at::parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      uint64_t* dst = packed.data() + k * words;
      lo[k] = words;
      hi[k] = 0;
      for (int64_t w = 0; w < words; ++w) {
        dst[w] = mask_intersections_math::pack_word(src + k * n, n, w);
        if (dst[w]) {
          lo[k] = std::min(lo[k], w);
          hi[k] = w + 1;
        }
      }
    }
  });
#if defined(__x86_64__) && defined(__GNUC__)
  const bool popcnt = __builtin_cpu_supports("popcnt");
#else
  const bool popcnt = false;
#endif
  int64_t* out = inter.mutable_data_ptr<int64_t>();
  // Row i takes the pairs (i, j >= i): rows are uneven, so small chunks.
  at::parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t* a = packed.data() + i * words;
      for (int64_t j = i; j < K; ++j) {
        const int64_t from = std::max(lo[i], lo[j]), to = std::min(hi[i], hi[j]);
        const uint64_t* b = packed.data() + j * words;
        const int64_t c = from >= to ? 0 : (popcnt ? and_count_fast(a, b, from, to) : and_count(a, b, from, to));
        out[i * K + j] = c;
        out[j * K + i] = c;
      }
    }
  });
  return inter;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("mask_intersections(Tensor masks) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("mask_intersections", &mask_intersections_cpu);
}

}  // namespace visolo_fast
