// visolo_fast::resize_masks: schema, input checks and the CPU implementation.
//
// Binary masks resized as the official code resizes its final masks, without the
// float copy of every mask at the output size that F.interpolate would make.

#include <ATen/ATen.h>

#include <torch/library.h>

#include <vector>

#include "csrc/huge_pages.h"
#include "csrc/parallel.h"
#include "csrc/resize_masks.h"
#include "kernels/resize_masks.cuh"

namespace visolo_fast {

at::Tensor resize_masks_check_and_allocate(const at::Tensor& masks, at::IntArrayRef size) {
  TORCH_CHECK(masks.dim() == 3 && masks.scalar_type() == at::kBool, "resize_masks: masks must be a bool [K, H, W], got ",
              masks.scalar_type(), " ", masks.sizes());
  TORCH_CHECK(masks.size(1) > 0 && masks.size(2) > 0, "resize_masks: masks must have H, W >= 1, got ", masks.sizes());
  TORCH_CHECK(size.size() == 2 && size[0] > 0 && size[1] > 0,
              "resize_masks: size must be (height, width), positive, got ", size);
  return at::empty({masks.size(0), size[0], size[1]}, masks.options());
}

namespace {

at::Tensor resize_masks_cpu(const at::Tensor& masks, at::IntArrayRef size, double threshold) {
  at::Tensor out = resize_masks_check_and_allocate(masks, size);
  advise_huge_pages(out);
  const at::Tensor in = masks.contiguous();
  const int64_t K = in.size(0), H = in.size(1), W = in.size(2), Ho = size[0], Wo = size[1];
  std::vector<bilinear::Tap<float>> rows(Ho), cols(Wo);
  const float sy = resize_masks_math::scale(H, Ho), sx = resize_masks_math::scale(W, Wo);
  for (int64_t y = 0; y < Ho; ++y) rows[y] = bilinear::source<float>(y, H, sy);
  for (int64_t x = 0; x < Wo; ++x) cols[x] = bilinear::source<float>(x, W, sx);
  const bool* src = in.const_data_ptr<bool>();
  bool* dst = out.mutable_data_ptr<bool>();
  const float thr = static_cast<float>(threshold);
  parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
    // Each input row resized along x first (the arithmetic of resize_masks_math::pixel,
    // which interpolates along the row first); then an output row is a blend of two
    // such rows, a contiguous loop the compiler vectorises.
    std::vector<float> wide(H * Wo);
    for (int64_t k = begin; k < end; ++k) {
      const bool* mask = src + k * H * W;
      for (int64_t r = 0; r < H; ++r) {
        for (int64_t x = 0; x < Wo; ++x) {
          wide[r * Wo + x] = bilinear::lerp<float>(mask[r * W + cols[x].i0], mask[r * W + cols[x].i1], cols[x]);
        }
      }
      for (int64_t y = 0; y < Ho; ++y) {
        const float* r0 = wide.data() + rows[y].i0 * Wo;
        const float* r1 = wide.data() + rows[y].i1 * Wo;
        const float w0 = rows[y].w0, w1 = rows[y].w1;
        bool* row = dst + (k * Ho + y) * Wo;
        for (int64_t x = 0; x < Wo; ++x) {
          row[x] = w0 * r0[x] + w1 * r1[x] >= thr;
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("resize_masks(Tensor masks, SymInt[2] size, float threshold) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("resize_masks", &resize_masks_cpu);
}

}  // namespace visolo_fast
