// visolo_fast::matrix_nms_decay for CUDA tensors: one thread per mask for the
// compensations, then one per mask for the decays; math in kernels/matrix_nms.cuh.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/matrix_nms.h"
#include "kernels/matrix_nms.cuh"

namespace visolo_fast {
namespace {

template <typename scalar_t>
__global__ void compensation_kernel(const int64_t* __restrict__ inter, const int64_t* __restrict__ labels,
                                    scalar_t* __restrict__ comp, int64_t K) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < K;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    comp[i] = matrix_nms_math::compensation<scalar_t>(inter, labels, K, i);
  }
}

template <typename scalar_t>
__global__ void decay_kernel(const int64_t* __restrict__ inter, const int64_t* __restrict__ labels,
                             const scalar_t* __restrict__ comp, const scalar_t* __restrict__ scores,
                             scalar_t* __restrict__ out, int64_t K, bool gaussian, scalar_t sigma) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < K;
       j += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    out[j] = scores[j] * matrix_nms_math::decay<scalar_t>(inter, labels, comp, K, j, gaussian, sigma);
  }
}

at::Tensor matrix_nms_decay_cuda(const at::Tensor& inter, const at::Tensor& labels, const at::Tensor& scores,
                                 c10::string_view kernel, double sigma) {
  const c10::cuda::CUDAGuard guard(inter.device());
  bool gaussian = true;
  at::Tensor out = matrix_nms_check_and_allocate(inter, labels, scores, kernel, &gaussian);
  const int64_t K = inter.size(0);
  if (K == 0) {
    return out;
  }
  const at::Tensor I = inter.contiguous(), L = labels.contiguous(), S = scores.to(out.scalar_type()).contiguous();
  at::Tensor comp = at::empty({K}, out.options());
  constexpr int threads = 128;
  const int blocks = static_cast<int>((K + threads - 1) / threads);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "matrix_nms_decay_cuda", [&] {
    compensation_kernel<scalar_t><<<blocks, threads, 0, stream>>>(I.const_data_ptr<int64_t>(), L.const_data_ptr<int64_t>(),
                                                                   comp.mutable_data_ptr<scalar_t>(), K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    decay_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        I.const_data_ptr<int64_t>(), L.const_data_ptr<int64_t>(), comp.const_data_ptr<scalar_t>(),
        S.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), K, gaussian, static_cast<scalar_t>(sigma));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("matrix_nms_decay", &matrix_nms_decay_cuda);
}

}  // namespace visolo_fast
