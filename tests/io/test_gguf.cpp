#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "quant/formats.h"

namespace bitnet {
namespace {

// Little byte builder for hand-made (and hostile) files.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& raw(std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  template <typename T>
  Bytes& put(T x) {
    for (size_t i = 0; i < sizeof(T); ++i) b.push_back(static_cast<uint8_t>(static_cast<uint64_t>(x) >> (8 * i)));
    return *this;
  }
  Bytes& u32(uint32_t x) { return put(x); }
  Bytes& u64(uint64_t x) { return put(x); }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& pad(size_t a) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes h;
  h.raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  return h;
}

// Parses from an exactly sized heap copy so that ASan catches any read past the end.
GgufFile parse_copy(const std::vector<uint8_t>& bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(bytes);
  return GgufFile::parse(buf, buf->data(), buf->size(), "test.gguf");
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_copy(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_GGUF_ERROR(bytes, substr) \
  EXPECT_NE(parse_error(bytes).find(substr), std::string::npos) << parse_error(bytes)

GgufWriter rich_writer(uint32_t alignment) {
  GgufWriter w;
  w.alignment = alignment;
  w.set("general.architecture", GgufValue::str("bitnet"));
  w.set("k.u8", GgufValue::u8(200));
  w.set("k.i8", GgufValue::i8(-100));
  w.set("k.u16", GgufValue::u16(60000));
  w.set("k.i16", GgufValue::i16(-30000));
  w.set("k.u32", GgufValue::u32(4000000000u));
  w.set("k.i32", GgufValue::i32(-2000000000));
  w.set("k.u64", GgufValue::u64(18000000000000000000ull));
  w.set("k.i64", GgufValue::i64(-9000000000000000000ll));
  w.set("k.f32", GgufValue::f32(0.1f));
  w.set("k.f64", GgufValue::f64(0.1));
  w.set("k.bool", GgufValue::boolean(true));
  w.set("k.str", GgufValue::str(std::string("h\xc3\xa9llo\0x", 8)));
  w.set("k.empty_str", GgufValue::str(""));
  w.set("a.u8", GgufValue::array(GgufType::U8, std::vector<uint64_t>{0, 1, 255}));
  w.set("a.i8", GgufValue::array(GgufType::I8, std::vector<int64_t>{-128, 127}));
  w.set("a.u16", GgufValue::array(GgufType::U16, std::vector<uint64_t>{65535}));
  w.set("a.i16", GgufValue::array(GgufType::I16, std::vector<int64_t>{-32768, 5}));
  w.set("a.u32", GgufValue::array(GgufType::U32, std::vector<uint64_t>{1, 2, 3}));
  w.set("a.i32", GgufValue::array(GgufType::I32, std::vector<int64_t>{-1, 0, 1}));
  w.set("a.u64", GgufValue::array(GgufType::U64, std::vector<uint64_t>{~0ull}));
  w.set("a.i64", GgufValue::array(GgufType::I64, std::vector<int64_t>{INT64_MIN}));
  w.set("a.f32", GgufValue::array(GgufType::F32, std::vector<double>{0.5, -2.0}));
  w.set("a.f64", GgufValue::array(GgufType::F64, std::vector<double>{1e300}));
  w.set("a.bool", GgufValue::array(std::vector<bool>{true, false, true}));
  w.set("a.str", GgufValue::array(std::vector<std::string>{"a", "", "Ġhello"}));
  w.set("a.empty", GgufValue::array(GgufType::U32, std::vector<uint64_t>{}));

  Tensor f32 = Tensor::empty(DType::F32, {3, 5}, "f32");
  for (int i = 0; i < 15; ++i) f32.mutable_data_as<float>()[i] = static_cast<float>(i) * 0.25f;
  w.add_tensor(f32);
  Tensor f16 = Tensor::empty(DType::F16, {7}, "f16");
  for (int i = 0; i < 7; ++i) f16.mutable_data_as<uint16_t>()[i] = f32_to_f16(static_cast<float>(i));
  w.add_tensor(f16);
  std::vector<int8_t> tern(2 * 256);
  for (size_t i = 0; i < tern.size(); ++i) tern[i] = static_cast<int8_t>(static_cast<int>(i * 7 % 3) - 1);
  Tensor tq2 = Tensor::empty(DType::TQ2_0, {2, 256}, "tq2");
  pack_tq2_0(tern.data(), 512, 0.5f, tq2.mutable_data());
  w.add_tensor(tq2);
  Tensor i2s = Tensor::empty(DType::I2_S, {4, 128}, "i2s");
  pack_i2s(tern.data(), 512, 0.75f, i2s.mutable_data());
  w.add_tensor(i2s);
  w.add_tensor(Tensor::empty(DType::Q8_0, {1, 2, 3, 32}, "q8"));
  return w;
}

TEST(Gguf, RoundTripEveryMetadataTypeAndTensors) {
  for (uint32_t alignment : {32u, 1u, 64u}) {
    SCOPED_TRACE(alignment);
    GgufWriter w = rich_writer(alignment);
    const auto bytes = w.serialize();
    GgufFile f = parse_copy(bytes);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), alignment);
    EXPECT_EQ(f.data_offset() % alignment, 0u);
    // Metadata: same keys, order, types and values (plus general.alignment when not 32).
    const size_t extra = alignment == 32 ? 0 : 1;
    ASSERT_EQ(f.metadata().size(), w.kv.size() + extra);
    for (size_t i = 0; i < w.kv.size(); ++i) {
      EXPECT_EQ(f.metadata()[i].first, w.kv[i].first);
      EXPECT_TRUE(f.metadata()[i].second == w.kv[i].second) << w.kv[i].first;
    }
    EXPECT_EQ(f.get_str("k.str"), std::string("h\xc3\xa9llo\0x", 8));
    EXPECT_EQ(f.get_u32("k.u32"), 4000000000u);
    EXPECT_EQ(f.get_i32("k.i32"), -2000000000);
    EXPECT_EQ(f.get_u64("k.u64"), 18000000000000000000ull);
    EXPECT_EQ(f.get_i64("k.i64"), -9000000000000000000ll);
    EXPECT_EQ(f.get_i32("k.u8"), 200);
    EXPECT_EQ(f.get_f32("k.f32"), 0.1f);
    EXPECT_EQ(f.get_f64("k.f64"), 0.1);
    EXPECT_TRUE(f.get_bool("k.bool"));
    EXPECT_EQ(f.get_str_arr("a.str"), (std::vector<std::string>{"a", "", "Ġhello"}));
    EXPECT_EQ(f.get_int_arr("a.i32"), (std::vector<int64_t>{-1, 0, 1}));
    EXPECT_EQ(f.get_int_arr("a.u8"), (std::vector<int64_t>{0, 1, 255}));
    EXPECT_EQ(f.get_f32_arr("a.f32"), (std::vector<float>{0.5f, -2.0f}));
    EXPECT_EQ(f.get_arr("a.empty").size(), 0u);
    // Tensors: same names, types, shapes and bytes, at aligned offsets.
    ASSERT_EQ(f.tensors().size(), w.tensors.size());
    for (size_t i = 0; i < w.tensors.size(); ++i) {
      const auto& info = f.tensors()[i];
      const auto& src = w.tensors[i];
      EXPECT_EQ(info.name, src.name);
      EXPECT_EQ(info.ggml_type, src.ggml_type);
      EXPECT_EQ(info.shape, src.shape);
      EXPECT_EQ(info.offset % alignment, 0u);
      Tensor t = f.tensor(info.name);
      ASSERT_EQ(t.nbytes(), src.bytes.size());
      EXPECT_EQ(std::memcmp(t.data(), src.bytes.data(), src.bytes.size()), 0) << src.name;
      EXPECT_FALSE(t.owns_data());
    }
    EXPECT_EQ(f.tensor("i2s").dtype(), DType::I2_S);
    EXPECT_EQ(f.tensor("i2s").nbytes(), 512u / 4 + 32);
    EXPECT_EQ(f.tensor("q8").shape(), (std::vector<int64_t>{1, 2, 3, 32}));
    // Serializing what was read gives the same bytes.
    GgufWriter again;
    again.alignment = alignment;
    again.kv = f.metadata();
    for (const auto& info : f.tensors()) again.add_tensor(f.tensor(info));
    EXPECT_EQ(again.serialize(), bytes);
  }
}

TEST(Gguf, GettersCheckTypesAndRanges) {
  GgufFile f = parse_copy(rich_writer(32).serialize());
  EXPECT_THROW(f.get_u32("k.i32"), Error);  // negative
  EXPECT_THROW(f.get_i32("k.u32"), Error);  // too large
  EXPECT_THROW(f.get_u32("k.str"), Error);
  EXPECT_THROW(f.get_str("k.u32"), Error);
  EXPECT_THROW(f.get_f32("k.u32"), Error);
  EXPECT_THROW(f.get_bool("k.u8"), Error);
  EXPECT_THROW(f.get_str_arr("a.u32"), Error);
  EXPECT_THROW(f.get_arr("k.u32"), Error);
  EXPECT_THROW(f.get_int_arr("a.u64"), Error);  // ~0 does not fit int64
  EXPECT_EQ(f.get_u32("missing", 7u), 7u);
  EXPECT_EQ(f.get_str("missing", "x"), "x");
  try {
    f.get_u32("missing.key");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.key"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("test.gguf"), std::string::npos);
  }
  EXPECT_THROW(f.tensor("nope"), Error);
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  EXPECT_EQ(f.find("k.u8")->to_string(), "200");
  EXPECT_EQ(f.find("a.str")->to_string(2), "[string x 3] [\"a\", \"\", ...]");
  EXPECT_EQ(f.find("k.f32")->to_string(), "0.1");
  EXPECT_EQ(f.find("a.f32")->to_string(), "[f32 x 2] [0.5, -2]");
}

TEST(Gguf, WriterChecksItsInput) {
  GgufWriter w;
  w.set("k", GgufValue::u32(1));
  w.kv.emplace_back("k", GgufValue::u32(2));
  EXPECT_THROW(w.serialize(), Error);  // duplicate key
  w.kv.pop_back();
  w.set("big", GgufValue::array(GgufType::U8, std::vector<uint64_t>{256}));
  EXPECT_THROW(w.serialize(), Error);  // does not fit u8
  w.set("big", GgufValue::array(GgufType::I8, std::vector<uint64_t>{1}));
  EXPECT_THROW(w.serialize(), Error);  // unsigned values for a signed type
  w.kv.pop_back();
  EXPECT_NO_THROW(w.serialize());
  EXPECT_THROW(w.add_tensor("t", kGgmlF32, {3}, std::vector<uint8_t>(8)), Error);
  EXPECT_THROW(w.add_tensor("t", 12, {-1}, {}), Error);
  EXPECT_THROW(w.add_tensor("t", kGgmlF32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)), Error);
  w.add_tensor("t", kGgmlF32, {1}, std::vector<uint8_t>(4));
  EXPECT_THROW(w.add_tensor("t", kGgmlF32, {1}, std::vector<uint8_t>(4)), Error);
  EXPECT_THROW(w.add_tensor(Tensor::empty(DType::TNAT, {4}, "n")), Error);
}

