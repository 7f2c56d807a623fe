// Loads libvisolo_fast_ops at run time (dlopen, as a C++ plugin user would; the
// test links libtorch only), then calls visolo_fast::mask_intersections through the
// dispatcher on CPU tensors and compares it with a plain product of the 0/1 masks.
//
// Usage: test_mask_intersections [path/to/libvisolo_fast_ops.so]
// (default: VISOLO_FAST_OPS_PATH, the library CMake built next to it).

#include <dlfcn.h>

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

// |M_i & M_j| by a float64 product of the 0/1 masks (exact here).
at::Tensor plain_intersections(const at::Tensor& masks) {
  const at::Tensor flat = masks.flatten(1).to(at::kDouble);
  return at::mm(flat, flat.t()).to(at::kLong);
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
    const c10::OperatorHandle handle =
        c10::Dispatcher::singleton().findSchemaOrThrow("visolo_fast::mask_intersections", "");
    check(handle.hasKernelForDispatchKey(c10::DispatchKey::CPU), "mask_intersections has a CPU kernel");
    // Tells whether kernels/*.cu made it into the library (no GPU needed for that).
    check(handle.hasKernelForDispatchKey(c10::DispatchKey::CUDA) == bool(VISOLO_FAST_EXPECT_CUDA),
          std::string("mask_intersections has a CUDA kernel: ") + (VISOLO_FAST_EXPECT_CUDA ? "expected" : "not expected"));
    const auto op = handle.typed<at::Tensor(const at::Tensor&)>();

    // 7 masks of 13 x 71 = 923 pixels: more than 64 (several packed words, a partial last
    // one), a mask with no pixel and a full one.
    at::manual_seed(0);
    at::Tensor masks = at::rand({7, 13, 71}) > 0.5;
    masks[2].fill_(false);
    masks[5].fill_(true);
    const at::Tensor inter = op.call(masks);
    check(inter.sizes() == at::IntArrayRef({7, 7}), "output shape [7, 7]");
    check(inter.scalar_type() == at::kLong, "output dtype int64");
    check(inter.sizes() == at::IntArrayRef({7, 7}) && at::equal(inter, plain_intersections(masks)),
          "equals the product of the 0/1 masks");
    const at::Tensor strided = masks.transpose(1, 2);  // not contiguous
    check(at::equal(op.call(strided), plain_intersections(strided)), "a non-contiguous input");
    check(op.call(masks.slice(0, 0, 0)).sizes() == at::IntArrayRef({0, 0}), "K = 0 gives [0, 0]");

    std::string message = "(nothing thrown)";
    try {
      op.call(at::zeros({3, 5, 7}));
    } catch (const c10::Error& e) {
      message = e.what_without_backtrace();
    }
    const bool threw = message.find("masks must be a bool [K, H, W]") != std::string::npos;
    check(threw, "a float input throws c10::Error (\"masks must be a bool [K, H, W]\")");
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
