// visolo_fast::grid_weight for CUDA tensors: one thread per query grid, its best logit
// against each earlier frame, then kernels/grid_weight.cuh. Small work (S x E x S' dot
// products of D): not tuned.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/grid_weight.h"
#include "kernels/grid_weight.cuh"

namespace visolo_fast {
namespace {

constexpr int kMaxFrames = 8;

template <typename scalar_t, typename acc_t>
__global__ void grid_weight_kernel(const scalar_t* __restrict__ query,  // [B, S, D]
                                   const scalar_t* __restrict__ keys,   // [B, E, S2, D]
                                   acc_t* __restrict__ out,             // [B, S]
                                   int64_t B, int64_t S, int64_t E, int64_t S2, int64_t D) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < B * S;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = i / S;
    const scalar_t* q = query + i * D;
    acc_t best[kMaxFrames];
    for (int64_t e = 0; e < E; ++e) {
      acc_t m = -static_cast<acc_t>(INFINITY);
      for (int64_t j = 0; j < S2; ++j) {
        const scalar_t* k = keys + ((b * E + e) * S2 + j) * D;
        acc_t logit = 0;
        for (int64_t d = 0; d < D; ++d) logit += static_cast<acc_t>(q[d]) * static_cast<acc_t>(k[d]);
        m = (m != m || logit != logit || logit > m) ? (m != m ? m : logit) : m;  // NaN sticks, as amax
      }
      best[e] = m;
    }
    out[i] = grid_weight_math::from_best(best, E);
  }
}

at::Tensor grid_weight_cuda(const at::Tensor& query, const at::Tensor& keys) {
  const c10::cuda::CUDAGuard guard(query.device());
  grid_weight_check(query, keys);
  TORCH_CHECK(keys.size(1) <= kMaxFrames, "grid_weight: at most ", kMaxFrames, " earlier frames on CUDA, got ",
              keys.size(1));
  const auto acc = at::toOpMathType(query.scalar_type());
  const int64_t B = query.size(0), S = query.size(1), E = keys.size(1), S2 = keys.size(2), D = query.size(2);
  at::Tensor out = at::empty({B, S}, query.options().dtype(acc));
  if (out.numel() == 0) {
    return out;
  }
  const at::Tensor q = query.contiguous(), k = keys.contiguous();
  constexpr int threads = 128;
  const int blocks = static_cast<int>(std::min<int64_t>((B * S + threads - 1) / threads, 65535));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "grid_weight_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    grid_weight_kernel<scalar_t, acc_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), out.mutable_data_ptr<acc_t>(), B, S, E, S2, D);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("grid_weight", &grid_weight_cuda);
}

}  // namespace visolo_fast
