#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/formats.h"
#include "quant/native.h"
#include "quant/random_data.h"

namespace bitnet {

TEST(Formats, I2sRoundTrip) {
  for (int64_t n : {128, 256, 128 * 21}) {
    auto w = random_ternary(static_cast<size_t>(n), static_cast<uint64_t>(n));
    std::vector<uint8_t> buf(i2s_bytes(n));
    pack_i2s(w.data(), n, 0.625f, buf.data());
    EXPECT_EQ(buf.size(), static_cast<size_t>(n / 4 + 32));
    std::vector<int8_t> back(static_cast<size_t>(n));
    float s = 0;
    unpack_i2s(buf.data(), n, back.data(), &s);
    EXPECT_EQ(back, w);
    EXPECT_EQ(s, 0.625f);
  }
  EXPECT_THROW(i2s_bytes(100), Error);
}

TEST(Formats, I2sKnownBytes) {
  // One block. Byte 0 = 0b10'01'00'10: weight 0 (shift 6) code 2 = +1, weight 32 (shift 4) code 1
  // = 0, weight 64 (shift 2) code 0 = -1, weight 96 (shift 0) code 2 = +1. Byte 5 = 0x00: weights
  // 5, 37, 69, 101 = -1. Every other byte 0x55 = four zeros. Scale 0.5 follows the 32 packed bytes.
  std::vector<uint8_t> buf(64, 0x55);
  buf[0] = 0b10010010;
  buf[5] = 0x00;
  const float scale = 0.5f;
  std::memcpy(buf.data() + 32, &scale, 4);
  std::vector<int8_t> w(128);
  float s = 0;
  unpack_i2s(buf.data(), 128, w.data(), &s);
  for (int j = 0; j < 128; ++j) {
    int want = 0;
    if (j == 0 || j == 96) want = 1;
    if (j == 64 || j == 5 || j == 37 || j == 69 || j == 101) want = -1;
    EXPECT_EQ(w[static_cast<size_t>(j)], want) << j;
  }
  EXPECT_EQ(s, 0.5f);
  buf[7] = 0xFF;  // code 3 is not a ternary value
  try {
    unpack_i2s(buf.data(), 128, w.data(), &s, "blk.3.ffn_up.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.3.ffn_up.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("code 3"), std::string::npos);
  }
}

TEST(Formats, Tq2RoundTripAndKnownBytes) {
  auto w = random_ternary(512, 9);
  std::vector<uint8_t> buf(tq2_0_bytes(512));
  pack_tq2_0(w.data(), 512, 1.5f, buf.data());
  std::vector<int8_t> back(512);
  float d[2];
  unpack_tq2_0(buf.data(), 512, back.data(), d);
  EXPECT_EQ(back, w);
  EXPECT_EQ(d[0], 1.5f);
  EXPECT_EQ(d[1], 1.5f);

  // Byte 0 = 0b10'01'00'10: weight 0 (shift 0) code 2 = +1, weight 32 (shift 2) code 0 = -1,
  // weight 64 (shift 4) code 1 = 0, weight 96 (shift 6) code 2 = +1. Byte 33 (second half, m = 1)
  // = 0: weights 129, 161, 193, 225 = -1. d = fp16 1.0 = 0x3C00 at bytes 64..65.
  std::vector<uint8_t> blk(66, 0x55);
  blk[0] = 0b10010010;
  blk[33] = 0x00;
  blk[64] = 0x00;
  blk[65] = 0x3C;
  std::vector<int8_t> v(256);
  unpack_tq2_0(blk.data(), 256, v.data(), d);
  for (int j = 0; j < 256; ++j) {
    int want = 0;
    if (j == 0 || j == 96) want = 1;
    if (j == 32 || j == 129 || j == 161 || j == 193 || j == 225) want = -1;
    EXPECT_EQ(v[static_cast<size_t>(j)], want) << j;
  }
  EXPECT_EQ(d[0], 1.0f);
}

TEST(Formats, Tq1RoundTripAndKnownBytes) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto w = random_ternary(768, seed, seed == 3 ? 0.0 : 1.0 / 3);
    std::vector<uint8_t> buf(tq1_0_bytes(768));
    pack_tq1_0(w.data(), 768, 0.25f, buf.data());
    std::vector<int8_t> back(768);
    float d[3];
    unpack_tq1_0(buf.data(), 768, back.data(), d);
    EXPECT_EQ(back, w);
    EXPECT_EQ(d[2], 0.25f);
  }
  // Hand-computed bytes. qs[0] holds weights 0, 32, 64, 96, 128 with trits (2,0,1,1,0):
  // v = 2*81 + 0*27 + 1*9 + 1*3 + 0 = 174, stored ceil(174 * 256 / 243) = 184.
  // Other qs bytes hold five zeros: trits (1,1,1,1,1), v = 121, ceil(121*256/243) = 128.
  // qh bytes hold four zeros then a 0 trit: v = 40 * 3 = 120, ceil(120*256/243) = 127.
  // qs[40] (second group, m = 8) holds weights 168, 184, 200, 216, 232 as (0,2,2,1,0):
  // v = 0 + 54 + 18 + 3 + 0 = 75, ceil(75*256/243) = 80.
  // qh[1] holds weights 241, 245, 249, 253 as (2,1,1,0) then 0: v = (2*27+9+3+0)*3 = 198 -> 209.
  std::vector<uint8_t> blk(54, 128);
  for (int j = 48; j < 52; ++j) blk[static_cast<size_t>(j)] = 127;
  blk[0] = 184;
  blk[40] = 80;
  blk[49] = 209;
  blk[52] = 0x00;
  blk[53] = 0x38;  // fp16 0.5
  std::vector<int8_t> v(256);
  float d;
  unpack_tq1_0(blk.data(), 256, v.data(), &d);
  std::vector<int8_t> want(256, 0);
  want[0] = 1;
  want[32] = -1;
  want[128] = -1;
  want[168] = -1;
  want[184] = 1;
  want[200] = 1;
  want[232] = -1;
  want[241] = 1;
  want[253] = -1;
  EXPECT_EQ(v, want);
  EXPECT_EQ(d, 0.5f);
}

