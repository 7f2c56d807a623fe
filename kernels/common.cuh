// Macros shared by the math headers in kernels/: they are compiled by nvcc for
// the CUDA kernels and by the host compiler for the CPU implementations in
// csrc/, so that the CPU tests exercise the same arithmetic the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define VF_HOST_DEVICE __host__ __device__
#else
#define VF_HOST_DEVICE
#endif

#define VF_INLINE VF_HOST_DEVICE inline