// The exact bytes of a tiny file: one u32 key, one F32 tensor of 2 elements.
//   0   47 47 55 46              magic "GGUF"
//   4   03 00 00 00              version 3
//   8   01 00 00 00 00 00 00 00  n_tensors = 1
//  16   01 00 00 00 00 00 00 00  n_kv = 1
//  24   01 00 00 00 00 00 00 00  key length 1
//  32   61                       key "a"
//  33   04 00 00 00              value type u32 (4)
//  37   07 00 00 00              value 7
//  41   01 00 00 00 00 00 00 00  tensor name length 1
//  49   74                       name "t"
//  50   01 00 00 00              n_dims 1
//  54   02 00 00 00 00 00 00 00  ne[0] = 2
//  62   00 00 00 00              ggml type F32 (0)
//  66   00 00 00 00 00 00 00 00  offset 0 (relative to the data section)
//  74   22 zero bytes            padding to the alignment (32): data section at 96
//  96   00 00 80 3f 00 00 00 40  1.0f, 2.0f
// 104   24 zero bytes            padding of the tensor to 32 bytes; file size 128
const std::vector<uint8_t> kTiny = [] {
  std::vector<uint8_t> b = {0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                            1,    0,    0,    0,    0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                            'a',  4,    0,    0,    0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                            0,    't',  1,    0,    0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                            0,    0,    0,    0,    0, 0, 0, 0, 0, 0};
  b.resize(96, 0);
  for (uint8_t x : {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40}) b.push_back(x);
  b.resize(128, 0);
  return b;
}();

