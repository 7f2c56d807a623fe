#include "memory.h"

#include <algorithm>

namespace visolo::detail {

namespace {

// Every kLongTermPeriod frames a frame stays in memory for good (frames 2, 7, 12, ... are
// appended; they become the long-term entries 5, 10, ... once two frames old).
constexpr int64_t kLongTermPeriod = 5;

int64_t slot_of(const std::vector<int64_t>& frames, int64_t frame, int64_t from = 0) {
  return std::find(frames.begin() + from, frames.end(), frame) - frames.begin();
}

}  // namespace

std::vector<int64_t> stored_after(const std::vector<int64_t>& frames, std::optional<int64_t> limit) {
  const int64_t n = frames.empty() ? 0 : frames.back() + 1;
  std::vector<int64_t> after(frames);
  // The newest frame replaces the previous one, except every kLongTermPeriod frames (and
  // while fewer than two are stored), when the previous one is kept for good.
  if (frames.size() >= 2 && n % kLongTermPeriod != 2) {
    after.erase(after.end() - 2);
  }
  after.push_back(n);
  if (limit && static_cast<int64_t>(after.size()) > *limit) {
    after.erase(after.begin() + 1);
  }
  return after;
}

MemoryBank::MemoryBank(std::optional<int64_t> limit, int64_t S, int64_t D, int64_t V, at::TensorOptions options)
    : limit_(limit), S_(S), keys_(at::zeros({1, S, D}, options)), values_(at::zeros({1, S, V}, options)) {}

std::vector<int64_t> MemoryBank::weight_sources() const {
  const std::vector<int64_t> after = stored_after(frames_, limit_);
  std::vector<int64_t> slots;
  // after[-2], then after[-3]: both are stored now (only the newest frame is not).
  for (int64_t back = 2; back <= 3 && back <= static_cast<int64_t>(after.size()); ++back) {
    slots.push_back(slot_of(frames_, after[after.size() - back]));
  }
  return slots;
}

MemoryRead MemoryBank::read() const {
  const int64_t stored = static_cast<int64_t>(frames_.size());
  // NB: one entry at least: the first frame reads a zeroed entry of length 0.
  const int64_t entries = std::max<int64_t>(stored, 1);
  std::vector<int64_t> sources = weight_sources();
  // NB: a frame with one source takes it twice (the mean of two equal values is exact); the
  // first frame, unweighted, any two (their weight is not used).
  if (sources.empty()) {
    sources = {0, 0};
  } else if (sources.size() == 1) {
    sources.push_back(sources[0]);
  }
  const at::Tensor source_slots = at::tensor(sources, at::kLong).to(keys_.device());
  const auto host = at::TensorOptions().dtype(at::kLong);
  return MemoryRead{
      keys_.slice(0, 0, entries).flatten(0, 1).unsqueeze(0),  // [1, T * S, D], a view
      values_.slice(0, 0, entries).flatten(0, 1).unsqueeze(0),
      at::full({1}, stored * S_, host).to(keys_.device()),
      keys_.index_select(0, source_slots).unsqueeze(0),  // [1, 2, S, D]
      at::full({1}, stored > 0, host.dtype(at::kBool)).to(keys_.device()),
  };
}

void MemoryBank::reserve(int64_t entries) {
  int64_t capacity = keys_.size(0);
  if (entries <= capacity) {
    return;
  }
  while (capacity < entries) {
    capacity *= 2;
  }
  const int64_t stored = static_cast<int64_t>(frames_.size());
  for (at::Tensor* buffer : {&keys_, &values_}) {
    std::vector<int64_t> shape = buffer->sizes().vec();
    shape[0] = capacity;
    at::Tensor grown = at::zeros(shape, buffer->options());
    grown.slice(0, 0, stored).copy_(buffer->slice(0, 0, stored));
    *buffer = grown;
  }
}

void MemoryBank::add(const at::Tensor& keys, const at::Tensor& values) {
  const std::vector<int64_t> after = stored_after(frames_, limit_);
  reserve(static_cast<int64_t>(after.size()));
  // The frames that stay move down to their new slots (each source slot is at or after its
  // destination, so walking up overwrites nothing still needed).
  for (size_t slot = 0; slot + 1 < after.size(); ++slot) {
    const int64_t old = slot_of(frames_, after[slot], static_cast<int64_t>(slot));
    if (old != static_cast<int64_t>(slot)) {
      keys_[slot].copy_(keys_[old]);
      values_[slot].copy_(values_[old]);
    }
  }
  keys_[after.size() - 1].copy_(keys);
  values_[after.size() - 1].copy_(values);
  frames_ = after;
}

}  // namespace visolo::detail
