// visolo_fast::mask_dedup_keep: schema, input checks and the CPU implementation of
// the greedy IoU* duplicate removal from the pairwise intersections.

#include <ATen/ATen.h>

#include <torch/library.h>

#include "csrc/mask_dedup.h"
#include "kernels/mask_dedup.cuh"

namespace visolo_fast {

at::Tensor mask_dedup_check_and_allocate(const at::Tensor& inter) {
  TORCH_CHECK(inter.dim() == 2 && inter.size(0) == inter.size(1) && inter.scalar_type() == at::kLong,
              "mask_dedup: inter must be an int64 [K, K], got ", inter.scalar_type(), " ", inter.sizes());
  return at::empty({inter.size(0)}, inter.options().dtype(at::kBool));
}

namespace {

at::Tensor mask_dedup_keep_cpu(const at::Tensor& inter, double threshold) {
  at::Tensor keep = mask_dedup_check_and_allocate(inter);
  const int64_t K = inter.size(0);
  const at::Tensor I = inter.contiguous();
  const int64_t* ip = I.const_data_ptr<int64_t>();
  bool* kp = keep.mutable_data_ptr<bool>();
  for (int64_t j = 0; j < K; ++j) {
    kp[j] = ip[j * K + j] > 0;  // empty masks are never kept
  }
  // Greedy in score order: a kept mask removes the later masks it covers.
  for (int64_t i = 0; i < K; ++i) {
    if (!kp[i]) {
      continue;
    }
    for (int64_t j = i + 1; j < K; ++j) {
      if (kp[j] && mask_dedup_math::covers(ip[i * K + j], ip[j * K + j], static_cast<float>(threshold))) {
        kp[j] = false;
      }
    }
  }
  return keep;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("mask_dedup_keep(Tensor inter, float threshold) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("mask_dedup_keep", &mask_dedup_keep_cpu);
}

}  // namespace visolo_fast
