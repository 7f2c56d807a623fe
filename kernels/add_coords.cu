// visolo_fast::add_coords for CUDA tensors: one thread per output element,
// the arithmetic in kernels/add_coords.cuh (shared with the CPU loop).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/add_coords.h"
#include "kernels/add_coords.cuh"

namespace visolo_fast {
namespace {

template <typename scalar_t>
__global__ void add_coords_kernel(const scalar_t* __restrict__ x,  // [B, C, H, W]
                                  scalar_t* __restrict__ out,      // [B, C + 2, H, W]
                                  int64_t numel, int64_t C, int64_t H, int64_t W) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
    out[i] = add_coords_math::output_element(x, i, C, H, W);
  }
}

at::Tensor add_coords_cuda(const at::Tensor& x) {
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = add_coords_check_and_allocate(x);
  const int64_t numel = out.numel();
  if (numel == 0) {
    return out;
  }
  const at::Tensor xc = x.contiguous();
  constexpr int threads = 256;
  // A grid-stride loop: cap the grid, large maps loop instead of launching more blocks.
  const int blocks = static_cast<int>(std::min<int64_t>((numel + threads - 1) / threads, 65535));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "add_coords_cuda", [&] {
    add_coords_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        xc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), numel, x.size(1), x.size(2), x.size(3));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("add_coords", &add_coords_cuda);
}

}  // namespace visolo_fast