TEST(Gguf, ByteExactTinyFile) {
  GgufWriter w;
  w.set("a", GgufValue::u32(7));
  const float x[2] = {1.0f, 2.0f};
  std::vector<uint8_t> bytes(8);
  std::memcpy(bytes.data(), x, 8);
  w.add_tensor("t", kGgmlF32, {2}, bytes);
  EXPECT_EQ(w.serialize(), kTiny);
  GgufFile f = parse_copy(kTiny);
  EXPECT_EQ(f.data_offset(), 96u);
  EXPECT_EQ(f.get_u32("a"), 7u);
  EXPECT_EQ(f.tensor("t").data_as<float>()[1], 2.0f);
}

TEST(Gguf, WriteAndOpenFile) {
  const auto path = (std::filesystem::temp_directory_path() /
                     ("bitnet_test_" + std::to_string(::getpid()) + ".gguf")).string();
  rich_writer(32).write(path);
  Tensor t;
  {
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.name(), path);
    t = f.tensor("f32");
  }
  std::filesystem::remove(path);
  EXPECT_EQ(t.data_as<float>()[14], 3.5f);  // the mapping outlives the GgufFile
  EXPECT_THROW(GgufFile::open(path), Error);
}

// Every proper prefix of a valid file fails cleanly, until the last tensor's data is complete.
TEST(Gguf, EveryTruncationFailsCleanly) {
  for (const auto& bytes : {kTiny, rich_writer(32).serialize()}) {
    GgufFile full = parse_copy(bytes);
    size_t needed = 0;
    for (const auto& t : full.tensors())
      needed = std::max<size_t>(needed, full.data_offset() + t.offset + t.nbytes);
    for (size_t len = 0; len < bytes.size(); ++len) {
      std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len));
      if (len < needed) {
        EXPECT_THROW(parse_copy(prefix), Error) << "prefix " << len;
      } else {
        EXPECT_NO_THROW(parse_copy(prefix)) << "prefix " << len;
      }
    }
  }
}

