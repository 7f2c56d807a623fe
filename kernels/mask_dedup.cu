// visolo_fast::mask_dedup_keep for CUDA tensors: one block walks the masks in score
// order; for each kept mask its threads strike the later masks it covers, one thread
// per later mask (no host round trip per pair). Math in kernels/mask_dedup.cuh.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/mask_dedup.h"
#include "kernels/mask_dedup.cuh"

namespace visolo_fast {
namespace {

__global__ void mask_dedup_kernel(const int64_t* __restrict__ inter,  // [K, K]
                                  bool* __restrict__ keep,            // [K]
                                  int64_t K, float threshold) {
  for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
    keep[j] = inter[j * K + j] > 0;
  }
  __syncthreads();
  for (int64_t i = 0; i < K; ++i) {
    // NB: keep[i] is final here: only masks before i strike it, and their passes ended
    // with a barrier.
    if (keep[i]) {
      for (int64_t j = i + 1 + threadIdx.x; j < K; j += blockDim.x) {
        if (keep[j] && mask_dedup_math::covers(inter[i * K + j], inter[j * K + j], threshold)) {
          keep[j] = false;
        }
      }
    }
    __syncthreads();
  }
}

at::Tensor mask_dedup_keep_cuda(const at::Tensor& inter, double threshold) {
  const c10::cuda::CUDAGuard guard(inter.device());
  at::Tensor keep = mask_dedup_check_and_allocate(inter);
  const int64_t K = inter.size(0);
  if (K == 0) {
    return keep;
  }
  const at::Tensor I = inter.contiguous();
  mask_dedup_kernel<<<1, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(I.const_data_ptr<int64_t>(),
                                                                      keep.mutable_data_ptr<bool>(), K,
                                                                      static_cast<float>(threshold));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("mask_dedup_keep", &mask_dedup_keep_cuda);
}

}  // namespace visolo_fast
