// visolo_fast::grid_weight: schema, input checks and the CPU implementation.
//
// w[b, i] = mean over earlier frames e of max over their grids j of sigmoid(q_i . k_ej)
// (VISOLO's score re-weighting): the logits by the BLAS, their row maxima, then the
// sigmoid of the maxima only.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <torch/library.h>

#include "csrc/grid_weight.h"
#include "kernels/grid_weight.cuh"

namespace visolo_fast {

void grid_weight_check(const at::Tensor& query, const at::Tensor& keys) {
  TORCH_CHECK(query.dim() == 3, "grid_weight: query must be [B, S, D], got ", query.sizes());
  TORCH_CHECK(keys.dim() == 4 && keys.size(0) == query.size(0) && keys.size(3) == query.size(2) && keys.size(1) >= 1 &&
                  keys.size(2) >= 1,
              "grid_weight: keys must be [B, E, S', D] with E, S' >= 1 and B, D as query ", query.sizes(), ", got ",
              keys.sizes());
  TORCH_CHECK(at::isFloatingType(query.scalar_type()) && query.scalar_type() == keys.scalar_type(),
              "grid_weight: query and keys must share one floating dtype, got ", query.scalar_type(), " and ",
              keys.scalar_type());
  TORCH_CHECK(query.device() == keys.device(), "grid_weight: query and keys must be on one device, got ", query.device(),
              " and ", keys.device());
}

namespace {

at::Tensor grid_weight_cpu(const at::Tensor& query, const at::Tensor& keys) {
  grid_weight_check(query, keys);
  const auto acc = at::toOpMathType(query.scalar_type());
  const int64_t B = query.size(0), S = query.size(1), E = keys.size(1);
  // [B, E, S, S'] logits; the best of each row, then the sigmoid of it.
  const at::Tensor best = at::matmul(query.to(acc).unsqueeze(1), keys.to(acc).transpose(-1, -2)).amax(-1)
                              .permute({0, 2, 1}).contiguous();  // [B, S, E]
  at::Tensor out = at::empty({B, S}, query.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES(acc, "grid_weight_cpu", [&] {
    const scalar_t* bp = best.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < B * S; ++i) op[i] = grid_weight_math::from_best(bp + i * E, E);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("grid_weight(Tensor query, Tensor keys) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("grid_weight", &grid_weight_cpu);
}

}  // namespace visolo_fast
