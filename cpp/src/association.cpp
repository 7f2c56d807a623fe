#include "association.h"

#include <algorithm>
#include <set>

namespace visolo::detail {

namespace {

// The row not in `taken` with the highest value >= threshold in column `col`; ties go to the
// earlier row. NB: the Python tracker walks a stable descending argsort (numpy puts NaN last)
// until a value fails `>= threshold`: the same row. NaN fails `>=`, so it is never taken, as
// the official `>=` test skips it. The comparison is in float32, as numpy compares a float32
// array with a Python float.
std::optional<int64_t> best_free(const Similarity& s, int64_t col, const std::set<int64_t>& taken, float threshold) {
  std::optional<int64_t> best;
  for (int64_t row = 0; row < s.rows; ++row) {
    const float v = s.at(row, col);
    if (v >= threshold && !taken.count(row) && (!best || v > s.at(*best, col))) {
      best = row;
    }
  }
  return best;
}

}  // namespace

std::vector<std::optional<int64_t>> match_previous(const Similarity& similarity, float threshold) {
  std::set<int64_t> taken;
  std::vector<std::optional<int64_t>> rows;
  for (int64_t i = 0; i < similarity.cols; ++i) {
    const std::optional<int64_t> row = best_free(similarity, i, taken, threshold);
    if (row) {
      taken.insert(*row);
    }
    rows.push_back(row);
  }
  return rows;
}

std::vector<int64_t> match_candidate_rows(const Similarity& similarity, const std::vector<int64_t>& entries,
                                          const std::vector<int64_t>& row_tracks,
                                          std::vector<std::optional<int64_t>>& tracks, float threshold) {
  std::vector<int64_t> free;
  for (int64_t i = 0; i < static_cast<int64_t>(tracks.size()); ++i) {
    if (!tracks[i]) {
      free.push_back(i);
    }
  }
  if (free.empty() || similarity.rows == 0) {
    return {};
  }
  // An entry none of whose rows reaches the threshold for an instance still without a track
  // changes nothing: only the entries that hold such a row are visited (newest first), the
  // same decisions as visiting every entry, at a cost that depends on the matches, not on how
  // many candidates have piled up.
  std::set<int64_t> reached;
  for (int64_t row = 0; row < similarity.rows; ++row) {
    for (int64_t i : free) {
      if (similarity.at(row, i) >= threshold) {
        reached.insert(entries[row]);
        break;
      }
    }
  }
  std::vector<int64_t> taken_rows;
  for (auto entry = reached.rbegin(); entry != reached.rend() && !free.empty(); ++entry) {
    const int64_t start = std::lower_bound(entries.begin(), entries.end(), *entry) - entries.begin();
    const int64_t stop = std::upper_bound(entries.begin(), entries.end(), *entry) - entries.begin();
    const Similarity block = similarity.block(start, stop);
    std::set<int64_t> taken;
    std::vector<int64_t> still_free;
    for (int64_t i : free) {
      const std::optional<int64_t> row = best_free(block, i, taken, threshold);
      if (row) {
        taken.insert(*row);
        tracks[i] = row_tracks[start + *row];
      } else {
        still_free.push_back(i);
      }
    }
    free = still_free;
    for (int64_t row : taken) {
      taken_rows.push_back(start + row);
    }
  }
  std::sort(taken_rows.begin(), taken_rows.end());
  return taken_rows;
}

at::Tensor CandidateRows::queries() const { return queries_.slice(0, head_, tail_); }

std::vector<int64_t> CandidateRows::frames() const { return {frames_.begin() + head_, frames_.begin() + tail_}; }

std::vector<int64_t> CandidateRows::tracks() const { return {tracks_.begin() + head_, tracks_.begin() + tail_}; }

void CandidateRows::append(int64_t frame, const at::Tensor& queries, const std::vector<int64_t>& tracks) {
  const int64_t k = static_cast<int64_t>(tracks.size());
  if (k == 0) {
    return;
  }
  room(k, queries);
  queries_.slice(0, tail_, tail_ + k).copy_(queries);
  std::fill(frames_.begin() + tail_, frames_.begin() + tail_ + k, frame);
  std::copy(tracks.begin(), tracks.end(), tracks_.begin() + tail_);
  tail_ += k;
}

void CandidateRows::remove(const std::vector<int64_t>& rows) {
  if (rows.empty()) {
    return;
  }
  // The rows after the first removed one that stay, moved up over the gaps.
  std::vector<int64_t> keep;
  size_t next = 0;
  for (int64_t row = rows[0]; row < size(); ++row) {
    if (next < rows.size() && rows[next] == row) {
      ++next;
    } else {
      keep.push_back(head_ + row);
    }
  }
  const int64_t at = head_ + rows[0], end = at + static_cast<int64_t>(keep.size());
  if (!keep.empty()) {
    // NB: gathered first: the rows may overlap their new place.
    queries_.slice(0, at, end).copy_(queries_.index_select(0, at::tensor(keep, at::kLong).to(queries_.device())));
  }
  for (int64_t j = 0; j < static_cast<int64_t>(keep.size()); ++j) {
    frames_[at + j] = frames_[keep[j]];
    tracks_[at + j] = tracks_[keep[j]];
  }
  tail_ = end;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> CandidateRows::expire(int64_t before) {
  const int64_t cut = std::lower_bound(frames_.begin() + head_, frames_.begin() + tail_, before) - frames_.begin();
  std::pair<std::vector<int64_t>, std::vector<int64_t>> gone{{tracks_.begin() + head_, tracks_.begin() + cut},
                                                             {frames_.begin() + head_, frames_.begin() + cut}};
  head_ = cut;
  if (head_ == tail_) {
    head_ = tail_ = 0;
  }
  return gone;
}

void CandidateRows::room(int64_t k, const at::Tensor& like) {
  const int64_t n = size(), capacity = static_cast<int64_t>(frames_.size());
  if (queries_.defined() && tail_ + k <= capacity) {
    return;
  }
  // The rows move to the front of the buffer when they fill at most half of it, else to one
  // twice as large.
  int64_t grown = capacity;
  at::Tensor buffer = queries_;
  if (!queries_.defined() || n + k > capacity / 2) {
    grown = std::max({2 * capacity, 2 * (n + k), int64_t{16}});
    buffer = at::empty({grown, like.size(1)}, like.options());
  }
  if (n) {
    // NB: a copy, even within the same buffer: the rows may overlap their new place.
    buffer.slice(0, 0, n).copy_(buffer.is_same(queries_) ? queries().clone() : queries());
  }
  std::vector<int64_t> frames(grown), tracks(grown);
  std::copy(frames_.begin() + head_, frames_.begin() + tail_, frames.begin());
  std::copy(tracks_.begin() + head_, tracks_.begin() + tail_, tracks.begin());
  queries_ = buffer;
  frames_ = std::move(frames);
  tracks_ = std::move(tracks);
  head_ = 0;
  tail_ = n;
}

}  // namespace visolo::detail
