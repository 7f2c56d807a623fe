// Large CPU outputs (a dense frame's masks: 252 x 352 x 624 bools, 55 MB) are fresh memory
// from mmap on every call, and first touching them costs a page fault per 4 KiB: 44 of
// the 49 ms of filling 55 MB on one thread here. Transparent huge pages (2 MiB) cut that
// to 11 ms; most Linux systems give them to regions that ask (`madvise` mode), as PyTorch's
// own allocator does under THP_MEM_ALLOC_ENABLE=1. A hint: nothing changes where unsupported.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace visolo_fast {

// Asks for huge pages for the 2 MiB-aligned part of a CPU tensor's memory, before it is first written.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t huge = uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t from = (begin + huge - 1) & ~(huge - 1), to = (begin + t.nbytes()) & ~(huge - 1);
  if (t.device().is_cpu() && to > from) {
    madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);  // NB: a hint; its failure changes nothing
  }
#else
  (void)t;
#endif
}

}  // namespace visolo_fast
