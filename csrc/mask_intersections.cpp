// visolo_fast::mask_intersections: schema, input checks and the CPU implementation.
//
// inter[i, j] = |M_i & M_j| (pixels), inter[i, i] = |M_i|: what Matrix NMS and the
// IoU* duplicate removal both need, from bit-packed masks (64 pixels a word).

#include <ATen/ATen.h>

#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "csrc/parallel.h"
#include "csrc/cpu_features.h"

#if VF_X86_64
#include <immintrin.h>
#endif

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
#if VF_X86_64
__attribute__((target("popcnt")))
int64_t and_count_fast(const uint64_t* a, const uint64_t* b, int64_t begin, int64_t end) {
  return and_count(a, b, begin, end);
}

// The same count, 8 words an instruction, on a CPU with AVX-512 VPOPCNTDQ (Ice Lake and
// later, Zen 4 and later); called only when the CPU has it.
__attribute__((target("avx512f,avx512vpopcntdq,popcnt")))
int64_t and_count_avx512(const uint64_t* a, const uint64_t* b, int64_t begin, int64_t end) {
  __m512i sum = _mm512_setzero_si512();
  int64_t w = begin;
  for (; w + 8 <= end; w += 8) {
    const __m512i both = _mm512_and_si512(_mm512_loadu_si512(a + w), _mm512_loadu_si512(b + w));
    sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(both));
  }
  return _mm512_reduce_add_epi64(sum) + and_count(a, b, w, end);
}
#endif

// Which pair loop this CPU runs.
using AndCount = int64_t (*)(const uint64_t*, const uint64_t*, int64_t, int64_t);
AndCount best_and_count() {
#if VF_X86_64
  if (cpu_avx512(/*vpopcntdq=*/true)) {
    return and_count_avx512;
  }
  if (__builtin_cpu_supports("popcnt")) {
    return and_count_fast;
  }
#endif
  return and_count;
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
  parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
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
  const AndCount count = best_and_count();
  int64_t* out = inter.mutable_data_ptr<int64_t>();
  const auto row = [&](int64_t i) {
    const uint64_t* a = packed.data() + i * words;
    for (int64_t j = i; j < K; ++j) {
      const int64_t from = std::max(lo[i], lo[j]), to = std::min(hi[i], hi[j]);
      const uint64_t* b = packed.data() + j * words;
      const int64_t c = from >= to ? 0 : count(a, b, from, to);
      out[i * K + j] = c;
      out[j * K + i] = c;
    }
  };
  // Row i takes the pairs (i, j >= i), K - i of them: rows p and K - 1 - p go together, so
  // every index of the loop is K + 1 pairs and the threads' equal ranges are equal work.
  parallel_for(0, (K + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      row(p);
      if (K - 1 - p != p) {
        row(K - 1 - p);
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
