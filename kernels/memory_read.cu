// visolo_fast::memory_read for CUDA tensors: one block per query grid, the keys in
// tiles with an online softmax (flash-attention style: the S x N affinity never goes
// to memory), the residual added at the end; batch element b reads its first lengths[b]
// keys (all N without lengths). Math in kernels/memory_read.cuh.
// NB: plain FMA loops, no tensor cores: correct for any D, V <= 512, not yet tuned.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/memory_read.h"
#include "kernels/memory_read.cuh"

namespace visolo_fast {
namespace {

constexpr int kThreads = 256;  // keys per tile, one per thread
constexpr int kMaxDim = 512;   // D and V
constexpr int kPerThread = kMaxDim / kThreads;

template <typename acc_t>
__device__ acc_t block_reduce(acc_t v, acc_t* shared, bool take_max) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const acc_t o = shared[threadIdx.x + stride];
      shared[threadIdx.x] = take_max ? (o > shared[threadIdx.x] ? o : shared[threadIdx.x]) : shared[threadIdx.x] + o;
    }
    __syncthreads();
  }
  const acc_t r = shared[0];
  __syncthreads();
  return r;
}

template <typename scalar_t, typename acc_t>
__global__ void memory_read_kernel(const scalar_t* __restrict__ query,     // [B, S, D]
                                   const scalar_t* __restrict__ keys,      // [B, N, D]
                                   const scalar_t* __restrict__ values,    // [B, N, V]
                                   const scalar_t* __restrict__ residual,  // [B, S, V]
                                   const int64_t* __restrict__ lengths,    // [B] or nullptr
                                   scalar_t* __restrict__ out,             // [B, S, V]
                                   int64_t S, int64_t N, int64_t D, int64_t V) {
  using namespace memory_read_math;
  __shared__ acc_t q[kMaxDim];
  __shared__ acc_t p[kThreads];
  __shared__ acc_t red[kThreads];
  const int64_t b = blockIdx.y, s = blockIdx.x;
  // NB: the keys' stride stays N; only the first n are read (a device assert for bad lengths:
  // checking them on the host would synchronise).
  const int64_t n = lengths == nullptr ? N : lengths[b];
  CUDA_KERNEL_ASSERT(n >= 1 && n <= N);
  for (int64_t d = threadIdx.x; d < D; d += kThreads) q[d] = static_cast<acc_t>(query[(b * S + s) * D + d]);
  __syncthreads();
  acc_t acc[kPerThread];
  for (int i = 0; i < kPerThread; ++i) acc[i] = 0;
  Online<acc_t> state = online_start<acc_t>();
  for (int64_t start = 0; start < n; start += kThreads) {
    const int64_t j = start + threadIdx.x;
    acc_t logit = -static_cast<acc_t>(INFINITY);
    if (j < n) {
      logit = 0;
      const scalar_t* k = keys + (b * N + j) * D;
      for (int64_t d = 0; d < D; ++d) logit += q[d] * static_cast<acc_t>(k[d]);
    }
    const acc_t new_max = online_max(state, block_reduce(logit, red, true));
    const acc_t rescale = online_rescale(state, new_max);
    const acc_t e = j < n ? exp_(logit - new_max) : static_cast<acc_t>(0);
    p[threadIdx.x] = e;
    state = {new_max, state.l * rescale + block_reduce(e, red, false)};
    const int64_t tile = n - start < kThreads ? n - start : kThreads;
    for (int i = 0; i < kPerThread; ++i) {
      const int64_t v = threadIdx.x + i * kThreads;
      if (v < V) {
        acc_t sum = 0;
        for (int64_t t = 0; t < tile; ++t) sum += p[t] * static_cast<acc_t>(values[(b * N + start + t) * V + v]);
        acc[i] = acc[i] * rescale + sum;
      }
    }
    __syncthreads();  // p is rewritten by the next tile
  }
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t v = threadIdx.x + i * kThreads;
    if (v < V) {
      out[(b * S + s) * V + v] =
          static_cast<scalar_t>(static_cast<acc_t>(residual[(b * S + s) * V + v]) + acc[i] / state.l);
    }
  }
}

at::Tensor memory_read_cuda(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                            const at::Tensor& residual, const std::optional<at::Tensor>& lengths) {
  const c10::cuda::CUDAGuard guard(query.device());
  memory_read_check(query, keys, values, residual, lengths);
  TORCH_CHECK(query.size(2) <= kMaxDim && values.size(2) <= kMaxDim, "memory_read: D and V must be <= ", kMaxDim,
              " on CUDA, got D = ", query.size(2), ", V = ", values.size(2));
  at::Tensor out = at::empty(residual.sizes(), residual.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t B = query.size(0), S = query.size(1), N = keys.size(1), D = query.size(2), V = values.size(2);
  if (out.numel() == 0) {
    return out;
  }
  TORCH_CHECK(B <= 65535, "memory_read: at most 65535 batch elements on CUDA, got ", B);
  const at::Tensor q = query.contiguous(), k = keys.contiguous(), v = values.contiguous(), r = residual.contiguous();
  const at::Tensor len = lengths.has_value() ? lengths->contiguous() : at::Tensor();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "memory_read_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    memory_read_kernel<scalar_t, acc_t><<<dim3(S, B), kThreads, 0, stream>>>(
        q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
        r.const_data_ptr<scalar_t>(), len.defined() ? len.const_data_ptr<int64_t>() : nullptr,
        out.mutable_data_ptr<scalar_t>(), S, N, D, V);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("memory_read", &memory_read_cuda);
}

}  // namespace visolo_fast
