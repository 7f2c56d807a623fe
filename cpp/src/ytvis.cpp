#include "visolo/ytvis.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <ATen/ATen.h>

namespace visolo {

std::optional<Rle> encode_rle(const at::Tensor& mask) {
  if (!mask.defined() || mask.dim() != 2 || mask.scalar_type() != at::kBool) {
    throw std::invalid_argument("encode_rle: mask must be a bool [H, W] tensor");
  }
  const at::Tensor m = mask.cpu().contiguous();
  const int64_t h = m.size(0), w = m.size(1);
  const bool* p = m.const_data_ptr<bool>();
  // pycocotools' rleEncode: runs of alternating values in column-major order, starting with
  // a run of zeros (empty when the first pixel is set).
  std::vector<uint32_t> counts;
  bool value = false, any = false;
  uint32_t run = 0;
  for (int64_t x = 0; x < w; ++x) {
    for (int64_t y = 0; y < h; ++y) {
      const bool v = p[y * w + x];
      any |= v;
      if (v != value) {
        counts.push_back(run);
        run = 0;
        value = v;
      }
      ++run;
    }
  }
  counts.push_back(run);
  if (!any) {
    return std::nullopt;
  }
  // pycocotools' rleToString: each count (from the fourth on, its difference with the count
  // two before: NB `i > 2`, as pycocotools, not `i >= 2`) as a signed LEB128-like number of
  // 5 bits per character, 0x20 marking that more follow, offset to the characters 48..111.
  Rle rle{h, w, {}};
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t x = counts[i];
    if (i > 2) {
      x -= counts[i - 2];
    }
    bool more = true;
    while (more) {
      char c = static_cast<char>(x & 0x1f);
      x >>= 5;  // NB: arithmetic: negative differences end at -1
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) {
        c |= 0x20;
      }
      rle.counts.push_back(static_cast<char>(c + 48));
    }
  }
  return rle;
}

std::string python_float(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  // The shortest round-trip digits, d.ddde[+-]XX; then laid out as Python's repr does.
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::scientific);
  std::string sci(buf, end);
  const size_t e = sci.find('e');
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string sign, digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] == '-') sign = "-";
    else if (sci[i] != '.') digits.push_back(sci[i]);
  }
  const int n = static_cast<int>(digits.size());
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out = "0." + std::string(-exponent - 1, '0') + digits;
    } else if (exponent + 1 >= n) {
      out = digits + std::string(exponent + 1 - n, '0') + ".0";
    } else {
      out = digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
  } else {
    out = digits.substr(0, 1) + (n > 1 ? "." + digits.substr(1) : "") + "e" + (exponent < 0 ? "-" : "+") +
          (std::abs(exponent) < 10 ? "0" : "") + std::to_string(std::abs(exponent));
  }
  return sign + out;
}

void ResultsRecorder::add(const FrameResult& result) {
  const at::Tensor masks = result.masks.cpu();
  for (int64_t i = 0; i < result.track_ids.size(0); ++i) {
    if (std::optional<Rle> rle = encode_rle(masks[i])) {
      rles_[result.track_ids[i].item<int64_t>()][result.index] = std::move(*rle);
    }
  }
  frames_ = std::max(frames_, result.index + 1);
}

void ResultsRecorder::write_json(std::ostream& out, const TrackCategories& categories,
                                 const std::string& video_id) const {
  // Python's json.dump layout (", " and ": "), so that both write the same bytes.
  const at::Tensor scores = categories.scores.to(at::kDouble).contiguous();
  const at::Tensor labels = categories.labels.contiguous();
  const int64_t tracks = labels.size(0);
  out << "[";
  for (int64_t k = 0; k < tracks; ++k) {
    out << (k ? ", " : "") << "{\"video_id\": " << video_id
        << ", \"category_id\": " << labels[k].item<int64_t>() + 1
        << ", \"score\": " << python_float(scores[k].item<double>()) << ", \"segmentations\": [";
    const auto track = rles_.find(k);
    for (int64_t t = 0; t < frames_; ++t) {
      out << (t ? ", " : "");
      const Rle* rle = nullptr;
      if (track != rles_.end()) {
        const auto it = track->second.find(t);
        rle = it == track->second.end() ? nullptr : &it->second;
      }
      if (!rle) {
        out << "null";
        continue;
      }
      out << "{\"size\": [" << rle->height << ", " << rle->width << "], \"counts\": \"";
      for (char c : rle->counts) {
        out << (c == '\\' ? "\\\\" : std::string(1, c));  // '\\' (92) is one of the 64 characters
      }
      out << "\"}";
    }
    out << "]}";
  }
  out << "]";
}

}  // namespace visolo
