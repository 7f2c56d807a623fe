// visolo::Tracker: the rules of visolo_fast/engine/tracker.py (spec sections 1, 3, 6, 7)
// around a package's frame function. Each decision is made on the host, from one read of the
// device per frame; the masks stay on the device.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>

#include "association.h"
#include "memory.h"
#include "visolo/tracker.h"

namespace visolo {

namespace {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Masks to the output size as the official code resizes its final masks (bilinear on the 0/1
// values, kept where >= threshold), through the ops library's kernel for their device.
at::Tensor resize_masks(const at::Tensor& masks, std::array<int64_t, 2> size, double threshold) {
  if (masks.size(1) == size[0] && masks.size(2) == size[1] && threshold > 0 && threshold <= 1) {
    // At scale 1 every output pixel reads exactly its source pixel (weights 1 and 0), and
    // 1 >= threshold > 0: the masks themselves.
    return masks.clone(at::MemoryFormat::Contiguous);
  }
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("visolo_fast::resize_masks", "")
                             .typed<at::Tensor(const at::Tensor&, c10::SymIntArrayRef, double)>();
  const std::array<c10::SymInt, 2> sym{c10::SymInt(size[0]), c10::SymInt(size[1])};
  return op.call(masks, sym, threshold);
}

// A track's category (spec section 7): its category scores averaged over the frames that
// count, then the best one. NB: as torch.max: the first maximum, and NaN (a track none of
// whose frames counted: 0 / 0) wins.
std::pair<float, int64_t> category(const detail::OpenTrack& track) {
  double best = 0;
  int64_t label = -1;
  for (int64_t c = 0; c < static_cast<int64_t>(track.sums.size()); ++c) {
    const double average = track.sums[c] / static_cast<double>(track.counted);
    if (label < 0 || std::isnan(average) || average > best) {
      best = average;
      label = c;
      if (std::isnan(average)) {
        break;
      }
    }
  }
  return {static_cast<float>(best), label};
}

}  // namespace

Tracker::Tracker(std::shared_ptr<Package> package, TrackerOptions options)
    : package_(std::move(package)), output_size_(options.output_size) {
  if (!package_) {
    throw std::invalid_argument("Tracker: no package");
  }
  config_ = package_->config();
  if (options.max_lost_frames == TrackerOptions::kUnbounded) {
    config_.max_lost_frames = std::nullopt;
  } else if (options.max_lost_frames >= 1) {
    config_.max_lost_frames = options.max_lost_frames;
  } else if (options.max_lost_frames != TrackerOptions::kFromPackage) {
    throw std::invalid_argument("Tracker: max_lost_frames must be kFromPackage, kUnbounded or N >= 1, got " +
                                std::to_string(options.max_lost_frames));
  }
  if (options.tracking_thr) {
    // One rule with VisoloConfig: the similarities it is compared to are sigmoids (NaN fails both tests).
    if (!(*options.tracking_thr >= 0 && *options.tracking_thr <= 1)) {
      std::ostringstream got;
      got << *options.tracking_thr;
      throw std::invalid_argument("Tracker: tracking_thr must be a number in [0, 1] (the similarities are sigmoids), got " +
                                  got.str());
    }
    config_.tracking_thr = *options.tracking_thr;
  }
  if (options.max_memory_frames) {
    const int64_t cap = *options.max_memory_frames;
    const auto& built = config_.max_memory_frames;
    if (cap < 3 || (built && cap > *built)) {
      throw std::invalid_argument("Tracker: max_memory_frames must be at least 3" +
                                  (built ? " and at most the package's " + std::to_string(*built) : std::string()) +
                                  ", got " + std::to_string(cap));
    }
    config_.max_memory_frames = cap;
  }
  if (output_size_ && ((*output_size_)[0] < 1 || (*output_size_)[1] < 1)) {
    throw std::invalid_argument("Tracker: output_size must be (height, width), two positive integers, got " +
                                std::to_string((*output_size_)[0]) + " x " + std::to_string((*output_size_)[1]));
  }
  c10::InferenceMode guard;
  const int64_t S = config_.num_grids(), D = config_.dim / 2, V = 2 * config_.dim;
  memory_ = std::make_unique<detail::MemoryBank>(
      config_.max_memory_frames, S, D, V, at::TensorOptions().dtype(package_->dtype()).device(package_->device()));
  lost_ = std::make_unique<detail::CandidateRows>();
}

Tracker::Tracker(const std::string& package_path, TrackerOptions options)
    : Tracker(std::make_shared<Package>(package_path), options) {}

Tracker::~Tracker() = default;
Tracker::Tracker(Tracker&&) noexcept = default;
Tracker& Tracker::operator=(Tracker&&) noexcept = default;

const std::vector<int64_t>& Tracker::memory_frames() const { return memory_->frames(); }

at::Tensor Tracker::prepare(const at::Tensor& frame) const {
  if (!frame.defined() || frame.dim() != 3 || frame.size(2) != 3) {
    throw std::invalid_argument("Tracker::step: frame must be one [H, W, 3] uint8 RGB tensor, got " +
                                (frame.defined() ? "shape " + shape_of(frame) : std::string("an undefined tensor")));
  }
  if (frame.scalar_type() != at::kByte) {
    throw std::invalid_argument(std::string("Tracker::step: frame must be uint8 RGB (0..255), got ") +
                                c10::toString(frame.scalar_type()));
  }
  if (frame.size(0) == 0 || frame.size(1) == 0) {
    throw std::invalid_argument("Tracker::step: empty frame, shape " + shape_of(frame));
  }
  if (frame_size_ && (frame.size(0) != (*frame_size_)[0] || frame.size(1) != (*frame_size_)[1])) {
    throw std::invalid_argument("Tracker::step: frame " + std::to_string(num_frames_) + " is " +
                                std::to_string(frame.size(0)) + " x " + std::to_string(frame.size(1)) +
                                ", the video's frames are " + std::to_string((*frame_size_)[0]) + " x " +
                                std::to_string((*frame_size_)[1]));
  }
  // Spec section 1, as visolo_fast.preprocess: the uint8 image resized to exactly the input
  // size, bilinear with antialiasing as PIL's, then normalised per channel.
  const at::Device device = package_->device();
  at::Tensor x = frame.to(device).permute({2, 0, 1}).unsqueeze(0);  // uint8 [1, 3, H, W]
  const auto [h, w] = config_.input_size;
  if (x.size(2) != h || x.size(3) != w) {
    if (device.is_cpu()) {
      // NB: the uint8 path follows PIL's fixed-point arithmetic (F.interpolate's on a uint8 tensor).
      x = at::_upsample_bilinear2d_aa(x.contiguous(), {h, w}, /*align_corners=*/false);
    } else {
      x = at::_upsample_bilinear2d_aa(x.to(at::kFloat), {h, w}, false).round_().clamp_(0, 255);
    }
  }
  const auto& m = config_.pixel_mean;
  const auto& s = config_.pixel_std;
  // NB: the config's float64 values rounded to float32, as torch.tensor(..., dtype=float32).
  const at::Tensor mean = at::tensor({m[0], m[1], m[2]}, at::kDouble).to(at::kFloat).to(device).view({1, 3, 1, 1});
  const at::Tensor std = at::tensor({s[0], s[1], s[2]}, at::kDouble).to(at::kFloat).to(device).view({1, 3, 1, 1});
  return ((x.to(at::kFloat) - mean) / std).contiguous();  // float32 [1, 3, h, w]
}

FrameResult Tracker::step(const at::Tensor& frame) {
  c10::InferenceMode guard;
  using clock = std::chrono::steady_clock;
  const auto ms = [](clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  const auto t0 = clock::now();
  const at::Tensor images = prepare(frame);
  const auto t1 = clock::now();
  // The frame reads the memory as it stands after the previous frame; then it is stored.
  const FrameOutputs out = package_->run(images, memory_->read());
  memory_->add(out.keys[0], out.values[0]);
  const auto t2 = clock::now();
  FrameResult result = finish(out, {frame.size(0), frame.size(1)});
  times_ = {ms(t0, t1), ms(t1, t2), ms(t2, clock::now())};
  return result;
}

FrameResult Tracker::finish(const FrameOutputs& out, std::array<int64_t, 2> size) {
  const int64_t index = num_frames_, Q = out.grids.size(0), C = config_.num_classes;
  frame_size_ = size;

  // The frame's one read of the device: its number of instances K, its Q slots' labels,
  // scores and category scores, and the sigmoid similarities of the previous frame's
  // instances and of every candidate row (rows) with each slot (columns), one product.
  // NB: float32 holds K <= S and the labels exactly; the decisions are made in float32,
  // whatever the package's dtype.
  std::vector<at::Tensor> packed{out.count.to(at::kFloat).reshape({1}), out.labels.to(at::kFloat),
                                 out.scores.to(at::kFloat), out.score_vecs.to(at::kFloat).flatten()};
  std::vector<at::Tensor> blocks;
  if (previous_) {
    blocks.push_back(previous_->queries);
  }
  if (lost_->size()) {
    blocks.push_back(lost_->queries());
  }
  if (!blocks.empty()) {
    const at::Tensor columns = out.keys[0].index_select(0, out.grids).to(at::kFloat);  // [Q, D]
    packed.push_back(at::sigmoid(at::matmul(at::cat(blocks), columns.t())).flatten());
  }
  const at::Tensor host = at::cat(packed).cpu();
  const float* data = host.const_data_ptr<float>();
  const int64_t K = static_cast<int64_t>(data[0]);
  const float* labels = data + 1;  // [Q]
  const float* scores = labels + Q;  // [Q]
  const float* score_vecs = scores + Q;  // [Q, C]
  const float* rows = score_vecs + Q * C;  // [k_prev + n, Q]
  const int64_t k_prev = previous_ ? static_cast<int64_t>(previous_->tracks.size()) : 0;
  const detail::Similarity previous{rows, k_prev, K, Q}, candidates{rows + k_prev * Q, lost_->size(), K, Q};

  // Association (spec section 6): the previous frame's instances first, then the candidates;
  // the rest start new tracks, numbered on in score order.
  const float threshold = static_cast<float>(config_.tracking_thr);
  std::vector<std::optional<int64_t>> matched(K);
  std::vector<bool> taken(k_prev, false);
  std::vector<int64_t> reidentified;
  if (K) {
    if (previous_) {
      const std::vector<std::optional<int64_t>> took = detail::match_previous(previous, threshold);
      for (int64_t i = 0; i < K; ++i) {
        if (took[i]) {
          matched[i] = previous_->tracks[*took[i]];
          taken[*took[i]] = true;
        }
      }
    }
    if (lost_->size()) {
      reidentified = detail::match_candidate_rows(candidates, lost_->frames(), lost_->tracks(), matched, threshold);
    }
  }
  std::vector<int64_t> tracks(K);
  int64_t next_track = num_tracks_;
  for (int64_t i = 0; i < K; ++i) {
    tracks[i] = matched[i] ? *matched[i] : next_track++;
  }

  // The candidates updated: the re-identified rows out; those lost for more than
  // max_lost_frames out (they end: their final category is kept); then the previous frame's
  // instances no current one took in, as a new entry.
  lost_->remove(reidentified);
  FrameResult result;
  if (config_.max_lost_frames) {
    auto [gone, last] = lost_->expire(index - *config_.max_lost_frames);
    std::vector<size_t> order(gone.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return gone[a] < gone[b]; });
    for (size_t j : order) {
      const detail::OpenTrack& track = open_.at(gone[j]);
      const auto [score, label] = category(track);
      result.ended.push_back({gone[j], label, score, track.first_frame, last[j]});
      final_scores_[gone[j]] = score;
      final_labels_[gone[j]] = label;
      open_.erase(gone[j]);
    }
  }
  num_tracks_ = next_track;
  final_scores_.resize(num_tracks_, 0.0f);
  final_labels_.resize(num_tracks_, 0);
  for (int64_t track : tracks) {
    auto [it, started] = open_.try_emplace(track);
    if (started) {
      it->second.sums.assign(C, 0.0);
      it->second.first_frame = index;
    }
    it->second.last_frame = index;
  }
  if (previous_) {
    std::vector<int64_t> missing_rows, missing_tracks;
    for (int64_t r = 0; r < k_prev; ++r) {
      if (!taken[r]) {
        missing_rows.push_back(r);
        missing_tracks.push_back(previous_->tracks[r]);
      }
    }
    if (!missing_rows.empty()) {
      const at::Tensor where = at::tensor(missing_rows, at::kLong).to(previous_->queries.device());
      lost_->append(previous_->index, previous_->queries.index_select(0, where), missing_tracks);
    }
  }

  // The category sums (spec section 7), in float64. A frame counts for a track where its
  // category scores do not sum to zero (as official); NB: they are sigmoids, >= 0, so the sum
  // is zero exactly when every score is, in any precision.
  for (int64_t i = 0; i < K; ++i) {
    detail::OpenTrack& track = open_.at(tracks[i]);
    double total = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double v = score_vecs[i * C + c];
      track.sums[c] += v;
      total += v;
    }
    track.counted += total != 0;
  }