TEST(Gguf, RefusesBadHeaders) {
  EXPECT_GGUF_ERROR(Bytes().raw("GGUX").u32(3).u64(0).u64(0).b, "not a GGUF file");
  EXPECT_GGUF_ERROR(header(0, 0, 1).b, "version 1 is not supported");
  EXPECT_GGUF_ERROR(header(0, 0, 4).b, "version 4");
  EXPECT_GGUF_ERROR(header(0, 0, 0x03000000).b, "big-endian");
  EXPECT_GGUF_ERROR(std::vector<uint8_t>{}, "truncated at byte offset 0");
  EXPECT_NO_THROW(parse_copy(header(0, 0, 2).b));
  EXPECT_NO_THROW(parse_copy(header(0, 0, 3).b));
}

TEST(Gguf, RefusesHostileCounts) {
  EXPECT_GGUF_ERROR(header(0, ~0ull).b, "metadata count");
  EXPECT_GGUF_ERROR(header(~0ull, 0).b, "tensor count");
  EXPECT_GGUF_ERROR(header(1ull << 60, 1ull << 60).b, "count");
  // Key length past the end.
  EXPECT_GGUF_ERROR(header(0, 1).u64(~0ull).zeros(8).b, "length 18446744073709551615");
  // String value length past the end.
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(8).u64(1000).raw("abc").b, "string value of key k");
  // Array count that the remaining bytes cannot hold (no allocation happens first).
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(9).u32(0).u64(1ull << 62).zeros(16).b, "array of");
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(9).u32(8).u64(100).u64(0).b, "does not fit");
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(9).u32(9).u64(1).zeros(16).b, "nested arrays");
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(13).zeros(8).b, "unknown value type 13");
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(9).u32(77).u64(0).b, "unknown element type 77");
  EXPECT_GGUF_ERROR(header(0, 1).str("k").u32(7).put<uint8_t>(2).b, "bool value 2");
  EXPECT_GGUF_ERROR(header(0, 2).str("k").u32(0).put<uint8_t>(1).str("k").u32(0).put<uint8_t>(1).b,
                    "duplicate metadata key 'k'");
}

