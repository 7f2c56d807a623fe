// visolo_fast::memory_read: schema, input checks and the CPU implementation.
//
// memory_read: out = residual + softmax(query @ keys^T) @ values (VISOLO's memory read,
// the category and kernel memories side by side in `values`). On the CPU the two
// products go to the BLAS (MKL) and the softmax runs in place between them, in one
// buffer; the residual is added by the second product (baddbmm): one pass less over
// the S x N weights and no separate add.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <torch/library.h>

#include "csrc/memory_read.h"

namespace visolo_fast {

void memory_read_check(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                       const at::Tensor& residual) {
  TORCH_CHECK(query.dim() == 3, "memory_read: query must be [B, S, D], got ", query.sizes());
  TORCH_CHECK(keys.dim() == 3 && keys.size(0) == query.size(0) && keys.size(2) == query.size(2),
              "memory_read: keys must be [B, N, D] with B, D as query ", query.sizes(), ", got ", keys.sizes());
  TORCH_CHECK(values.dim() == 3 && values.size(0) == query.size(0) && values.size(1) == keys.size(1),
              "memory_read: values must be [B, N, V] with B, N as keys ", keys.sizes(), ", got ", values.sizes());
  TORCH_CHECK(residual.dim() == 3 && residual.size(0) == query.size(0) && residual.size(1) == query.size(1) &&
                  residual.size(2) == values.size(2),
              "memory_read: residual must be [B, S, V] = [", query.size(0), ", ", query.size(1), ", ", values.size(2),
              "], got ", residual.sizes());
  TORCH_CHECK(keys.size(1) >= 1 || query.size(0) * query.size(1) == 0,
              "memory_read: keys must hold N >= 1 memory grids, got ", keys.sizes());
  for (const at::Tensor* t : {&query, &keys, &values, &residual}) {
    TORCH_CHECK(at::isFloatingType(t->scalar_type()) && t->scalar_type() == query.scalar_type(),
                "memory_read: query, keys, values and residual must share one floating dtype, got ",
                query.scalar_type(), ", ", keys.scalar_type(), ", ", values.scalar_type(), ", ", residual.scalar_type());
    TORCH_CHECK(t->device() == query.device(), "memory_read: query, keys, values and residual must be on one device, got ",
                query.device(), ", ", keys.device(), ", ", values.device(), ", ", residual.device());
  }
}

namespace {

at::Tensor memory_read_cpu(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                           const at::Tensor& residual) {
  memory_read_check(query, keys, values, residual);
  const auto acc = at::toOpMathType(query.scalar_type());
  if (residual.numel() == 0) {
    return residual.clone(at::MemoryFormat::Contiguous);
  }
  // NB: ATen's vectorised softmax, in place; the CUDA kernel's online softmax
  // (kernels/memory_read.cuh) is the same function taken key block by key block.
  at::Tensor probs = at::bmm(query.to(acc), keys.to(acc).transpose(1, 2));  // [B, S, N]
  at::_softmax_out(probs, probs, -1, false);
  return at::baddbmm(residual.to(acc), probs, values.to(acc)).to(residual.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("memory_read(Tensor query, Tensor keys, Tensor values, Tensor residual) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("memory_read", &memory_read_cpu);
}

}  // namespace visolo_fast
