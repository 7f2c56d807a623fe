// The ops' parallel loops. at::parallel_for runs a loop on ATen's OpenMP threads only in
// code compiled with -fopenmp (setup.py and CMakeLists.txt pass it): without it the
// header's `#pragma omp parallel` is ignored and every loop runs on the calling thread.
// visolo_fast::parallel_for is at::parallel_for that also notes the highest thread it
// ran on, so that a test can tell an op's loop was split (parallel_threads_seen).
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace visolo_fast {

// 1 + the highest at::get_thread_num() that ran a chunk of an op's loop since the last reset.
inline std::atomic<int64_t>& threads_seen() {
  static std::atomic<int64_t> seen{0};
  return seen;
}

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain_size, const F& f) {
  at::parallel_for(begin, end, grain_size, [&](int64_t b, int64_t e) {
    const int64_t thread = at::get_thread_num() + 1;
    int64_t seen = threads_seen().load(std::memory_order_relaxed);
    while (thread > seen && !threads_seen().compare_exchange_weak(seen, thread, std::memory_order_relaxed)) {
    }
    f(b, e);
  });
}

}  // namespace visolo_fast
