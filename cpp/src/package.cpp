// Package: an AOTInductor package of the frame function, refused with one line unless it is a
// visolo_fast package of format 1 with every setting the tracker reads.

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include "visolo/tracker.h"

namespace visolo {

namespace {

constexpr const char* kFormat = "1";
constexpr const char* kModel = "model";  // the model's name inside the package
constexpr size_t kOutputs = 10;

// The first line of an exception's message: c10::Error adds a C++ backtrace.
std::string first_line(const std::exception& e) {
  std::string what = e.what();
  return what.substr(0, what.find('\n'));
}

// The package's metadata, read as the JSON values that python -m visolo_fast export writes
// for the config's fields: numbers, null, and arrays of numbers.
class Metadata {
 public:
  Metadata(std::string path, std::unordered_map<std::string, std::string> values)
      : path_(std::move(path)), values_(std::move(values)) {}

  const std::string& text(const std::string& key) const {
    const auto it = values_.find(key);
    if (it == values_.end()) {
      fail(key, "is missing: export the package again (python -m visolo_fast export)");
    }
    return it->second;
  }

  std::string field(const std::string& name) const { return text("visolo_fast.config." + name); }

  double number(const std::string& name) const { return parse_number(name, field(name)); }

  int64_t integer(const std::string& name) const { return to_integer(name, field(name), number(name)); }

  std::optional<int64_t> optional_integer(const std::string& name) const {
    const std::string value = trim(field(name));
    if (value == "null") {
      return std::nullopt;
    }
    return integer(name);
  }

  template <size_t N>
  std::array<double, N> numbers(const std::string& name) const {
    const std::string value = trim(field(name));
    std::array<double, N> out{};
    if (value.size() < 2 || value.front() != '[' || value.back() != ']') {
      fail("visolo_fast.config." + name, "must be a JSON array of " + std::to_string(N) + " numbers, got " + value);
    }
    std::stringstream items(value.substr(1, value.size() - 2));
    std::string item;
    size_t n = 0;
    while (std::getline(items, item, ',')) {
      if (n < N) {
        out[n] = parse_number(name, item);
      }
      ++n;
    }
    if (n != N) {
      fail("visolo_fast.config." + name, "must be a JSON array of " + std::to_string(N) + " numbers, got " + value);
    }
    return out;
  }

  template <size_t N>
  std::array<int64_t, N> integers(const std::string& name) const {
    std::array<int64_t, N> out{};
    const std::array<double, N> values = numbers<N>(name);
    for (size_t i = 0; i < N; ++i) {
      out[i] = to_integer(name, field(name), values[i]);
    }
    return out;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(path_ + ": not a usable visolo_fast package: metadata " + key + " " + what);
  }

 private:
  static std::string trim(const std::string& s) {
    const size_t begin = s.find_first_not_of(" \t\n\r"), end = s.find_last_not_of(" \t\n\r");
    return begin == std::string::npos ? "" : s.substr(begin, end - begin + 1);
  }

  // NB: strtod rounds correctly, as Python's float(): the same double as the config's value.
  double parse_number(const std::string& name, const std::string& text) const {
    const std::string value = trim(text);
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || errno == ERANGE || !std::isfinite(x)) {
      fail("visolo_fast.config." + name, "must be a JSON number, got " + value);
    }
    return x;
  }

  int64_t to_integer(const std::string& name, const std::string& text, double x) const {
    if (x != std::floor(x) || std::fabs(x) > 9007199254740992.0) {
      fail("visolo_fast.config." + name, "must be an integer, got " + trim(text));
    }
    return static_cast<int64_t>(x);
  }