// One tensor info after an optional alignment key, then `data` bytes.
Bytes one_tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset,
                 size_t data_bytes, std::optional<uint32_t> alignment = std::nullopt) {
  Bytes b = header(1, alignment ? 1 : 0);
  if (alignment) b.str("general.alignment").u32(4).u32(*alignment);
  b.str(name).u32(static_cast<uint32_t>(ne.size()));
  for (auto d : ne) b.u64(d);
  const uint32_t a = alignment.value_or(32);
  b.u32(type).u64(offset).pad(a != 0 && a <= 64 ? a : 32).zeros(data_bytes);
  return b;
}

TEST(Gguf, RefusesHostileTensorInfos) {
  EXPECT_NO_THROW(parse_copy(one_tensor("w", {8}, kGgmlF32, 0, 32).b));
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 0, 31).b, "tensor 'w'");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 0, 31).b, "past the end");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 1ull << 63, 32).b, "past the end");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, ~0ull & ~31ull, 32).b, "past the end");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 4, 64).b, "not a multiple of the alignment 32");
  EXPECT_GGUF_ERROR(one_tensor("w", {1, 1, 1, 1, 1}, kGgmlF32, 0, 32).b, "5 dimensions");
  EXPECT_GGUF_ERROR(one_tensor("w", {1ull << 63}, kGgmlF32, 0, 32).b, "out of range");
  EXPECT_GGUF_ERROR(one_tensor("w", {1ull << 32, 1ull << 32}, kGgmlF32, 0, 32).b, "overflows");
  EXPECT_GGUF_ERROR(one_tensor("w", {0, 1ull << 40, 1ull << 40}, kGgmlF32, 0, 32).b, "overflows");
  EXPECT_GGUF_ERROR(one_tensor("w", {1ull << 40, 1ull << 22}, kGgmlF32, 0, 32).b, "'w'");
  EXPECT_GGUF_ERROR(one_tensor("w", {256}, 12, 0, 256).b, "unsupported ggml type 12 (Q4_K)");
  EXPECT_GGUF_ERROR(one_tensor("w", {256}, 1000, 0, 256).b, "type 1000");
  EXPECT_GGUF_ERROR(one_tensor("w", {100}, kGgmlTQ2_0, 0, 256).b, "whole number of TQ2_0 blocks");
  // Alignment key.
  EXPECT_NO_THROW(parse_copy(one_tensor("w", {8}, kGgmlF32, 64, 96, 64).b));
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 32, 96, 64).b, "alignment 64");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 0, 96, 0).b, "general.alignment 0");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 0, 96, 48).b, "general.alignment 48");
  EXPECT_GGUF_ERROR(one_tensor("w", {8}, kGgmlF32, 0, 96, 1u << 31).b, "power of two");
  EXPECT_GGUF_ERROR(header(0, 1).str("general.alignment").u32(8).str("x").b, "expected u32");
  // Duplicate and overlapping tensors.
  Bytes dup = header(2, 0);
  dup.str("w").u32(1).u64(8).u32(0).u64(0).str("w").u32(1).u64(8).u32(0).u64(32).pad(32).zeros(64);
  EXPECT_GGUF_ERROR(dup.b, "duplicate tensor name 'w'");
  Bytes overlap = header(2, 0);
  overlap.str("a").u32(1).u64(16).u32(0).u64(0).str("b").u32(1).u64(8).u32(0).u64(32).pad(32).zeros(96);
  EXPECT_GGUF_ERROR(overlap.b, "overlap");
  // Truncated in the middle of the tensor infos.
  EXPECT_GGUF_ERROR(header(1, 0).str("weight_name").u32(2).u64(8).b, "truncated");
}

