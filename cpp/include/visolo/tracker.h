// visolo::Tracker: online video instance segmentation in C++, from an AOTInductor package of
// the network's frame function (python -m visolo_fast export), without Python.
//
// The package runs a frame's device work: network, memory read, grid weight, instance
// extraction (spec sections 2, 4, 5). The tracker owns what a stream keeps between frames and
// decides on the host, with the rules of visolo_fast/engine/tracker.py: the memory policy
// (section 3), the association with the previous frame and the candidates (section 6), the
// tracks' categories and the masks at the output size (section 7).
//
//   visolo::load_ops("build-cmake/libvisolo_fast_ops.so");  // a path; or link it with -Wl,--no-as-needed
//   visolo::Tracker tracker("visolo.pt2");
//   for (const at::Tensor& frame : frames) {     // uint8 [H, W, 3] RGB, CPU
//     visolo::FrameResult r = tracker.step(frame);
//   }
//   auto [scores, labels] = tracker.track_categories();
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace visolo {

// The fields of the package's VisoloConfig that the tracker reads (metadata
// visolo_fast.config.<field>).
struct Config {
  std::array<int64_t, 2> input_size{};  // (H, W): every frame is resized to exactly this
  std::array<double, 3> pixel_mean{}, pixel_std{};  // RGB, 0..255
  std::array<int64_t, 2> grid{};  // S1 x S2
  int64_t num_classes = 0;  // C
  int64_t dim = 0;  // head width: keys have dim / 2 channels, values 2 dim
  double mask_thr = 0;  // also the threshold of the final mask resize
  double tracking_thr = 0;  // association threshold
  // nullopt: the official rules (the memory and the candidates grow with the stream).
  std::optional<int64_t> max_memory_frames, max_lost_frames;

  int64_t num_grids() const { return grid[0] * grid[1]; }  // S
};

// Loads the ops library (libvisolo_fast_ops) into the process: a package calls the
// visolo_fast:: ops through the dispatcher, which must know them before the package loads.
// Throws std::runtime_error with dlopen's reason. A path with a '/' is opened as it is; dlopen
// looks a bare file name up in LD_LIBRARY_PATH and the system's folders, not the current one.
void load_ops(const std::string& path);

// Whether the visolo_fast:: ops are registered in this process.
bool ops_loaded();

// A frame of one stream, as the package reads it (engine/frame.py MemoryRead, batch of one).
struct MemoryRead {
  at::Tensor keys;  // [1, T * S, D]: the stored frames' keys, oldest first; T >= 1
  at::Tensor values;  // [1, T * S, 2 dim]
  at::Tensor lengths;  // int64 [1]: stored frames * S; 0 on the first frame (which reads itself)
  at::Tensor source_keys;  // [1, 2, S, D]: the keys of the grid weight's two sources
  at::Tensor weighted;  // bool [1]: false on the first frame (no grid weight)
};

// What the package returns for a frame (engine/instances.py InstanceSlots): the first
// `count` slots are the frame's instances, best first.
struct FrameOutputs {
  at::Tensor keys;  // [1, S, D]: this frame's memory keys (also the association's columns)
  at::Tensor values;  // [1, S, 2 dim]: this frame's memory values
  at::Tensor query;  // [1, S, D]: the grids' tracking queries (the association's rows)
  at::Tensor masks;  // bool [M, h, w]: every candidate's mask at the input size
  at::Tensor index;  // int64 [Q]: each slot's mask
  at::Tensor labels;  // int64 [Q], 0-based
  at::Tensor scores;  // float32 [Q]
  at::Tensor score_vecs;  // [Q, C]: the un-weighted category scores of each slot's grid
  at::Tensor grids;  // int64 [Q]
  at::Tensor count;  // int64 []: K <= Q, on the device
};

// An AOTInductor package of the frame function and the settings it was exported with.
// Trackers may share one (the package holds the weights once); it runs one frame at a time.
class Package {
 public:
  // Throws std::runtime_error (one line, naming the file) for a file that is not a
  // visolo_fast package of format 1, and when the visolo_fast ops are not loaded.
  // device_index: the GPU of a CUDA package (-1: the current one).
  explicit Package(const std::string& path, int device_index = -1);
  ~Package();
  Package(const Package&) = delete;
  Package& operator=(const Package&) = delete;

  const std::string& path() const { return path_; }
  const Config& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }  // of the memory keys and values
  at::Device device() const { return device_; }
  const std::string& checkpoint() const { return checkpoint_; }

  // One frame: images float32 [1, 3, H, W] (normalised), its memory read.
  FrameOutputs run(const at::Tensor& images, const MemoryRead& read);

 private:
  std::string path_, checkpoint_;
  Config config_;
  at::ScalarType dtype_;
  at::Device device_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

// Options of a tracker; the rest of its settings are the package's.
struct TrackerOptions {
  // (height, width) of the output masks; default: each frame's own size.
  std::optional<std::array<int64_t, 2>> output_size;
  // How long a lost track stays a candidate for re-identification: kFromPackage (the
  // package's max_lost_frames), kUnbounded (the official rule) or N >= 1 (VisoloConfig).
  static constexpr int64_t kFromPackage = -1, kUnbounded = 0;
  int64_t max_lost_frames = kFromPackage;
  // The association threshold, in [0, 1] (as VisoloConfig); default: the package's tracking_thr.
  std::optional<double> tracking_thr;
  // The memory's cap, N >= 3 and at most the package's cap (the package reads no longer
  // memory); default: the package's max_memory_frames. As engine/package.py allows.
  std::optional<int64_t> max_memory_frames;
};

// A track with its category and span (engine/tracker.py TrackSummary).
struct TrackSummary {
  int64_t track_id;
  int64_t label;  // 0-based: its frames' averaged category scores' best
  float score;  // that category's averaged score
  int64_t first_frame, last_frame;  // the frames it was first and last seen in
};

// One frame's tracked instances, best score first (engine/tracker.py FrameResult).
struct FrameResult {
  int64_t index = 0;  // the frame's index in the stream
  at::Tensor track_ids;  // int64 [K], CPU: 0, 1, ... in order of appearance
  at::Tensor masks;  // bool [K, H, W] at the output size, on the package's device
  at::Tensor labels;  // int64 [K], CPU, 0-based: this frame's label of each instance
  at::Tensor scores;  // float32 [K], CPU: this frame's score of each instance
  // The tracks that ended with this frame (lost for more than max_lost_frames), by track
  // id, each reported once.
  std::vector<TrackSummary> ended;
};

// Where a step's time went, in milliseconds of wall time (the host's view: on a GPU the
// network's kernels run asynchronously, and finish waits for them at its one read).
struct StepTimes {
  double prepare_ms = 0;  // the frame checked, resized and normalised
  double network_ms = 0;  // the package's frame function, and the frame stored in the memory
  double finish_ms = 0;  // the read of the device, association, tracks, masks at the output size
};

// Each track's category so far, by track id (CPU tensors).
struct TrackCategories {
  at::Tensor scores;  // float32 [num_tracks]
  at::Tensor labels;  // int64 [num_tracks], 0-based
};

namespace detail {
class MemoryBank;
class CandidateRows;

// A track that has not ended: seen in the previous frame, or a candidate.
struct OpenTrack {
  std::vector<double> sums;  // [C]: its category scores summed over its frames, in float64
  int64_t counted = 0;  // its frames whose category scores do not sum to zero
  int64_t first_frame = 0, last_frame = 0;
};

// What the association needs of the previous frame's instances.
struct Previous {
  int64_t index;
  std::vector<int64_t> tracks;  // [k]
  at::Tensor queries;  // float32 [k, D]: their tracking query embeddings
};
}  // namespace detail

// One stream: step() each frame, which returns that frame's result; nothing in it depends on
// a later frame. Per open track it keeps a running sum of category scores, per lost instance
// not re-identified yet its query embedding; with max_memory_frames and max_lost_frames set,
// its state and per-frame work stay bounded however long the stream runs.
class Tracker {
 public:
  Tracker(std::shared_ptr<Package> package, TrackerOptions options = {});
  explicit Tracker(const std::string& package_path, TrackerOptions options = {});
  ~Tracker();
  Tracker(Tracker&&) noexcept;
  Tracker& operator=(Tracker&&) noexcept;

  // Runs one frame, uint8 [H, W, 3] RGB (on the CPU or the package's device); every frame of
  // a stream has the same size. Throws std::invalid_argument for a frame that is not that.
  FrameResult step(const at::Tensor& frame);

  // Each track's (score, label) so far, ended tracks included (spec section 7).
  TrackCategories track_categories() const;
  // The tracks that have not ended, by track id, with their category and span so far.
  std::vector<TrackSummary> open_tracks() const;

  // The last step's times.
  const StepTimes& last_step_times() const { return times_; }

  int64_t num_frames() const { return num_frames_; }
  int64_t num_tracks() const { return num_tracks_; }
  // The frames in the model's memory, oldest first.
  const std::vector<int64_t>& memory_frames() const;
  const Config& config() const { return config_; }
  const Package& package() const { return *package_; }

 private:
  at::Tensor prepare(const at::Tensor& frame) const;
  FrameResult finish(const FrameOutputs& out, std::array<int64_t, 2> size);
  TrackSummary summary(int64_t track) const;

  std::shared_ptr<Package> package_;
  Config config_;  // the package's, max_lost_frames as the options say
  std::optional<std::array<int64_t, 2>> output_size_;
  std::unique_ptr<detail::MemoryBank> memory_;
  std::unique_ptr<detail::CandidateRows> lost_;  // the candidates (spec section 6)
  std::optional<detail::Previous> previous_;  // the previous frame's instances, if it had any
  std::map<int64_t, detail::OpenTrack> open_;  // by track id
  // Ended tracks' final categories, by track id (12 bytes a track).
  std::vector<float> final_scores_;
  std::vector<int64_t> final_labels_;
  int64_t num_tracks_ = 0, num_frames_ = 0;
  std::optional<std::array<int64_t, 2>> frame_size_;
  StepTimes times_;
};

}  // namespace visolo