  std::string path_;
  std::unordered_map<std::string, std::string> values_;
};

at::ScalarType dtype_named(const Metadata& meta, const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  meta.fail("visolo_fast.dtype", "must be float32, float16 or bfloat16, got " + name);
}

// A CPU package compiled for vector instructions this CPU lacks would stop at an illegal
// instruction at its first frame: refused, as in Python (engine/package.py _check_isa). The
// names are inductor's (its AOTI_CPU_ISA metadata).
void check_isa(const std::string& path, const std::unordered_map<std::string, std::string>& raw) {
#if defined(__x86_64__)
  const auto device = raw.find("AOTI_DEVICE_KEY"), isa = raw.find("AOTI_CPU_ISA");
  if (device == raw.end() || device->second != "cpu" || isa == raw.end()) {
    return;
  }
  // NB: AVX512 as ATen and inductor mean it: F, BW, VL and DQ.
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const std::unordered_map<std::string, bool> here{
      {"AVX2", __builtin_cpu_supports("avx2")},
      {"AVX512", avx512},
      {"AVX512_VNNI", avx512 && __builtin_cpu_supports("avx512vnni")},
      {"AVX512_BF16", avx512 && __builtin_cpu_supports("avx512bf16")},
      {"AMX_TILE", __builtin_cpu_supports("amx-tile")},
  };
  // The ISA inductor names, and AVX512_BF16, which it compiles for without naming it (the
  // exporter records it: engine/package.py).
  const auto extra = raw.find("visolo_fast.cpu_isa_extra");
  std::istringstream words(isa->second + " " + (extra == raw.end() ? "" : extra->second));
  std::string word, wanted, missing;
  while (words >> word) {
    wanted += (wanted.empty() ? "" : " ") + word;
    const auto known = here.find(word);
    if (known == here.end() || !known->second) {  // NB: a name this check does not know is not taken on trust
      missing += (missing.empty() ? "" : " ") + word;
    }
  }
  if (!missing.empty()) {
    throw std::runtime_error(path + ": compiled for " + wanted + ", and this CPU lacks " + missing +
                             ": export the package on a machine like this one");
  }
#else
  (void)path;
  (void)raw;
#endif
}

void check_format(const Metadata& meta) {
  if (meta.text("visolo_fast.format") != kFormat) {
    meta.fail("visolo_fast.format", "is '" + meta.text("visolo_fast.format") + "', this tracker reads format " +
                                        kFormat + ": export the package again (python -m visolo_fast export)");
  }
}

}  // namespace

void load_ops(const std::string& path) {
  // The library's static initialisers register the ops with the dispatcher; RTLD_GLOBAL so
  // that a package's kernels can resolve its symbols too.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    throw std::runtime_error("cannot load the visolo_fast ops library " + path + ": " + dlerror());
  }
  if (!ops_loaded()) {
    throw std::runtime_error(path + " loaded, but it registers no visolo_fast::resize_masks: not the visolo_fast ops library");
  }
}

bool ops_loaded() {
  return c10::Dispatcher::singleton().findSchema({"visolo_fast::resize_masks", ""}).has_value();
}

