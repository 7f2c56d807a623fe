// Loads libvisolo_fast_ops at run time (dlopen, as a C++ plugin user would; the
// test links libtorch only), then calls visolo_fast::add_coords through the
// dispatcher on a CPU tensor.
//
// Usage: test_add_coords [path/to/libvisolo_fast_ops.so]
// (default: VISOLO_FAST_OPS_PATH, the library CMake built next to it).

#include <dlfcn.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#ifndef VISOLO_FAST_OPS_PATH
#define VISOLO_FAST_OPS_PATH ""
#endif
#ifndef VISOLO_FAST_EXPECT_CUDA
#define VISOLO_FAST_EXPECT_CUDA 0
#endif

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::cout << (ok ? "ok    " : "FAIL  ") << what << std::endl;
  if (!ok) {
    ++failures;
  }
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : VISOLO_FAST_OPS_PATH;
  if (path.empty()) {
    std::cerr << "usage: " << argv[0] << " path/to/libvisolo_fast_ops.so" << std::endl;
    return 2;
  }
  // The library's static initialisers register the op with the dispatcher.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL) == nullptr) {
    std::cerr << "FAIL  dlopen(" << path << "): " << dlerror() << std::endl;
    return 1;
  }

  try {
    const c10::OperatorHandle handle = c10::Dispatcher::singleton().findSchemaOrThrow("visolo_fast::add_coords", "");
    check(handle.hasKernelForDispatchKey(c10::DispatchKey::CPU), "add_coords has a CPU kernel");
    // Tells whether kernels/*.cu made it into the library (no GPU needed for that).
    check(handle.hasKernelForDispatchKey(c10::DispatchKey::CUDA) == bool(VISOLO_FAST_EXPECT_CUDA),
          std::string("add_coords has a CUDA kernel: ") + (VISOLO_FAST_EXPECT_CUDA ? "expected" : "not expected"));
    const auto op = handle.typed<at::Tensor(const at::Tensor&)>();

    const at::Tensor x = at::randn({2, 3, 5, 7}, at::kFloat);
    const at::Tensor out = op.call(x);
    check(out.sizes() == at::IntArrayRef({2, 5, 5, 7}), "output shape [2, 5, 5, 7]");
    check(out.scalar_type() == at::kFloat, "output dtype float32");
    if (out.sizes() == at::IntArrayRef({2, 5, 5, 7})) {
      check(at::equal(out.slice(1, 0, 3), x), "channels 0..2 equal the input");
      const at::Tensor rows = at::linspace(-1, 1, 5, at::kDouble).view({1, 5, 1}).expand({2, 5, 7});
      const at::Tensor cols = at::linspace(-1, 1, 7, at::kDouble).view({1, 1, 7}).expand({2, 5, 7});
      check(max_abs_diff(out.select(1, 3), rows) <= 1e-6, "channel 3 is linspace(-1, 1, 5) along the rows");
      check(max_abs_diff(out.select(1, 4), cols) <= 1e-6, "channel 4 is linspace(-1, 1, 7) along the columns");
    }

    std::string message = "(nothing thrown)";
    try {
      op.call(at::zeros({3, 5, 7}));
    } catch (const c10::Error& e) {
      message = e.what_without_backtrace();
    }
    const bool threw = message.find("[B, C, H, W]") != std::string::npos;
    check(threw, "a 3-D input throws c10::Error (\"x must be [B, C, H, W]\")");
    if (!threw) {
      std::cout << "      got: " << message << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "FAIL  unexpected exception: " << e.what() << std::endl;
    return 1;
  }

  if (failures != 0) {
    std::cerr << failures << " check(s) failed" << std::endl;
    return 1;
  }
  std::cout << "all checks passed" << std::endl;
  return 0;
}