  const at::Tensor instance_grids = out.grids.slice(0, 0, K);
  if (K) {
    previous_ = detail::Previous{index, tracks, out.query[0].index_select(0, instance_grids).to(at::kFloat)};
  } else {
    previous_.reset();
  }

  result.index = index;
  result.track_ids = at::tensor(tracks, at::kLong);
  result.labels = at::tensor(std::vector<int64_t>(labels, labels + K), at::kLong);
  result.scores = at::tensor(std::vector<float>(scores, scores + K), at::kFloat);
  const at::Tensor masks = out.masks.index_select(0, out.index.slice(0, 0, K));  // bool [K, h, w]
  result.masks = resize_masks(masks, output_size_ ? *output_size_ : size, config_.mask_thr);
  ++num_frames_;
  return result;
}

TrackSummary Tracker::summary(int64_t track) const {
  const detail::OpenTrack& open = open_.at(track);
  const auto [score, label] = category(open);
  return {track, label, score, open.first_frame, open.last_frame};
}

TrackCategories Tracker::track_categories() const {
  TrackCategories out{at::tensor(final_scores_, at::kFloat), at::tensor(final_labels_, at::kLong)};
  for (const auto& [track, open] : open_) {
    const auto [score, label] = category(open);
    out.scores[track] = score;
    out.labels[track] = label;
  }
  return out;
}

std::vector<TrackSummary> Tracker::open_tracks() const {
  std::vector<TrackSummary> out;
  for (const auto& [track, open] : open_) {
    out.push_back(summary(track));
  }
  return out;
}

}  // namespace visolo
