// visolo_fast::dynamic_masks: schema, input checks, the low-resolution product, and
// the CPU implementation of the fused x4 upsample + sigmoid + threshold + reductions.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <torch/library.h>

#include <array>
#include <cstring>
#include <vector>

#include "csrc/cpu_features.h"
#include "csrc/huge_pages.h"
#include "csrc/parallel.h"

#if VF_X86_64
#include <immintrin.h>
#endif

#include "csrc/dynamic_masks.h"
#include "kernels/dynamic_masks.cuh"

namespace visolo_fast {

at::Tensor dynamic_masks_logits(const at::Tensor& features, const at::Tensor& kernels) {
  const bool batched = features.dim() == 4;
  TORCH_CHECK(features.dim() == 3 || batched, "dynamic_masks: features must be [E, h, w] or [B, E, h, w], got ",
              features.sizes());
  TORCH_CHECK(kernels.dim() == features.dim() - 1, "dynamic_masks: features ", features.sizes(),
              " need kernels [K, E] (or [B, K, E] if batched), got ", kernels.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()) && at::isFloatingType(kernels.scalar_type()),
              "dynamic_masks: features and kernels must be floating point, got ", features.scalar_type(), " and ",
              kernels.scalar_type());
  TORCH_CHECK(kernels.size(-1) == features.size(-3) && (!batched || kernels.size(0) == features.size(0)),
              "dynamic_masks: kernels ", kernels.sizes(), " do not fit features ", features.sizes(),
              " (E, and B if batched, must agree)");
  TORCH_CHECK(features.size(-1) > 0 && features.size(-2) > 0, "dynamic_masks: features must have h, w >= 1, got ",
              features.sizes());
  TORCH_CHECK(features.device() == kernels.device(), "dynamic_masks: features and kernels must be on one device, got ",
              features.device(), " and ", kernels.device());
  const auto acc = at::toOpMathType(at::promote_types(features.scalar_type(), kernels.scalar_type()));
  const int64_t h = features.size(-2), w = features.size(-1);
  const at::Tensor f = features.to(acc), k = kernels.to(acc);
  at::Tensor logits = batched ? at::bmm(k, f.flatten(2)) : at::mm(k, f.flatten(1));
  return logits.reshape({-1, h, w}).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_masks_allocate(const at::Tensor& features,
                                                                      const at::Tensor& kernels,
                                                                      const at::Tensor& logits) {
  std::vector<int64_t> lead = {kernels.size(-2)};
  if (features.dim() == 4) {
    lead.insert(lead.begin(), features.size(0));
  }
  std::vector<int64_t> mask_shape = lead;
  mask_shape.push_back(4 * logits.size(1));
  mask_shape.push_back(4 * logits.size(2));
  return {at::empty(mask_shape, logits.options().dtype(at::kBool)), at::empty(lead, logits.options().dtype(at::kLong)),
          at::empty(lead, logits.options())};
}

namespace {

// One output row of classify(): the blend of two upsampled rows, its mask bits, and the
// logits inside the mask packed densely into `inside` (branch-free: mask pixels are
// scattered, a branch per pixel would be mispredicted half the time). Returns their count.
template <typename scalar_t>
int64_t classify_row(const scalar_t* r0, const scalar_t* r1, const bilinear::Tap<scalar_t>& t, scalar_t cut, bool* dst,
                     scalar_t* inside, int64_t W) {
  int64_t n = 0;
  for (int64_t x = 0; x < W; ++x) {
    const scalar_t v = bilinear::lerp(r0[x], r1[x], t);
    dst[x] = v > cut;
    inside[n] = v;
    n += v > cut;
  }
  return n;
}

#if VF_X86_64
// classify_row for float32 on a CPU with AVX-512F (chosen at run time): 16 pixels an
// instruction, the in-mask logits packed by one compress-store. NB: the same products
// and sum as bilinear::lerp, unfused, so the same bits as the generic loop.
__attribute__((target("avx512f,popcnt")))
int64_t classify_row_avx512(const float* r0, const float* r1, const bilinear::Tap<float>& t, float cut, bool* dst,
                            float* inside, int64_t W) {
  const __m512 w0 = _mm512_set1_ps(t.w0), w1 = _mm512_set1_ps(t.w1), threshold = _mm512_set1_ps(cut);
  int64_t n = 0, x = 0;
  for (; x + 16 <= W; x += 16) {
    const __m512 v = _mm512_add_ps(_mm512_mul_ps(w0, _mm512_loadu_ps(r0 + x)), _mm512_mul_ps(w1, _mm512_loadu_ps(r1 + x)));
    const __mmask16 on = _mm512_cmp_ps_mask(v, threshold, _CMP_GT_OQ);  // NaN: off, as `v > cut`
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + x), _mm512_cvtepi32_epi8(_mm512_maskz_set1_epi32(on, 1)));
    _mm512_mask_compressstoreu_ps(inside + n, on, v);
    n += _mm_popcnt_u32(on);
  }
  return n + classify_row(r0 + x, r1 + x, t, cut, dst + x, inside + n, W - x);
}

