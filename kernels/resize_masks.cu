// visolo_fast::resize_masks for CUDA tensors: one thread per output pixel, reading the
// bool input directly; math in kernels/resize_masks.cuh.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/resize_masks.h"
#include "kernels/resize_masks.cuh"

namespace visolo_fast {
namespace {

__global__ void resize_masks_kernel(const bool* __restrict__ masks,  // [K, H, W]
                                    bool* __restrict__ out,          // [K, Ho, Wo]
                                    int64_t numel, int64_t H, int64_t W, int64_t Ho, int64_t Wo, float sy, float sx,
                                    float threshold) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = i % Wo, y = (i / Wo) % Ho, k = i / (Wo * Ho);
    out[i] = resize_masks_math::pixel(masks + k * H * W, W, bilinear::source<float>(y, H, sy),
                                      bilinear::source<float>(x, W, sx), threshold);
  }
}

at::Tensor resize_masks_cuda(const at::Tensor& masks, at::IntArrayRef size, double threshold) {
  const c10::cuda::CUDAGuard guard(masks.device());
  at::Tensor out = resize_masks_check_and_allocate(masks, size);
  const int64_t numel = out.numel();
  if (numel == 0) {
    return out;
  }
  const at::Tensor in = masks.contiguous();
  const int64_t H = in.size(1), W = in.size(2);
  constexpr int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((numel + threads - 1) / threads, 65535));
  resize_masks_kernel<<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      in.const_data_ptr<bool>(), out.mutable_data_ptr<bool>(), numel, H, W, size[0], size[1],
      resize_masks_math::scale(H, size[0]), resize_masks_math::scale(W, size[1]), static_cast<float>(threshold));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("resize_masks", &resize_masks_cuda);
}

}  // namespace visolo_fast
