// visolo_fast::dynamic_masks for CUDA tensors: the low-resolution product by cuBLAS
// (through ATen), then one kernel that upsamples x4, applies the sigmoid and the
// threshold, writes the mask bits and reduces the areas and probability sums per
// block; no full-resolution float map is ever written. Math in kernels/dynamic_masks.cuh.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "csrc/dynamic_masks.h"
#include "kernels/dynamic_masks.cuh"

namespace visolo_fast {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void dynamic_masks_kernel(const scalar_t* __restrict__ logits,  // [M, h, w]
                                     bool* __restrict__ masks,            // [M, 4h, 4w]
                                     long long* __restrict__ part_area,   // [M, blocks]
                                     double* __restrict__ part_sum,       // [M, blocks]
                                     int64_t h, int64_t w, scalar_t cut) {
  using namespace dynamic_masks_math;
  __shared__ long long s_area[kThreads];
  __shared__ double s_sum[kThreads];
  const int64_t m = blockIdx.y, H = 4 * h, W = 4 * w, pixels = H * W;
  const scalar_t* map = logits + m * h * w;
  long long area = 0;
  double sum = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pixels;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t y = i / W, x = i % W;
    const auto ty = bilinear::source<scalar_t>(y, h, static_cast<scalar_t>(0.25));
    const auto tx = bilinear::source<scalar_t>(x, w, static_cast<scalar_t>(0.25));
    const Pixel<scalar_t> px = classify(upsampled_logit(map, w, ty, tx), cut);
    masks[m * pixels + i] = px.on;
    area += px.on;
    sum += static_cast<double>(px.prob);
  }
  s_area[threadIdx.x] = area;
  s_sum[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      s_area[threadIdx.x] += s_area[threadIdx.x + stride];
      s_sum[threadIdx.x] += s_sum[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    part_area[m * gridDim.x + blockIdx.x] = s_area[0];
    part_sum[m * gridDim.x + blockIdx.x] = s_sum[0];
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_masks_cuda(const at::Tensor& features, const at::Tensor& kernels,
                                                                  double threshold) {
  const c10::cuda::CUDAGuard guard(features.device());
  const at::Tensor logits = dynamic_masks_logits(features, kernels);
  auto [masks, areas, quality] = dynamic_masks_allocate(features, kernels, logits);
  const int64_t M = logits.size(0), h = logits.size(1), w = logits.size(2);
  if (M == 0) {
    return {masks, areas, quality};
  }
  TORCH_CHECK(M <= 65535, "dynamic_masks: at most 65535 masks per call on CUDA, got ", M);
  // Enough blocks per map to fill the GPU with a few maps; each block's partial sums go
  // to a buffer reduced below, so the result does not depend on scheduling.
  const int64_t pixels = 16 * h * w;
  const int blocks = static_cast<int>(std::min<int64_t>((pixels + kThreads * 8 - 1) / (kThreads * 8), 64));
  at::Tensor part_area = at::empty({M, blocks}, logits.options().dtype(at::kLong));
  at::Tensor part_sum = at::empty({M, blocks}, logits.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "dynamic_masks_cuda", [&] {
    dynamic_masks_kernel<scalar_t><<<dim3(blocks, M), kThreads, 0, stream>>>(
        logits.const_data_ptr<scalar_t>(), masks.mutable_data_ptr<bool>(),
        reinterpret_cast<long long*>(part_area.mutable_data_ptr<int64_t>()), part_sum.mutable_data_ptr<double>(), h, w,
        static_cast<scalar_t>(dynamic_masks_math::cut_for(threshold)));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor total_area = part_area.sum(1);
  areas.copy_(total_area.view(areas.sizes()));
  // NB: 0 / 0 = NaN for an empty mask, as the official code.
  quality.copy_((part_sum.sum(1) / total_area.to(at::kDouble)).view(quality.sizes()));
  return {masks, areas, quality};
}

}  // namespace

TORCH_LIBRARY_IMPL(visolo_fast, CUDA, m) {
  m.impl("dynamic_masks", &dynamic_masks_cuda);
}

}  // namespace visolo_fast
