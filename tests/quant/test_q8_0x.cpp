// Q8_0X (quant/q8_0x.h): the regrouped Q8_0 layout of the head kernels, byte for byte.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/dequant.h"
#include "quant/q8_0x.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

// The documented layout, written out by hand: block L's scale at bytes 2L, value 4v + j of block
// L at byte 32 + 64v + 4L + j as the unsigned w + 128.
TEST(Q8_0X, LayoutIsTheDocumentedOne) {
  std::vector<uint8_t> q8(2 * 16 * 34);  // two superblocks (one row of 1024 values)
  for (int b = 0; b < 32; ++b) {
    const uint16_t d = f32_to_f16(0.5f + b);
    std::memcpy(&q8[static_cast<size_t>(b * 34)], &d, 2);
    for (int i = 0; i < 32; ++i)
      q8[static_cast<size_t>(b * 34 + 2 + i)] = static_cast<uint8_t>(static_cast<int8_t>(b * 3 - i * 4));
  }
  std::vector<uint8_t> x(q8.size(), 0xEE);
  repack_q8_0x_rows(q8.data(), 1, 1024, x.data());
  for (int s = 0; s < 2; ++s)
    for (int L = 0; L < 16; ++L) {
      const int b = 16 * s + L;
      EXPECT_EQ(std::memcmp(&x[static_cast<size_t>(544 * s + 2 * L)], &q8[static_cast<size_t>(b * 34)], 2), 0)
          << b;
      for (int v = 0; v < 8; ++v)
        for (int j = 0; j < 4; ++j) {
          const int8_t w = static_cast<int8_t>(b * 3 - (4 * v + j) * 4);
          EXPECT_EQ(x[static_cast<size_t>(544 * s + 32 + 64 * v + 4 * L + j)], static_cast<uint8_t>(w + 128))
              << "block " << b << " value " << 4 * v + j;
        }
    }
}

// Regrouping moves bytes only: every value dequantizes to the same float.
TEST(Q8_0X, DequantizesToTheSameValues) {
  for (int64_t n : {512, 1536, 2560}) {
    const int64_t rows = 3;
    auto f = random_floats(static_cast<size_t>(rows * n), static_cast<uint64_t>(n));
    const auto q8 = quantize_rows(DType::Q8_0, f.data(), rows, n);
    std::vector<uint8_t> x(q8.size());
    repack_q8_0x_rows(q8.data(), rows, n, x.data());
    ASSERT_EQ(row_bytes(DType::Q8_0X, n), row_bytes(DType::Q8_0, n));
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(DType::Q8_0, q8.data() + r * row_bytes(DType::Q8_0, n), n, a.data());
      dequantize_row(DType::Q8_0X, x.data() + r * row_bytes(DType::Q8_0X, n), n, b.data());
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << "n=" << n << " row " << r;
    }
  }
}

TEST(Q8_0X, RowsOfPartSuperblocksAreErrors) {
  std::vector<uint8_t> q8(34 * 8), x(34 * 8);
  try {
    repack_q8_0x_rows(q8.data(), 1, 256, x.data());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("256"), std::string::npos) << e.what();
  }
  std::vector<float> out(256);
  EXPECT_THROW(dequantize_row(DType::Q8_0X, x.data(), 256, out.data()), Error);
}

}  // namespace
}  // namespace bitnet
