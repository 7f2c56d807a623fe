// Which vector paths the CPU implementations may take: what the CPU has, within the
// capability ATen itself runs at, so that ATEN_CPU_CAPABILITY=default (or avx2) selects
// the generic loops on an AVX-512 machine, as it does for ATen's own kernels (the tests
// use it to cover both paths).
#pragma once

#include <ATen/Version.h>

#include <string>

namespace visolo_fast {

#if defined(__x86_64__) && defined(__GNUC__)
#define VF_X86_64 1

// AVX-512 F (and, if asked, VPOPCNTDQ) may be used. Evaluated once per process.
inline bool cpu_avx512(bool vpopcntdq = false) {
  static const bool avx512 = at::get_cpu_capability() == "AVX512" && __builtin_cpu_supports("avx512f");
  static const bool popcnt = __builtin_cpu_supports("avx512vpopcntdq");
  return avx512 && (!vpopcntdq || popcnt);
}

// AVX2 may be used (ATen at AVX2 or above). Evaluated once per process.
inline bool cpu_avx2() {
  static const bool avx2 = at::get_cpu_capability() != "DEFAULT" && __builtin_cpu_supports("avx2");
  return avx2;
}
#endif

}  // namespace visolo_fast