// The files that llama.cpp and bitnet.cpp wrote (../shared/interop).
TEST(Gguf, OpensPeerInteropFiles) {
  const std::filesystem::path dir = std::filesystem::path(BITNET_SHARED_DIR) / "interop";
  if (!std::filesystem::exists(dir / "s1_bitnet_tq2_0.gguf"))
    GTEST_SKIP() << "peer files not found in " << dir << " (../shared is absent)";
  struct Case {
    const char* file;
    const char* arch;
    DType ternary;
  };
  for (const Case& c : {Case{"s1_bitnet_tq1_0.gguf", "bitnet", DType::TQ1_0},
                        Case{"s1_bitnet_tq2_0.gguf", "bitnet", DType::TQ2_0},
                        Case{"s2_b158_i2_s.gguf", "bitnet-b1.58", DType::I2_S}}) {
    SCOPED_TRACE(c.file);
    GgufFile f = GgufFile::open((dir / c.file).string());
    const std::string arch = f.get_str("general.architecture");
    EXPECT_EQ(arch, c.arch);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.get_u32(arch + ".block_count"), 4u);
    EXPECT_EQ(f.get_u32(arch + ".embedding_length"), 256u);
    EXPECT_EQ(f.get_u32(arch + ".feed_forward_length"), 768u);
    EXPECT_EQ(f.get_u32(arch + ".attention.head_count"), 4u);
    EXPECT_EQ(f.get_u32(arch + ".attention.head_count_kv"), 2u);
    EXPECT_EQ(f.get_str_arr("tokenizer.ggml.tokens").size(), 2048u);
    EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "gpt2");
    ASSERT_EQ(f.tensors().size(), 2u + 4u * 11u);
    size_t ternary = 0;
    for (const auto& t : f.tensors()) {
      EXPECT_LE(f.data_offset() + t.offset + t.nbytes, f.file_size()) << t.name;
      Tensor x = f.tensor(t);
      EXPECT_EQ(x.nbytes(), t.nbytes);
      if (t.dtype == c.ternary) {
        ++ternary;
        const auto n = static_cast<size_t>(x.numel());
        std::vector<int8_t> w(n);
        std::vector<float> scales(n / 256 + 1);
        if (c.ternary == DType::TQ1_0) unpack_tq1_0(x.data(), x.numel(), w.data(), scales.data(), t.name);
        if (c.ternary == DType::TQ2_0) unpack_tq2_0(x.data(), x.numel(), w.data(), scales.data(), t.name);
        if (c.ternary == DType::I2_S) unpack_i2s(x.data(), x.numel(), w.data(), scales.data(), t.name);
        EXPECT_GT(scales[0], 0.0f) << t.name;
      } else {
        EXPECT_TRUE(t.dtype == DType::F32 || t.dtype == DType::F16) << t.name;
      }
    }
    EXPECT_EQ(ternary, 4u * 7u);
    EXPECT_EQ(f.tensor("token_embd.weight").shape(), (std::vector<int64_t>{2048, 256}));
    EXPECT_EQ(f.tensor("token_embd.weight").dtype(), DType::F16);
    EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").shape(), (std::vector<int64_t>{256, 768}));
    EXPECT_EQ(f.tensor("blk.3.attn_k.weight").shape(), (std::vector<int64_t>{128, 256}));
    EXPECT_EQ(f.tensor("output_norm.weight").shape(), (std::vector<int64_t>{256}));
  }
}

}  // namespace
}  // namespace bitnet
