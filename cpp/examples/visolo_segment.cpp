// visolo_segment: segments and tracks the instances of a video with a visolo_fast package,
// without Python, and writes its YouTube-VIS results.json (as python -m visolo_fast segment).
//
//   visolo_segment PACKAGE INPUT --out DIR [--ops LIB] [--output-size HxW] [--max-lost-frames N|none]
//                  [--max-memory-frames N] [--tracking-thr X] [--timings CSV]   (one row per frame: where its time went, visolo::StepTimes)
//
// PACKAGE: python -m visolo_fast export --out visolo.pt2. INPUT: a folder of frames (binary
// PPM, P6, read here; JPEG and PNG too where OpenCV's C++ library was found at build time), in
// natural order (frame2 before frame10), or a video file (with OpenCV). LIB: the visolo_fast
// ops library (default: libvisolo_fast_ops.so beside this program).
//
// A wrong argument stops the program before any frame runs, with one line naming it and exit
// status 2; a frame that cannot be read midway, with exit status 1 and nothing written (an --out
// folder it made is removed again).

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "visolo/tracker.h"
#include "visolo/ytvis.h"

#ifdef VISOLO_WITH_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#endif

namespace fs = std::filesystem;

namespace {

// A wrong argument: the message names it.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kUsage =
    "usage: visolo_segment PACKAGE INPUT --out DIR [--ops LIB] [--output-size HxW] [--max-lost-frames N|none]"
    " [--max-memory-frames N] [--tracking-thr X] [--timings CSV]";

struct Args {
  std::string package, input, out, ops, timings;
  std::optional<std::array<int64_t, 2>> output_size;
  int64_t max_lost_frames = visolo::TrackerOptions::kFromPackage;
  std::optional<int64_t> max_memory_frames;
  std::optional<double> tracking_thr;
};

int64_t positive(const std::string& option, const std::string& text) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 1) {
    throw UsageError(option + ": expected a positive integer, got '" + text + "'");
  }
  return value;
}

Args parse(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        throw UsageError(arg + ": expected a value after it");
      }
      return argv[++i];
    };
    if (arg == "--out") {
      args.out = value();
    } else if (arg == "--ops") {
      args.ops = value();
    } else if (arg == "--timings") {
      args.timings = value();
    } else if (arg == "--output-size") {
      const std::string size = value();
      const size_t x = size.find('x');
      if (x == std::string::npos) {
        throw UsageError("--output-size: expected HxW (e.g. 720x1280), got '" + size + "'");
      }
      args.output_size = {{positive("--output-size", size.substr(0, x)), positive("--output-size", size.substr(x + 1))}};
    } else if (arg == "--max-memory-frames") {
      args.max_memory_frames = positive("--max-memory-frames", value());
    } else if (arg == "--tracking-thr") {
      const std::string x = value();
      size_t used = 0;
      double thr = 0;
      try {
        thr = std::stod(x, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != x.size() || !std::isfinite(thr)) {
        throw UsageError("--tracking-thr: expected a number, got '" + x + "'");
      }
      args.tracking_thr = thr;
    } else if (arg == "--max-lost-frames") {
      const std::string n = value();
      args.max_lost_frames = n == "none" ? visolo::TrackerOptions::kUnbounded : positive("--max-lost-frames", n);
    } else if (arg == "-h" || arg == "--help") {
      std::cout << kUsage << std::endl;
      std::exit(0);
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw UsageError(arg + ": unknown option");
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) {
    throw UsageError(std::string(positional.size() < 2 ? "PACKAGE and INPUT are required" : "too many arguments: ") +
                     (positional.size() > 2 ? positional[2] : ""));
  }
  args.package = positional[0];
  args.input = positional[1];
  if (args.out.empty()) {
    throw UsageError("--out: required: the folder results.json goes to");
  }
  return args;
}

// The ops library beside this program: where CMake builds both.
std::string default_ops() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? "libvisolo_fast_ops.so" : (self.parent_path() / "libvisolo_fast_ops.so").string();
}

// "frame2" before "frame10", as the Python CLI sorts a folder: each name split into text and
// digit runs, texts compared lowercased, digit runs by value, a shorter list of runs first.
struct NaturalKey {
  std::vector<std::string> texts;  // texts[i] comes before numbers[i]
  std::vector<std::string> numbers;  // digit runs without their leading zeros
};