Package::Package(const std::string& path, int device_index) : path_(path), dtype_(at::kFloat), device_(at::kCPU) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error(path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error(path + ": not a file (a package is one .pt2 file)");
  }
  // NB: the format is checked first, from the package's metadata file, before its model loads:
  // a package of another format may call ops that this library does not register, and its
  // loading would fail with a less clear error.
  std::unordered_map<std::string, std::string> raw;
  try {
    raw = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, kModel);
  } catch (const c10::Error& e) {
    throw std::runtime_error(path + ": not an AOTInductor package of a model named '" + kModel + "' (" +
                             first_line(e) + ")");
  }
  check_format(Metadata(path, raw));
  check_isa(path, raw);
  if (!ops_loaded()) {
    throw std::runtime_error(path + ": the package calls the visolo_fast ops, which are not loaded: load "
                             "libvisolo_fast_ops first (visolo::load_ops, or link it with -Wl,--no-as-needed)");
  }
  try {
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, kModel, false, 1,
                                                                        static_cast<c10::DeviceIndex>(device_index));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": cannot load the package (" + first_line(e) + ")");
  }

  // The settings: the metadata compiled into the model (what Python's get_metadata() reads).
  const Metadata meta(path, loader_->get_metadata());
  check_format(meta);
  dtype_ = dtype_named(meta, meta.text("visolo_fast.dtype"));
  const std::string device = meta.text("visolo_fast.device");
  if (device == "cuda") {
    // NB: the ops library must have been built with its CUDA kernels (VISOLO_FAST_WITH_CUDA):
    // else the package's first call of an op would fail in the dispatcher, far from here.
    const auto op = c10::Dispatcher::singleton().findSchema({"visolo_fast::resize_masks", ""});
    if (!op || !op->hasKernelForDispatchKey(c10::DispatchKey::CUDA)) {
      meta.fail("visolo_fast.device", "is cuda, and the loaded visolo_fast ops have no CUDA kernels: load a "
                                      "libvisolo_fast_ops built with VISOLO_FAST_WITH_CUDA=ON");
    }
    device_ = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index));
  } else if (device != "cpu") {
    meta.fail("visolo_fast.device", "must be cpu or cuda, got " + device);
  }
  checkpoint_ = meta.text("visolo_fast.checkpoint");

  Config& c = config_;
  c.input_size = meta.integers<2>("input_size");
  c.pixel_mean = meta.numbers<3>("pixel_mean");
  c.pixel_std = meta.numbers<3>("pixel_std");
  c.grid = meta.integers<2>("grid");
  c.num_classes = meta.integer("num_classes");
  c.dim = meta.integer("dim");
  c.mask_thr = meta.number("mask_thr");
  c.tracking_thr = meta.number("tracking_thr");
  c.max_memory_frames = meta.optional_integer("max_memory_frames");
  c.max_lost_frames = meta.optional_integer("max_lost_frames");
  if (c.input_size[0] < 1 || c.input_size[1] < 1 || c.grid[0] < 1 || c.grid[1] < 1 || c.num_classes < 1 ||
      c.dim < 2 || c.dim % 2 || (c.max_memory_frames && *c.max_memory_frames < 3) ||
      (c.max_lost_frames && *c.max_lost_frames < 1)) {
    meta.fail("visolo_fast.config.*", "out of range (input_size, grid, num_classes, dim, max_memory_frames or "
                                      "max_lost_frames)");
  }
}

Package::~Package() = default;

namespace {
// float32 means IEEE float32 on a GPU too, as the Python engine runs its frames
// (engine/precision.py ieee_float32): cuDNN's convolutions default to TF32 on Ampere and later.
class IeeeFloat32 {
 public:
  explicit IeeeFloat32(bool on) : on_(on) {
    if (!on_) {
      return;
    }
    auto& ctx = at::globalContext();
    conv_ = ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV);
    matmul_ = ctx.float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, at::Float32Precision::IEEE);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, at::Float32Precision::IEEE);
  }
  ~IeeeFloat32() {
    if (on_) {
      auto& ctx = at::globalContext();
      ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, conv_);
      ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, matmul_);
    }
  }
  IeeeFloat32(const IeeeFloat32&) = delete;
  IeeeFloat32& operator=(const IeeeFloat32&) = delete;

 private:
  bool on_;
  at::Float32Precision conv_{}, matmul_{};
};
}  // namespace

FrameOutputs Package::run(const at::Tensor& images, const MemoryRead& read) {
  const IeeeFloat32 precision(device_.is_cuda());
  std::vector<at::Tensor> out =
      loader_->run({images, read.keys, read.values, read.lengths, read.source_keys, read.weighted});
  TORCH_CHECK(out.size() == kOutputs, path_, ": the package returned ", out.size(), " outputs, format ", kFormat,
              " has ", kOutputs);
  return FrameOutputs{out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8], out[9]};
}

}  // namespace visolo
