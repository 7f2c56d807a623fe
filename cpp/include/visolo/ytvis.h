// YouTube-VIS results (spec section 7), as visolo_fast/io/ytvis.py writes them: one entry per
// track, a COCO RLE or null per frame.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include <ATen/Tensor.h>

#include "visolo/tracker.h"

namespace visolo {

// A COCO RLE with its counts as pycocotools' ASCII string (rleToString).
struct Rle {
  int64_t height = 0, width = 0;
  std::string counts;
};

// The COCO RLE of a binary mask (bool [H, W], any device); nullopt for an empty mask.
// Byte for byte pycocotools' mask.encode + counts string.
std::optional<Rle> encode_rle(const at::Tensor& mask);

// Python's repr of a float64, which json.dump writes: the shortest digits that read back the
// same value, fixed notation for exponents -4..15, else "1e-05" style; NaN and Infinity as
// Python's json writes them.
std::string python_float(double x);

// Collects a stream's frame results as RLEs (a few hundred bytes per instance and frame, not
// masks) and writes the results list at the end.
class ResultsRecorder {
 public:
  void add(const FrameResult& result);
  int64_t frames() const { return frames_; }

  // The results list: entry k for track k (category_id = label + 1, score, the segmentations
  // over the frames recorded), as Python's json.dump writes it; "[]" without tracks.
  // video_id: its JSON text (a number, or a quoted string).
  void write_json(std::ostream& out, const TrackCategories& categories, const std::string& video_id) const;

 private:
  std::map<int64_t, std::map<int64_t, Rle>> rles_;  // track -> frame -> RLE
  int64_t frames_ = 0;
};

}  // namespace visolo