NaturalKey natural_key(const std::string& name) {
  NaturalKey key;
  std::string text;
  size_t i = 0;
  while (i < name.size()) {
    const auto digit = [&](size_t k) { return std::isdigit(static_cast<unsigned char>(name[k])) != 0; };
    if (!digit(i)) {
      text.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(name[i++]))));
      continue;
    }
    size_t end = i;
    while (end < name.size() && digit(end)) ++end;
    std::string number = name.substr(i, end - i);
    number.erase(0, std::min(number.find_first_not_of('0'), number.size() - 1));
    key.texts.push_back(text);
    key.numbers.push_back(number);
    text.clear();
    i = end;
  }
  key.texts.push_back(text);  // the text after the last digit run (maybe empty), as re.split gives
  return key;
}

bool natural_less(const std::string& a, const std::string& b) {
  const NaturalKey x = natural_key(a), y = natural_key(b);
  for (size_t i = 0; i < std::min(x.texts.size(), y.texts.size()); ++i) {
    if (x.texts[i] != y.texts[i]) return x.texts[i] < y.texts[i];
    if (i < x.numbers.size() && i < y.numbers.size() && x.numbers[i] != y.numbers[i]) {
      const std::string &m = x.numbers[i], &n = y.numbers[i];
      return m.size() != n.size() ? m.size() < n.size() : m < n;
    }
  }
  if (x.texts.size() != y.texts.size()) return x.texts.size() < y.texts.size();
  return a < b;  // equal keys (frame01, frame1): any fixed order
}

std::string lower_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// The largest side of a PPM frame read: a header's size is checked against it before anything
// is computed from it (height * width * 3 of a 2^32-sided header overflows), and a frame
// larger than this is a damaged header, not a video frame.
constexpr int64_t kMaxPpmSide = 1 << 16;

// A binary PPM (P6, 8-bit): its header, then its pixels, RGB.
struct Ppm {
  int64_t height = 0, width = 0;
  std::streamoff data = 0;  // where the pixels start
};

Ppm read_ppm_header(const fs::path& path, std::ifstream& in) {
  const std::string name = path.string();
  auto token = [&]() {
    std::string t;
    int c;
    while ((c = in.get()) != EOF) {
      if (c == '#') {
        while ((c = in.get()) != EOF && c != '\n') {
        }
      } else if (std::isspace(c)) {
        if (!t.empty()) break;
      } else {
        t.push_back(static_cast<char>(c));
      }
    }
    return t;
  };
  if (token() != "P6") {
    throw std::runtime_error(name + ": not a binary PPM (P6) file");
  }
  Ppm ppm;
  try {
    ppm.width = std::stoll(token());
    ppm.height = std::stoll(token());
    if (std::stoll(token()) != 255) {
      throw std::runtime_error("");
    }
  } catch (const std::exception&) {
    throw std::runtime_error(name + ": a PPM frame must have 8-bit channels (maxval 255) and a positive size");
  }
  if (ppm.width < 1 || ppm.height < 1) {
    throw std::runtime_error(name + ": a PPM frame must have a positive size");
  }
  if (ppm.width > kMaxPpmSide || ppm.height > kMaxPpmSide) {
    throw std::runtime_error(name + ": its header says " + std::to_string(ppm.width) + " x " +
                             std::to_string(ppm.height) + ", and a PPM frame's sides must be at most " +
                             std::to_string(kMaxPpmSide));
  }
  ppm.data = in.tellg();  // one whitespace character after maxval, consumed by token()
  return ppm;
}

// The frames of an input, one at a time.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  virtual std::optional<at::Tensor> next() = 0;  // uint8 [H, W, 3] RGB; nullopt at the end
  virtual std::string name(int64_t index) const = 0;  // for messages
};

