#pragma once
// A minimal PNG writer (8-bit RGB, zlib "stored" blocks: no compression library needed), for
// pictures such as the trainer's loss curve.
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // [height][width][3]
  Image(int w, int h, uint8_t gray = 255) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, gray) {}
  void set(int x, int y, uint32_t color) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
    p[0] = static_cast<uint8_t>(color >> 16);
    p[1] = static_cast<uint8_t>(color >> 8);
    p[2] = static_cast<uint8_t>(color);
  }
};

// The PNG file's bytes.
std::vector<uint8_t> encode_png(const Image& img);
// Written atomically (temporary file, rename); throws bitnet::Error on failure.
void write_png(const std::string& path, const Image& img);

}  // namespace bitnet
