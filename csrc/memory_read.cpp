// visolo_fast::memory_read: schema, input checks and the CPU implementation.
//
// memory_read: out = residual + softmax(query @ keys^T) @ values (VISOLO's memory read,
// the category and kernel memories side by side in `values`). On the CPU the two
// products go to the BLAS (MKL) and the softmax runs in place between them, in one
// buffer; the residual is added by the second product (baddbmm): one pass less over
// the S x N weights and no separate add. With `lengths` (a memory of fixed capacity N,
// partly filled), batch element b reads its first lengths[b] keys and values only.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <torch/library.h>

#include <optional>
#include <vector>

#include "csrc/memory_read.h"

namespace visolo_fast {

void memory_read_check(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                       const at::Tensor& residual, const std::optional<at::Tensor>& lengths) {
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
  if (lengths.has_value()) {
    TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->dim() == 1 && lengths->size(0) == query.size(0),
                "memory_read: lengths must be an int64 Tensor[B] = [", query.size(0), "], got ", lengths->scalar_type(),
                " ", lengths->sizes());
    TORCH_CHECK(lengths->device() == query.device(), "memory_read: lengths must be on the inputs' device ",
                query.device(), ", got ", lengths->device());
  }
}

namespace {

at::Tensor read_all(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                    const at::Tensor& residual) {
  const auto acc = at::toOpMathType(query.scalar_type());
  // NB: ATen's vectorised softmax, in place; the CUDA kernel's online softmax
  // (kernels/memory_read.cuh) is the same function taken key block by key block.
  at::Tensor probs = at::bmm(query.to(acc), keys.to(acc).transpose(1, 2));  // [B, S, N]
  at::_softmax_out(probs, probs, -1, false);
  return at::baddbmm(residual.to(acc), probs, values.to(acc)).to(residual.scalar_type());
}

at::Tensor memory_read_cpu(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                           const at::Tensor& residual, const std::optional<at::Tensor>& lengths) {
  memory_read_check(query, keys, values, residual, lengths);
  if (residual.numel() == 0) {
    return residual.clone(at::MemoryFormat::Contiguous);
  }
  if (!lengths.has_value()) {
    return read_all(query, keys, values, residual);
  }
  // Each batch element on its own slice of the memory: the same products as an unpadded
  // memory, and the padding is never read.
  const int64_t N = keys.size(1);
  const auto n = lengths->accessor<int64_t, 1>();
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < query.size(0); ++b) {
    TORCH_CHECK(n[b] >= 1 && n[b] <= N, "memory_read: lengths[", b, "] must lie in [1, N = ", N, "], got ", n[b]);
    out.push_back(read_all(query.narrow(0, b, 1), keys.narrow(0, b, 1).narrow(1, 0, n[b]),
                           values.narrow(0, b, 1).narrow(1, 0, n[b]), residual.narrow(0, b, 1)));
  }
  return at::cat(out);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("memory_read(Tensor query, Tensor keys, Tensor values, Tensor residual, Tensor? lengths=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("memory_read", &memory_read_cpu);
}

}  // namespace visolo_fast