TEST(Formats, HfPackedRoundTripAndKnownBytes) {
  for (int64_t out : {4, 8, 10, 13}) {
    const int64_t in = 7;
    auto w = random_ternary(static_cast<size_t>(out * in), static_cast<uint64_t>(out));
    std::vector<uint8_t> packed(hf_packed_rows(out) * static_cast<size_t>(in));
    pack_hf(w.data(), out, in, packed.data());
    std::vector<int8_t> back(w.size());
    unpack_hf(packed.data(), out, in, back.data());
    EXPECT_EQ(back, w) << out;
  }
  // out = 8, in = 1: R = 2. Packed row 0 holds rows 0, 2, 4, 6 at bits 0, 2, 4, 6.
  // 0b00'10'01'00 -> row 0 = -1, row 2 = 0, row 4 = +1, row 6 = -1; packed row 1 = 0x55 -> zeros.
  const uint8_t packed[2] = {0b00100100, 0x55};
  int8_t w[8];
  unpack_hf(packed, 8, 1, w);
  const int8_t want[8] = {-1, 0, 0, 0, 1, 0, -1, 0};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(w[i], want[i]) << i;
}

TEST(Native, RoundTripAndLayoutFormula) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 1}, {17, 65}, {16, 64}, {33, 300}}) {
    auto w = random_ternary(static_cast<size_t>(n * k), static_cast<uint64_t>(n * 1000 + k));
    auto m = pack_native(w.data(), n, k, 2.0f);
    EXPECT_EQ(m.n_pad % 16, 0);
    EXPECT_EQ(m.k_pad % 64, 0);
    EXPECT_EQ(m.bytes(), static_cast<size_t>(m.n_pad * m.k_pad / 4));
    std::vector<int8_t> back(w.size());
    unpack_native(m, back.data());
    EXPECT_EQ(back, w);
    // The documented formula: row 16*rb + r, column 16*c + 4*s + i -> byte (rb*chunks + c)*64 + 4r + i,
    // bits 2s..2s+1, code w + 1.
    const int64_t chunks = m.k_pad / 16;
    for (int64_t row = 0; row < n; ++row)
      for (int64_t col = 0; col < k; ++col) {
        const uint8_t byte = m.packed.data()[((row / 16) * chunks + col / 16) * 64 + 4 * (row % 16) + col % 4];
        ASSERT_EQ(static_cast<int>((byte >> (2 * ((col % 16) / 4))) & 3) - 1, w[static_cast<size_t>(row * k + col)]);
      }
  }
}

// The loader packs a fused matrix part by part and a tensor slice by slice: rows packed in pieces
// at any row offset must give the same bytes and scales as packing the whole at once.
TEST(Native, PackingRowsInPiecesEqualsPackingTheWhole) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{37, 100}, {48, 2593}, {5, 64}}) {
    auto w = random_ternary(static_cast<size_t>(n * k), static_cast<uint64_t>(n + k));
    std::vector<float> s(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) s[static_cast<size_t>(r)] = 0.5f + static_cast<float>(r);
    const TernaryMatrix whole = pack_native(w.data(), n, k, s.data());
    TernaryMatrix parts = alloc_native(n, k);
    for (int64_t r0 = 0; r0 < n;) {
      const int64_t r1 = std::min(n, r0 + 1 + r0 % 7);  // uneven pieces
      pack_native_rows(parts, r0, w.data() + r0 * k, r1 - r0, s.data() + r0);
      r0 = r1;
    }
    ASSERT_EQ(whole.bytes(), parts.bytes());
    EXPECT_EQ(std::memcmp(whole.packed.data(), parts.packed.data(), whole.bytes()), 0) << n << "x" << k;
    EXPECT_EQ(std::memcmp(whole.row_scale(), parts.row_scale(), static_cast<size_t>(whole.n_pad) * 4), 0);
  }
}

TEST(Native, RandomNativeIsTernaryWithZeroPadding) {
  auto m = random_native(37, 100, 5, 0.25f);
  std::vector<int8_t> w(37 * 100);
  unpack_native(m, w.data());  // would CHECK-fail on code 3
  auto ref = pack_native(w.data(), 37, 100, 0.25f);
  ASSERT_EQ(ref.bytes(), m.bytes());
  EXPECT_EQ(std::memcmp(ref.packed.data(), m.packed.data(), m.bytes()), 0);  // padding is code 1
  int counts[3] = {0, 0, 0};
  for (int8_t v : w) ++counts[v + 1];
  for (int c : counts) EXPECT_GT(c, 37 * 100 / 4);
}

TEST(Native, ConcatKeepsPerPartScales) {
  auto a = random_ternary(20 * 70, 1), b = random_ternary(5 * 70, 2);
  auto ma = pack_native(a.data(), 20, 70, 0.5f), mb = pack_native(b.data(), 5, 70, 3.0f);
  auto c = concat_rows({&ma, &mb});
  EXPECT_EQ(c.n, 25);
  std::vector<int8_t> back(25 * 70);
  unpack_native(c, back.data());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), back.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), back.begin() + 20 * 70));
  EXPECT_EQ(c.row_scale()[19], 0.5f);
  EXPECT_EQ(c.row_scale()[20], 3.0f);
}

}  // namespace bitnet
