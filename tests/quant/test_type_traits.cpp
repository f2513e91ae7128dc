// The type table (quant/type_traits.h): every row's facts, and every kernel it points at reached
// through it. Sizes and ids are also pinned by static_asserts in type_traits.cpp; this repeats them
// per row so a failing row names itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"
#include "quant/dequant.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"
#include "quant/type_traits.h"

namespace bitnet {
namespace {

std::vector<DType> all_types() {
  std::vector<DType> v;
  for (size_t i = 0; i < kDTypeCount; ++i) v.push_back(static_cast<DType>(i));
  return v;
}

std::vector<DType> stored_ternary_types() {
  std::vector<DType> v;
  for (DType t : all_types())
    if (type_traits(t).stored_ternary()) v.push_back(t);
  return v;
}

// The scale a block keeps: TQ stores fp16, I2_S fp32.
float stored_scale(const TypeTraits& r, float s) {
  return r.tensor_scale ? s : f16_to_f32(f32_to_f16(s));
}

}  // namespace

TEST(TypeTraits, EveryRowAsTheFormatsDefineIt) {
  struct Want {
    DType t;
    std::optional<uint32_t> id;
    uint32_t elems, bytes, trailer;
    bool ternary, pack, dequantize, quantize;
  };
  const Want want[] = {
      {DType::F32, 0, 1, 4, 0, false, false, true, true},
      {DType::F16, 1, 1, 2, 0, false, false, true, true},
      {DType::BF16, 30, 1, 2, 0, false, false, true, true},
      {DType::I8, 24, 1, 1, 0, false, false, false, false},
      {DType::I32, 26, 1, 4, 0, false, false, false, false},
      {DType::Q8_0, 8, 32, 34, 0, false, false, true, true},
      {DType::Q4_0, 2, 32, 18, 0, false, false, true, true},
      {DType::Q6_K, 14, 256, 210, 0, false, false, true, true},
      {DType::TQ1_0, 34, 256, 54, 0, true, true, false, false},
      {DType::TQ2_0, 35, 256, 66, 0, true, true, false, false},
      {DType::I2_S, 36, 4, 1, 32, true, true, false, false},
      {DType::TNAT, std::nullopt, 4, 1, 0, true, false, false, false},
      {DType::Q8_0X, std::nullopt, 512, 544, 0, false, false, true, false},
      {DType::Q6_KX, std::nullopt, 256, 210, 0, false, false, false, false},
  };
  ASSERT_EQ(std::size(want), kDTypeCount);
  for (const Want& w : want) {
    const TypeTraits& r = type_traits(w.t);
    SCOPED_TRACE(std::string(dtype_name(w.t)));
    EXPECT_EQ(r.info.name, dtype_name(w.t));
    EXPECT_EQ(r.ggml_type, w.id);
    EXPECT_EQ(ggml_from_dtype(w.t), w.id);
    if (w.id) {
      EXPECT_EQ(dtype_from_ggml(*w.id), w.t);
    }
    EXPECT_EQ(r.info.block_elems, w.elems);
    EXPECT_EQ(r.info.block_bytes, w.bytes);
    EXPECT_EQ(r.info.tensor_trailer_bytes, w.trailer);
    EXPECT_EQ(r.info.ternary, w.ternary);
    EXPECT_EQ(r.stored_ternary(), w.pack);
    EXPECT_EQ(r.unpack != nullptr, w.pack);
    EXPECT_EQ(r.dequantize != nullptr, w.dequantize);
    EXPECT_EQ(dequant_supported(w.t), w.dequantize);
    EXPECT_EQ(r.quantize != nullptr, w.quantize);
    EXPECT_EQ(quantize_supported(w.t), w.quantize);
  }
  EXPECT_EQ(dtype_from_ggml(12), std::nullopt);  // Q4_K: named by ggml_type_name, not read
  EXPECT_EQ(dtype_from_ggml(1000), std::nullopt);
}

TEST(TypeTraits, NamesForMessagesAndChoices) {
  EXPECT_EQ(type_names(&TypeTraits::pack), (std::vector<std::string>{"tq1_0", "tq2_0", "i2_s"}));
  EXPECT_EQ(type_names(&TypeTraits::quantize),
            (std::vector<std::string>{"f32", "f16", "bf16", "q8_0", "q4_0", "q6_k"}));
  EXPECT_EQ(or_list({"a"}), "a");
  EXPECT_EQ(or_list({"a", "b", "c"}), "a, b or c");
}

// pack -> unpack gives the codes back, and the scale as stored, for every stored ternary row: odd
// numbers of blocks, every code at once or alternating, extreme scales, whole and sliced.
TEST(TypeTraits, EveryTernaryRowRoundTrips) {
  ASSERT_EQ(stored_ternary_types().size(), 3u);
  for (DType t : stored_ternary_types()) {
    const TypeTraits& r = type_traits(t);
    for (int64_t blocks : {1, 3, 7}) {
      const int64_t n = blocks * r.pack_block;
      std::vector<std::vector<int8_t>> patterns = {
          random_ternary(static_cast<size_t>(n), 7 * blocks), std::vector<int8_t>(static_cast<size_t>(n), -1),
          std::vector<int8_t>(static_cast<size_t>(n), 1), std::vector<int8_t>(static_cast<size_t>(n), 0)};
      std::vector<int8_t> alt(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) alt[static_cast<size_t>(i)] = static_cast<int8_t>(i % 3 - 1);
      patterns.push_back(alt);
      for (float scale : {0.0f, 1.0f, 0.0009765625f, 65504.0f, 6.103515625e-05f}) {
        for (const auto& w : patterns) {
          SCOPED_TRACE(fmt::format("{} n={} scale={}", dtype_name(t), n, scale));
          const std::vector<uint8_t> bytes = pack_ternary(t, w.data(), 1, n, scale, "w");
          ASSERT_EQ(bytes.size(), Tensor::nbytes(t, {1, n}));
          std::vector<uint8_t> direct(bytes.size(), 0xAA);
          r.pack(w.data(), n, scale, direct.data());
          ASSERT_EQ(direct, bytes);

          std::vector<int8_t> back(static_cast<size_t>(n));
          std::vector<float> scales(ternary_scale_count(t, n), -1.0f);
          ASSERT_EQ(scales.size(), r.tensor_scale ? 1u : static_cast<size_t>(blocks));
          unpack_ternary(t, bytes.data(), n, back.data(), scales.data(), "w");
          ASSERT_EQ(back, w);
          for (float s : scales) ASSERT_EQ(s, stored_scale(r, scale));

          if (blocks < 3) continue;
          // The middle pack blocks alone, as the loader reads a slice of rows.
          const int64_t first = r.pack_block, m = (blocks - 2) * r.pack_block;
          std::vector<int8_t> part(static_cast<size_t>(m));
          std::vector<float> part_scales(static_cast<size_t>(blocks), -1.0f);
          r.unpack(bytes.data() + row_bytes(t, first), m, part.data(), part_scales.data(), "w", first);
          ASSERT_TRUE(std::equal(part.begin(), part.end(), w.begin() + first));
          if (r.tensor_scale) {
            EXPECT_EQ(r.tensor_scale(bytes.data(), n), scale);
          } else {
            for (int64_t b = 0; b < blocks - 2; ++b)
              ASSERT_EQ(part_scales[static_cast<size_t>(b)], stored_scale(r, scale));
          }
        }
      }
    }
  }
}

TEST(TypeTraits, TernaryShapesAndTypesAreChecked) {
  const std::vector<int8_t> w(512, 1);
  EXPECT_TRUE(ternary_fits(DType::I2_S, 2, 64));
  EXPECT_FALSE(ternary_fits(DType::TQ2_0, 2, 64));  // rows of 64: not whole 256-weight blocks
  EXPECT_FALSE(ternary_fits(DType::I2_S, 3, 4));    // 12 weights: not a whole 128-weight block
  EXPECT_FALSE(ternary_fits(DType::F16, 1, 256));
  EXPECT_THROW(pack_ternary(DType::TQ2_0, w.data(), 2, 64, 1.0f, "t"), Error);
  EXPECT_THROW(pack_ternary(DType::I2_S, w.data(), 3, 4, 1.0f, "t"), Error);
  EXPECT_THROW(pack_ternary(DType::F16, w.data(), 1, 256, 1.0f, "t"), Error);
  EXPECT_THROW(pack_ternary(DType::TNAT, w.data(), 1, 256, 1.0f, "t"), Error);
  std::vector<int8_t> back(512);
  std::vector<float> s(2);
  EXPECT_THROW(unpack_ternary(DType::TQ2_0, nullptr, 100, back.data(), s.data()), Error);
  EXPECT_THROW(unpack_ternary(DType::I2_S, nullptr, 0, back.data(), s.data()), Error);
  // A code no ternary value has is named with its tensor, through the table as directly.
  for (DType t : {DType::TQ2_0, DType::I2_S}) {
    auto bytes = pack_ternary(t, w.data(), 1, 256, 1.0f, "t");
    bytes[5] = 0xFF;
    try {
      unpack_ternary(t, bytes.data(), 256, back.data(), s.data(), "blk.1.attn_k.weight");
      ADD_FAILURE() << dtype_name(t);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.1.attn_k.weight"), std::string::npos) << e.what();
    }
  }
}

// quantize -> dequantize through the table is what quantize_rows / dequantize_row give, and exact
// where the type holds the values (F32; F16 and BF16 on values they represent).
TEST(TypeTraits, FloatRowsThroughTheTable) {
  const int64_t n = 512;
  auto x = random_floats(static_cast<size_t>(n), 5);
  for (float& v : x) v = bf16_to_f32(f32_to_bf16(v));  // also exact in F16 (8-bit mantissa, |v| < 1)
  for (DType t : all_types()) {
    const TypeTraits& r = type_traits(t);
    if (!r.quantize) continue;
    SCOPED_TRACE(std::string(dtype_name(t)));
    std::vector<uint8_t> bytes(row_bytes(t, n));
    r.quantize(x.data(), n, bytes.data());
    EXPECT_EQ(bytes, quantize_rows(t, x.data(), 1, n));
    std::vector<float> y(static_cast<size_t>(n)), z(y.size());
    r.dequantize(bytes.data(), n, y.data());
    dequantize_row(t, bytes.data(), n, z.data());
    EXPECT_EQ(std::memcmp(y.data(), z.data(), y.size() * 4), 0);
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
      EXPECT_EQ(y, x);
    }
  }
  EXPECT_THROW(quantize_rows(DType::TQ2_0, x.data(), 1, 256), Error);
  std::vector<float> y(256);
  EXPECT_THROW(dequantize_row(DType::I2_S, nullptr, 256, y.data()), Error);
}

}  // namespace bitnet

