// visolo_fast::parallel_threads_seen: how many threads the ops' CPU loops have used (see
// csrc/parallel.h); for the test that the extension's loops run in parallel.

#include <torch/library.h>

#include "csrc/parallel.h"

namespace visolo_fast {

// The threads seen since the last call (1 + the highest thread number; 0 if no loop ran), and a reset.
int64_t parallel_threads_seen() {
  return threads_seen().exchange(0);
}

TORCH_LIBRARY_FRAGMENT(visolo_fast, m) {
  m.def("parallel_threads_seen() -> int", &parallel_threads_seen);
}

}  // namespace visolo_fast
