// visolo_fast::matrix_nms_decay: schema, input checks and the CPU implementation of
// Matrix NMS from the pairwise intersections (visolo_fast::mask_intersections).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <torch/library.h>

#include <vector>

#include "csrc/parallel.h"
#include "csrc/matrix_nms.h"
#include "kernels/matrix_nms.cuh"

namespace visolo_fast {

at::Tensor matrix_nms_check_and_allocate(const at::Tensor& inter, const at::Tensor& labels, const at::Tensor& scores,
                                         std::string_view kernel, bool* gaussian) {
  TORCH_CHECK(inter.dim() == 2 && inter.size(0) == inter.size(1) && inter.scalar_type() == at::kLong,
              "matrix_nms: inter must be an int64 [K, K], got ", inter.scalar_type(), " ", inter.sizes());
  const int64_t K = inter.size(0);
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == K && labels.scalar_type() == at::kLong,
              "matrix_nms: labels must be an int64 [", K, "], got ", labels.scalar_type(), " ", labels.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == K && at::isFloatingType(scores.scalar_type()),
              "matrix_nms: scores must be a floating-point [", K, "], got ", scores.scalar_type(), " ", scores.sizes());
  TORCH_CHECK(inter.device() == labels.device() && inter.device() == scores.device(),
              "matrix_nms: inter, labels and scores must be on one device, got ", inter.device(), ", ", labels.device(),
              ", ", scores.device());
  TORCH_CHECK(kernel == "gaussian" || kernel == "linear", "matrix_nms: kernel must be 'gaussian' or 'linear', got '",
              kernel, "'");
  *gaussian = kernel == "gaussian";
  return at::empty({K}, scores.options().dtype(at::toOpMathType(scores.scalar_type())));
}

namespace {

at::Tensor matrix_nms_decay_cpu(const at::Tensor& inter, const at::Tensor& labels, const at::Tensor& scores,
                                c10::string_view kernel, double sigma) {
  bool gaussian = true;
  at::Tensor out = matrix_nms_check_and_allocate(inter, labels, scores, kernel, &gaussian);
  const int64_t K = inter.size(0);
  const at::Tensor I = inter.contiguous(), L = labels.contiguous(), S = scores.to(out.scalar_type()).contiguous();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "matrix_nms_decay_cpu", [&] {
    using namespace matrix_nms_math;
    const int64_t* ip = I.const_data_ptr<int64_t>();
    const int64_t* lp = L.const_data_ptr<int64_t>();
    std::vector<scalar_t> comp(K);
    parallel_for(0, K, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) comp[i] = compensation<scalar_t>(ip, lp, K, i);
    });
    const scalar_t* sp = S.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    parallel_for(0, K, 16, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        op[j] = sp[j] * decay<scalar_t>(ip, lp, comp.data(), K, j, gaussian, static_cast<scalar_t>(sigma));
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("matrix_nms_decay(Tensor inter, Tensor labels, Tensor scores, str kernel, float sigma) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("matrix_nms_decay", &matrix_nms_decay_cpu);
}

}  // namespace visolo_fast
