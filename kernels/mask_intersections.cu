// visolo_fast::mask_intersections for CUDA tensors: one kernel packs the masks 64
// pixels a word, a second counts |M_i & M_j| for every pair i <= j, one block per pair;
// math in kernels/mask_intersections.cuh.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/mask_intersections.h"
#include "kernels/mask_intersections.cuh"

namespace visolo_fast {
namespace {

constexpr int kThreads = 256;

__global__ void pack_kernel(const bool* __restrict__ masks,  // [K, n]
                            uint64_t* __restrict__ packed,   // [K, words]
                            int64_t total, int64_t n, int64_t words) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t k = i / words, w = i % words;
    packed[i] = mask_intersections_math::pack_word(masks + k * n, n, w);
  }
}

__global__ void pairs_kernel(const uint64_t* __restrict__ packed,  // [K, words]
                             int64_t* __restrict__ inter,          // [K, K]
                             int64_t K, int64_t words) {
  const int64_t i = blockIdx.y, j = blockIdx.x;
  if (j < i) {
    return;  // the pair (j, i) fills both entries
  }
  __shared__ long long partial[kThreads];
  const uint64_t* a = packed + i * words;
  const uint64_t* b = packed + j * words;
  long long count = 0;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) {
    count += mask_intersections_math::popcount(a[w] & b[w]);
  }
  partial[threadIdx.x] = count;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    inter[i * K + j] = partial[0];
    inter[j * K + i] = partial[0];
  }
}

at::Tensor mask_intersections_cuda(const at::Tensor& masks) {
  const c10::cuda::CUDAGuard guard(masks.device());
  at::Tensor inter = mask_intersections_check_and_allocate(masks);
  const int64_t K = masks.size(0), n = masks.size(1) * masks.size(2), words = (n + 63) / 64;
  if (K == 0 || n == 0) {
    return inter.zero_();  // NB: no zero-block launch for masks without pixels
  }
  TORCH_CHECK(K <= 65535, "mask_intersections: at most 65535 masks on CUDA, got ", K);
  const at::Tensor in = masks.contiguous();
  at::Tensor packed = at::empty({K, words}, masks.options().dtype(at::kLong));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = K * words;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  auto* words_ptr = reinterpret_cast<uint64_t*>(packed.mutable_data_ptr<int64_t>());
  pack_kernel<<<blocks, kThreads, 0, stream>>>(in.const_data_ptr<bool>(), words_ptr, total, n, words);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  pairs_kernel<<<dim3(K, K), kThreads, 0, stream>>>(words_ptr, inter.mutable_data_ptr<int64_t>(), K, words);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return inter;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("mask_intersections", &mask_intersections_cuda);
}

}  // namespace visolo_fast