// Byte x of kSpread[b] is bit x of b: 8 mask bits as 8 bools in one store.
constexpr auto kSpread = [] {
  std::array<uint64_t, 256> table{};
  for (int b = 0; b < 256; ++b) {
    for (int x = 0; x < 8; ++x) table[b] |= static_cast<uint64_t>((b >> x) & 1) << (8 * x);
  }
  return table;
}();

// classify_row for float32 on a CPU with AVX2 (chosen at run time): 8 pixels an instruction.
// No compress-store in AVX2, but trained masks cover a few percent of the frame: a group of
// 8 with no pixel in the mask (most) only stores its zeros. NB: unfused products and sum, as
// bilinear::lerp: the same bits as the generic loop.
__attribute__((target("avx2")))
int64_t classify_row_avx2(const float* r0, const float* r1, const bilinear::Tap<float>& t, float cut, bool* dst,
                          float* inside, int64_t W) {
  const __m256 w0 = _mm256_set1_ps(t.w0), w1 = _mm256_set1_ps(t.w1), threshold = _mm256_set1_ps(cut);
  int64_t n = 0, x = 0;
  for (; x + 8 <= W; x += 8) {
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(w0, _mm256_loadu_ps(r0 + x)), _mm256_mul_ps(w1, _mm256_loadu_ps(r1 + x)));
    const int on = _mm256_movemask_ps(_mm256_cmp_ps(v, threshold, _CMP_GT_OQ));  // NaN: off, as `v > cut`
    std::memcpy(dst + x, &kSpread[on], 8);
    if (on) {
      alignas(32) float values[8];
      _mm256_store_ps(values, v);
      for (int j = 0; j < 8; ++j) {
        inside[n] = values[j];
        n += (on >> j) & 1;
      }
    }
  }
  return n + classify_row(r0 + x, r1 + x, t, cut, dst + x, inside + n, W - x);
}

// float64 maps (tests, the reference's precision) take the generic loop.
int64_t classify_row_avx2(const double* r0, const double* r1, const bilinear::Tap<double>& t, double cut, bool* dst,
                          double* inside, int64_t W) {
  return classify_row(r0, r1, t, cut, dst, inside, W);
}