// A folder of frames, every one checked when the folder is opened (its header, its size and
// its length), as the Python CLI does, so that a bad frame is refused before the first runs.
class FolderSource : public FrameSource {
 public:
  explicit FolderSource(const fs::path& folder) {
#ifdef VISOLO_WITH_OPENCV
    const std::vector<std::string> extensions{".ppm", ".jpg", ".jpeg", ".png"};
#else
    const std::vector<std::string> extensions{".ppm"};
#endif
    std::vector<std::string> names;
    for (const fs::directory_entry& entry : fs::directory_iterator(folder)) {
      const std::string ext = lower_extension(entry.path());
      if (entry.is_regular_file() && std::find(extensions.begin(), extensions.end(), ext) != extensions.end()) {
        names.push_back(entry.path().filename().string());
      }
    }
    std::sort(names.begin(), names.end(), natural_less);
    for (const std::string& name : names) {
      files_.push_back(folder / name);
    }
    if (files_.empty()) {
#ifdef VISOLO_WITH_OPENCV
      throw UsageError("INPUT: no frames (.ppm, .jpg, .jpeg, .png) in " + folder.string());
#else
      throw UsageError("INPUT: no .ppm frames in " + folder.string() +
                       " (JPEG and PNG frames need OpenCV's C++ library, not found when visolo_segment was built)");
#endif
    }
    std::optional<std::array<int64_t, 2>> size;
    for (const fs::path& file : files_) {
      std::array<int64_t, 2> frame_size{};
      if (lower_extension(file) == ".ppm") {
        std::ifstream in(file, std::ios::binary);
        const Ppm ppm = read_ppm_header(file, in);
        const uintmax_t expected = static_cast<uintmax_t>(ppm.data) + static_cast<uintmax_t>(ppm.height) * ppm.width * 3;
        if (fs::file_size(file) < expected) {
          throw UsageError("INPUT: " + file.string() + " is cut short: " + std::to_string(fs::file_size(file)) +
                           " bytes, its header says " + std::to_string(expected));
        }
        frame_size = {ppm.height, ppm.width};
      } else {
        const at::Tensor image = decode(file).value();
        frame_size = {image.size(0), image.size(1)};
      }
      if (size && *size != frame_size) {
        throw UsageError("INPUT: " + file.string() + " is " + std::to_string(frame_size[0]) + " x " +
                         std::to_string(frame_size[1]) + ", " + files_[0].string() + " is " +
                         std::to_string((*size)[0]) + " x " + std::to_string((*size)[1]) +
                         ": every frame of a video has the same size");
      }
      size = frame_size;
    }
  }

  std::optional<at::Tensor> next() override {
    if (next_ >= files_.size()) {
      return std::nullopt;
    }
    return decode(files_[next_++]);
  }

  std::string name(int64_t index) const override { return files_.at(index).string(); }

 private:
  static std::optional<at::Tensor> decode(const fs::path& file) {
    if (lower_extension(file) == ".ppm") {
      std::ifstream in(file, std::ios::binary);
      const Ppm ppm = read_ppm_header(file, in);
      at::Tensor frame = at::empty({ppm.height, ppm.width, 3}, at::kByte);
      in.read(reinterpret_cast<char*>(frame.mutable_data_ptr<uint8_t>()), frame.numel());
      if (in.gcount() != frame.numel()) {
        throw std::runtime_error(file.string() + ": cut short");
      }
      return frame;
    }
#ifdef VISOLO_WITH_OPENCV
    const cv::Mat image = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
    if (image.empty()) {
      throw std::runtime_error(file.string() + ": cannot be decoded");
    }
    return to_rgb(image, file.string());
#else
    throw std::runtime_error(file.string() + ": only PPM frames can be read without OpenCV");
#endif
  }

 public:
#ifdef VISOLO_WITH_OPENCV
  // An OpenCV image (gray, BGR or BGRA, 8-bit) as uint8 [H, W, 3] RGB.
  static at::Tensor to_rgb(const cv::Mat& image, const std::string& name) {
    if (image.depth() != CV_8U) {
      throw std::runtime_error(name + ": frames must have 8-bit channels");
    }
    cv::Mat rgb;
    const int channels = image.channels();
    cv::cvtColor(image, rgb, channels == 1 ? cv::COLOR_GRAY2RGB : channels == 4 ? cv::COLOR_BGRA2RGB : cv::COLOR_BGR2RGB);
    return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, {static_cast<int64_t>(rgb.step), 3, 1}, at::kByte).clone();
  }
#endif

 private:
  std::vector<fs::path> files_;
  size_t next_ = 0;
};

#ifdef VISOLO_WITH_OPENCV
// A video file, decoded by OpenCV.
class VideoSource : public FrameSource {
 public:
  explicit VideoSource(const std::string& path) : capture_(path), path_(path) {
    if (!capture_.isOpened()) {
      throw UsageError("INPUT: cannot open " + path + " as a video");
    }
  }

  std::optional<at::Tensor> next() override {
    cv::Mat frame;
    if (!capture_.read(frame)) {
      return std::nullopt;
    }
    return FolderSource::to_rgb(frame, path_);
  }

  std::string name(int64_t index) const override { return path_ + " frame " + std::to_string(index); }

 private:
  cv::VideoCapture capture_;
  std::string path_;
};
#endif

std::unique_ptr<FrameSource> open_input(const std::string& input) {
  std::error_code error;
  const fs::file_status status = fs::status(input, error);
  if (!fs::exists(status)) {
    throw UsageError("INPUT: " + input + ": no such file or folder");
  }
  if (fs::is_directory(status)) {
    return std::make_unique<FolderSource>(input);
  }
#ifdef VISOLO_WITH_OPENCV
  return std::make_unique<VideoSource>(input);
#else
  throw UsageError("INPUT: " + input + " is not a folder of frames; video files need OpenCV's C++ library, not found "
                   "when visolo_segment was built");
#endif
}

