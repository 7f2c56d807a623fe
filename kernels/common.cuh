// Macros shared by the math headers in kernels/: they are compiled by nvcc for
// the CUDA kernels and by the host compiler for the CPU implementations in
// csrc/, so that the CPU tests exercise the same arithmetic the GPU runs.
// NB: up to rounding: nvcc contracts a * b + c into one FMA by default, the host
// compiler (baseline x86-64) does not, and expf differs by an ulp between them.
#pragma once

#if defined(__CUDACC__)
#define VF_HOST_DEVICE __host__ __device__
#else
#define VF_HOST_DEVICE
#endif

#define VF_INLINE VF_HOST_DEVICE inline

#include <cmath>

namespace visolo_fast {

// exp in the argument's precision, on the host and on the device.
VF_INLINE float exp_(float x) { return expf(x); }
VF_INLINE double exp_(double x) { return exp(x); }

template <typename acc_t>
VF_INLINE acc_t sigmoid(acc_t x) {
  return static_cast<acc_t>(1) / (static_cast<acc_t>(1) + exp_(-x));
}

}  // namespace visolo_fast
