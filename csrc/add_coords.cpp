// visolo_fast::add_coords: schema, input checks and the CPU implementation.
//
// add_coords(x) appends two channels to a feature map, the row coordinate and
// then the column coordinate, each linspace(-1, 1) over the map's height and
// width (VISOLO's addCoord, used before the kernel and mask branches).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <torch/library.h>

#include "csrc/add_coords.h"
#include "kernels/add_coords.cuh"

namespace visolo_fast {

at::Tensor add_coords_check_and_allocate(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "add_coords: x must be [B, C, H, W], got a tensor of shape ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "add_coords: x must be float64, float32, float16 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.size(2) > 0 && x.size(3) > 0, "add_coords: x must have H >= 1 and W >= 1, got ", x.sizes());
  return at::empty({x.size(0), x.size(1) + 2, x.size(2), x.size(3)}, x.options().memory_format(at::MemoryFormat::Contiguous));
}

namespace {

at::Tensor add_coords_cpu(const at::Tensor& x) {
  at::Tensor out = add_coords_check_and_allocate(x);
  const at::Tensor xc = x.contiguous();
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t plane = H * W;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "add_coords_cpu", [&] {
    const scalar_t* x_ptr = xc.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    // One image per task: its C channels are one contiguous block in x and in out, so
    // they are copied as a block; the two coordinate planes follow (same math as the
    // CUDA kernel's output_element, which decodes every index instead).
    at::parallel_for(0, x.size(0), 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        scalar_t* dst = out_ptr + b * (C + 2) * plane;
        std::copy(x_ptr + b * C * plane, x_ptr + (b + 1) * C * plane, dst);
        scalar_t* ys = dst + C * plane;
        scalar_t* xs = ys + plane;
        for (int64_t h = 0; h < H; ++h) {
          const scalar_t y = add_coords_math::to_output<scalar_t>(add_coords_math::coord(h, H));
          for (int64_t w = 0; w < W; ++w) {
            ys[h * W + w] = y;
            xs[h * W + w] = add_coords_math::to_output<scalar_t>(add_coords_math::coord(w, W));
          }
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("add_coords(Tensor x) -> Tensor");
}

TORCH_LIBRARY_IMPL(visolo_fast, CPU, m) {
  m.impl("add_coords", &add_coords_cpu);
}

}  // namespace visolo_fast
