// Prints the COCO RLE counts that visolo::encode_rle makes of masks read from a file, one line
// per mask ("null" for an empty one), for tests/cpp/tracker_parity.py to compare with
// pycocotools byte for byte.
//
// Usage: test_rle MASKS   (MASKS: int64 N, H, W, then N * H * W bytes 0/1, row-major)

#include <cstdint>
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>

#include "visolo/ytvis.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " MASKS" << std::endl;
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  int64_t shape[3];
  if (!in.read(reinterpret_cast<char*>(shape), sizeof(shape))) {
    std::cerr << argv[1] << ": no header" << std::endl;
    return 1;
  }
  at::Tensor masks = at::empty({shape[0], shape[1], shape[2]}, at::kBool);
  if (!in.read(reinterpret_cast<char*>(masks.mutable_data_ptr<bool>()), masks.numel())) {
    std::cerr << argv[1] << ": cut short" << std::endl;
    return 1;
  }
  for (int64_t i = 0; i < shape[0]; ++i) {
    const std::optional<visolo::Rle> rle = visolo::encode_rle(masks[i]);
    std::cout << (rle ? rle->counts : "null") << "\n";
  }
  return 0;
}