// The folders make_out made, deepest first: a run that stops before results.json is written
// removes those still empty on its way out (as the Python CLI), unless keep() was called.
class MadeFolders {
 public:
  MadeFolders() = default;
  MadeFolders(const MadeFolders&) = delete;
  MadeFolders& operator=(const MadeFolders&) = delete;
  ~MadeFolders() {
    if (kept_) return;
    for (const fs::path& folder : made_) {
      std::error_code error;
      if (!fs::remove(folder, error)) break;  // NB: fails on a folder that is not empty: it and those above stay
    }
  }
  void add(const fs::path& folder) { made_.push_back(folder); }
  void keep() { kept_ = true; }

 private:
  std::vector<fs::path> made_;
  bool kept_ = false;
};

void make_out(const std::string& out, MadeFolders& made) {
  std::error_code error;
  if (fs::exists(out, error) && !fs::is_directory(out, error)) {
    throw UsageError("--out: " + out + " is a file; give a folder");
  }
  // As Python's os.path.abspath: "out/" and "a/../out" name the folder out.
  fs::path folder = fs::absolute(out, error).lexically_normal();
  if (!folder.has_filename()) folder = folder.parent_path();
  for (; !error && !fs::exists(folder, error); folder = folder.parent_path()) {
    made.add(folder);
  }
  fs::create_directories(out, error);
  if (error) {
    throw UsageError("--out: cannot make " + out + ": " + error.message());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::unique_ptr<visolo::Tracker> tracker;
  std::unique_ptr<FrameSource> source;
  MadeFolders made;  // every return before results.json is written removes them (its destructor)
  try {
    args = parse(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n" << kUsage << std::endl;
    return 2;
  }
  try {
    try {
      visolo::load_ops(args.ops.empty() ? default_ops() : args.ops);
    } catch (const std::exception& e) {
      throw UsageError(std::string("--ops: ") + e.what() + (args.ops.empty() ? "; pass --ops LIB" : ""));
    }
    visolo::TrackerOptions options;
    options.output_size = args.output_size;
    options.max_lost_frames = args.max_lost_frames;
    options.max_memory_frames = args.max_memory_frames;
    options.tracking_thr = args.tracking_thr;
    try {
      tracker = std::make_unique<visolo::Tracker>(args.package, options);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());  // an option out of range for this package (it names the option)
    } catch (const std::exception& e) {
      throw UsageError(std::string("PACKAGE: ") + e.what());
    }
    source = open_input(args.input);
    make_out(args.out, made);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: INPUT: " << e.what() << std::endl;
    return 2;
  }

  std::ofstream timings;
  if (!args.timings.empty()) {
    timings.open(args.timings, std::ios::trunc);
    if (!(timings << "frame,prepare_ms,network_ms,finish_ms\n")) {
      std::cerr << "error: --timings: cannot write " << args.timings << std::endl;
      return 2;
    }
  }
  visolo::ResultsRecorder recorder;
  const auto start = std::chrono::steady_clock::now();
  int64_t index = 0;
  try {
    while (std::optional<at::Tensor> frame = source->next()) {
      recorder.add(tracker->step(*frame));
      if (timings.is_open()) {
        const visolo::StepTimes& t = tracker->last_step_times();
        timings << index << ',' << t.prepare_ms << ',' << t.network_ms << ',' << t.finish_ms << '\n';
      }
      ++index;
    }
  } catch (const std::exception& e) {
    // NB: the first line: a c10::Error's message goes on with a C++ backtrace.
    const std::string what = e.what();
    std::cerr << "error: " << source->name(index) << ": " << what.substr(0, what.find('\n'))
              << " (results.json not written)" << std::endl;
    return 1;
  }
  if (index == 0) {
    std::cerr << "error: INPUT: " << args.input << " has no frames" << std::endl;
    return 2;
  }
  const fs::path results = fs::path(args.out) / "results.json";
  {
    std::ofstream out(results, std::ios::binary | std::ios::trunc);
    recorder.write_json(out, tracker->track_categories(), "1");  // video_id 1, as the Python CLI
    if (!out.flush()) {
      std::cerr << "error: --out: cannot write " << results.string() << std::endl;
      return 1;
    }
  }
  made.keep();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "visolo_segment: " << index << " frames, " << tracker->num_tracks() << " tracks, "
            << index / std::max(seconds, 1e-9) << " fps -> " << results.string() << std::endl;
  return 0;
}