int64_t classify_row_avx512(const double* r0, const double* r1, const bilinear::Tap<double>& t, double cut, bool* dst,
                            double* inside, int64_t W) {
  return classify_row(r0, r1, t, cut, dst, inside, W);
}
#endif

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_masks_cpu(const at::Tensor& features, const at::Tensor& kernels,
                                                                 double threshold) {
  const at::Tensor logits = dynamic_masks_logits(features, kernels);
  auto [masks, areas, quality] = dynamic_masks_allocate(features, kernels, logits);
  advise_huge_pages(masks);
  const int64_t M = logits.size(0), h = logits.size(1), w = logits.size(2), H = 4 * h, W = 4 * w;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "dynamic_masks_cpu", [&] {
    using namespace dynamic_masks_math;
    // The taps of every output row and column, computed once for all maps.
    std::vector<bilinear::Tap<scalar_t>> rows(H), cols(W);
    for (int64_t y = 0; y < H; ++y) rows[y] = bilinear::source<scalar_t>(y, h, static_cast<scalar_t>(0.25));
    for (int64_t x = 0; x < W; ++x) cols[x] = bilinear::source<scalar_t>(x, w, static_cast<scalar_t>(0.25));
    const scalar_t cut = static_cast<scalar_t>(cut_for(threshold));
    const scalar_t* in = logits.const_data_ptr<scalar_t>();
    bool* out = masks.mutable_data_ptr<bool>();
    int64_t* area_out = areas.mutable_data_ptr<int64_t>();
    scalar_t* quality_out = quality.mutable_data_ptr<scalar_t>();
#if VF_X86_64
    const bool avx512 = cpu_avx512(), avx2 = cpu_avx2();
#endif
    parallel_for(0, M, 1, [&](int64_t begin, int64_t end) {
      // The map's rows upsampled along x first (the same arithmetic as upsampled_logit,
      // which interpolates along the row first), then each output row is a blend of two.
      std::vector<scalar_t> wide(h * W), inside(H * W);
      for (int64_t m = begin; m < end; ++m) {
        const scalar_t* map = in + m * h * w;
        for (int64_t r = 0; r < h; ++r) {
          for (int64_t x = 0; x < W; ++x) {
            wide[r * W + x] = bilinear::lerp(map[r * w + cols[x].i0], map[r * w + cols[x].i1], cols[x]);
          }
        }
        bool* dst = out + m * H * W;
        // classify() row by row; after the last row, the sigmoids of all in-mask logits at once.
        int64_t area = 0;
        for (int64_t y = 0; y < H; ++y) {
          const scalar_t* r0 = wide.data() + rows[y].i0 * W;
          const scalar_t* r1 = wide.data() + rows[y].i1 * W;
#if VF_X86_64
          area += avx512 ? classify_row_avx512(r0, r1, rows[y], cut, dst + y * W, inside.data() + area, W)
                  : avx2 ? classify_row_avx2(r0, r1, rows[y], cut, dst + y * W, inside.data() + area, W)
                         : classify_row(r0, r1, rows[y], cut, dst + y * W, inside.data() + area, W);
#else
          area += classify_row(r0, r1, rows[y], cut, dst + y * W, inside.data() + area, W);
#endif
        }
        // NB: ATen's vectorised sigmoid (the reference's own), on the packed logits; the
        // CUDA kernel runs sigmoid() of kernels/common.cuh per pixel: equal up to an ulp.
        if (area > 0) {
          at::Tensor packed = at::from_blob(inside.data(), {area}, logits.options());
          at::sigmoid_(packed);
        }
        double part[4] = {0.0, 0.0, 0.0, 0.0};  // NB: double, whatever the map's dtype: up to 2^24 + pixels summed;
        int64_t i = 0;                          // independent chains, so the adds overlap
        for (; i + 4 <= area; i += 4) {
          for (int j = 0; j < 4; ++j) part[j] += static_cast<double>(inside[i + j]);
        }
        for (; i < area; ++i) part[0] += static_cast<double>(inside[i]);
        const double sum = (part[0] + part[1]) + (part[2] + part[3]);
        area_out[m] = area;
        // NB: 0 / 0 = NaN for an empty mask, as the official code.
        quality_out[m] = static_cast<scalar_t>(sum / static_cast<double>(area));
      }
    });
  });
  return {masks, areas, quality};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("dynamic_masks(Tensor features, Tensor kernels, float threshold) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("dynamic_masks", &dynamic_masks_cpu);
}

}  // namespace visolo_fast
