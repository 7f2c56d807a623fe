// A stream's memory (spec section 3), as visolo_fast/engine/memory.py keeps it for the fast
// engine: which earlier frames a frame reads, and their keys and values.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/ATen.h>

#include "visolo/tracker.h"

namespace visolo::detail {

// The frames stored once the frame after frames.back() is (frames: those stored now, oldest
// first; frame 0 for an empty memory). After frame n >= 1 the memory holds frame 0, every
// multiple of 5 at least two frames old, frame n - 1 and frame n; limit caps it, the oldest
// long-term entry after frame 0 making room.
std::vector<int64_t> stored_after(const std::vector<int64_t>& frames, std::optional<int64_t> limit);

// The stored frames, oldest first, and their keys [S, D] and values [S, V] in buffers of
// `capacity` entries, grown by doubling: a read hands views of them (no concatenation of the
// stored frames each frame), a frame that leaves moves the newer entries down one slot.
class MemoryBank {
 public:
  // The buffers start as one zeroed entry: the first frame's read (which the frame function
  // replaces by the frame's own entry) has a shape.
  MemoryBank(std::optional<int64_t> limit, int64_t S, int64_t D, int64_t V, at::TensorOptions options);

  const std::vector<int64_t>& frames() const { return frames_; }

  // What the next frame reads (engine.py _run_fast, one stream).
  MemoryRead read() const;

  // Stores the next frame's entry: keys [S, D], values [S, V] (copied).
  void add(const at::Tensor& keys, const at::Tensor& values);

 private:
  // The slots of the entries the next frame's grid weight compares it with (spec section 4):
  // none for frame 0, frame 0 for frame 1, else the previous frame and the newest long-term
  // entry (mem[-2] and mem[-3] once it is stored).
  std::vector<int64_t> weight_sources() const;
  void reserve(int64_t entries);

  std::optional<int64_t> limit_;
  int64_t S_;
  std::vector<int64_t> frames_;
  at::Tensor keys_;  // [capacity, S, D]
  at::Tensor values_;  // [capacity, S, V]
};

}  // namespace visolo::detail
