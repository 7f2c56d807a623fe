// Track association (spec section 6), as visolo_fast/engine/association.py decides it: on the
// host, from the frame's one read of the device (the similarities of the previous frame's
// instances and of the candidates with the current ones).
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace visolo::detail {

// A host matrix of sigmoid similarities, rows (earlier instances) x columns (the current
// frame's instances in score order), row-major with a row stride.
struct Similarity {
  const float* data = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;

  float at(int64_t row, int64_t col) const { return data[row * stride + col]; }
  Similarity block(int64_t start, int64_t stop) const { return {data + start * stride, stop - start, cols, stride}; }
};

// Step 1: each current instance (column, in score order) takes the previous frame's instance
// (row) it resembles most, among those not taken yet and >= threshold. Per instance, the row
// it took or nullopt.
std::vector<std::optional<int64_t>> match_previous(const Similarity& similarity, float threshold);

// Step 2: the current instances without a track (nullopt in `tracks`, filled in place) try
// the candidate entries, newest first; in each entry, each such instance (score order) takes
// the best row >= threshold not taken yet in that entry; stop when all have a track.
//   entries: [n], non-decreasing: each row's entry (the frame it was last seen in)
//   row_tracks: [n]: each row's track
// Returns the rows taken, ascending: they leave the candidates.
std::vector<int64_t> match_candidate_rows(const Similarity& similarity, const std::vector<int64_t>& entries,
                                          const std::vector<int64_t>& row_tracks,
                                          std::vector<std::optional<int64_t>>& tracks, float threshold);

// The candidates (spec section 6) as rows, oldest entry first: every lost instance not
// re-identified yet, with the frame it was last seen in (its entry) and its track. The query
// embeddings are rows of one device buffer, grown by doubling and read in place; frames and
// tracks are host arrays beside it. Appending an entry, dropping the oldest rows and removing
// re-identified rows cost amortised O(1) per row, or O(rows after the first removed one).
class CandidateRows {
 public:
  int64_t size() const { return tail_ - head_; }
  at::Tensor queries() const;  // float32 [n, D]: a view of the buffer
  std::vector<int64_t> frames() const;  // [n], non-decreasing
  std::vector<int64_t> tracks() const;  // [n]

  // A new entry, newer than every row: `queries` (float32 [k, D]) of `tracks` last seen in `frame`.
  void append(int64_t frame, const at::Tensor& queries, const std::vector<int64_t>& tracks);
  // Removes `rows` (indices into the rows, ascending), keeping the others' order.
  void remove(const std::vector<int64_t>& rows);
  // Removes the rows last seen before frame `before`; returns their (tracks, frames).
  std::pair<std::vector<int64_t>, std::vector<int64_t>> expire(int64_t before);

 private:
  void room(int64_t k, const at::Tensor& like);

  at::Tensor queries_;  // float32 [capacity, D]
  std::vector<int64_t> frames_, tracks_;  // [capacity]
  int64_t head_ = 0, tail_ = 0;  // the rows are [head, tail)
};

}  // namespace visolo::detail