namespace bitnet {
namespace {
TEST(TypeTraits, RowsKeepTheKernelRules) {
  const char* why = type_table_violation();
  EXPECT_EQ(why, nullptr) << why;
}
}  // namespace
}  // namespace bitnet

namespace bitnet {

// A value a stored type cannot hold (it would be an infinity, or make an infinite fp16 block
// scale) is refused naming it and where it is; the largest storable values pass and come back
// finite; NaN and infinities are refused for every type with a limit.
TEST(TypeTraits, ValuesBeyondATypesRangeAreRefused) {
  struct Case {
    DType t;
    float fits, too_big;
  };
  for (const Case c : {Case{DType::F16, 65504.0f, 70000.0f}, Case{DType::Q8_0, 8.0e6f, 8.4e6f},
                       Case{DType::Q4_0, 5.2e5f, 5.3e5f}, Case{DType::Q6_K, 2.5e8f, 2.6e8f},
                       Case{DType::BF16, 3.3e38f, 3.39e38f}}) {
    SCOPED_TRACE(dtype_name(c.t));
    std::vector<float> x(512, 0.25f), back(512);
    x[300] = -c.fits;
    const auto ok = quantize_rows(c.t, x.data(), 2, 256);
    dequantize_row(c.t, ok.data() + row_bytes(c.t, 256), 256, back.data());
    for (float v : back) ASSERT_TRUE(std::isfinite(v));
    for (const float bad : {c.too_big, -c.too_big, std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity()}) {
      x[300] = bad;
      try {
        quantize_rows(c.t, x.data(), 2, 256);
        ADD_FAILURE() << "took " << bad;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("(row 1, column 44) does not fit type"), std::string::npos)
            << e.what();
      }
    }
  }
  std::vector<float> big(32, 3e38f);
  EXPECT_NO_THROW(quantize_rows(DType::F32, big.data(), 1, 32));
}

}  // namespace bitnet
