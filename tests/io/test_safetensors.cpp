#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace bitnet {
namespace {

namespace fs = std::filesystem;

SafetensorsFile parse_copy(const std::vector<uint8_t>& bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(bytes);
  return SafetensorsFile::parse(buf, buf->data(), buf->size(), "test.safetensors");
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_copy(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_ST_ERROR(bytes, substr) \
  EXPECT_NE(parse_error(bytes).find(substr), std::string::npos) << parse_error(bytes)

// A file from a raw JSON header and `data_bytes` bytes of data.
std::vector<uint8_t> raw_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(header.size() >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0x5A);
  return b;
}

std::vector<uint8_t> bytes_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 13);
  return b;
}

SafetensorsWriter sample_writer() {
  SafetensorsWriter w;
  w.metadata = {{"format", "pt"}, {"note", "h\xc3\xa9llo"}};
  Tensor f32 = Tensor::empty(DType::F32, {2, 3}, "model.layers.0.weight");
  for (int i = 0; i < 6; ++i) f32.mutable_data_as<float>()[i] = static_cast<float>(i) - 2.5f;
  w.add_tensor(f32);
  w.add_tensor("bf16", "BF16", {4}, bytes_of(8, 1));
  w.add_tensor("f16", "F16", {1, 3}, bytes_of(6, 2));
  w.add_tensor("packed", "U8", {2, 8}, bytes_of(16, 3));
  w.add_tensor("i8", "I8", {5}, bytes_of(5, 4));
  w.add_tensor("i32", "I32", {2}, bytes_of(8, 5));
  w.add_tensor("i64", "I64", {1}, bytes_of(8, 6));
  w.add_tensor("empty", "F32", {0, 4}, {});
  w.add_tensor("scalar", "F32", {}, bytes_of(4, 7));
  return w;
}

TEST(Safetensors, RoundTrip) {
  const SafetensorsWriter w = sample_writer();
  const auto bytes = w.serialize();
  EXPECT_EQ(bytes[8], '{');
  SafetensorsFile f = parse_copy(bytes);
  EXPECT_EQ((f.data_offset() - 8) % 8, 0u);
  EXPECT_EQ(f.metadata(), w.metadata);
  ASSERT_EQ(f.tensors().size(), w.tensors.size());
  for (const auto& src : w.tensors) {
    SCOPED_TRACE(src.name);
    const SafetensorsTensorInfo* info = f.find_tensor(src.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, src.dtype);
    EXPECT_EQ(info->shape, src.shape);
    ASSERT_EQ(info->nbytes(), src.bytes.size());
    EXPECT_TRUE(std::equal(src.bytes.begin(), src.bytes.end(), f.tensor_data(*info)));
  }
  Tensor t = f.tensor("model.layers.0.weight");
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
  float x[6];
  std::memcpy(x, t.data(), sizeof x);
  EXPECT_EQ(x[5], 2.5f);
  EXPECT_EQ(f.tensor("packed").dtype(), DType::I8);  // U8 bytes as I8
  EXPECT_EQ(f.tensor("bf16").dtype(), DType::BF16);
  EXPECT_EQ(f.tensor("scalar").numel(), 1);
  EXPECT_EQ(f.tensor("empty").numel(), 0);
  EXPECT_THROW(f.tensor("i64"), Error);  // listed but not loadable
  EXPECT_THROW(f.tensor("missing"), Error);
  // Tensors are listed in data order.
  for (size_t i = 1; i < f.tensors().size(); ++i)
    EXPECT_LE(f.tensors()[i - 1].end, f.tensors()[i].begin);
  // Writing what was read gives the same bytes (the writer keeps insertion order).
  SafetensorsWriter again;
  again.metadata = f.metadata();
  for (const auto& src : w.tensors) {
    const auto* info = f.find_tensor(src.name);
    again.add_tensor(info->name, info->dtype, info->shape,
                     std::vector<uint8_t>(f.tensor_data(*info), f.tensor_data(*info) + info->nbytes()));
  }
  EXPECT_EQ(again.serialize(), bytes);
}

TEST(Safetensors, EveryTruncationFailsCleanly) {
  const auto bytes = sample_writer().serialize();
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len));
    EXPECT_THROW(parse_copy(prefix), Error) << "prefix " << len;
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_ST_ERROR(longer, "belong to no tensor");
}

TEST(Safetensors, RefusesCorruptHeaders) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(parse_copy(raw_file(ok, 8)));
  EXPECT_ST_ERROR(std::vector<uint8_t>(5, 0), "truncated");
  {
    auto b = raw_file(ok, 8);
    b[7] = 0x80;  // header length 2^63
    EXPECT_ST_ERROR(b, "exceeds");
    b[7] = 0;
    b[2] = 0x10;  // 1 MiB: past the end
    EXPECT_ST_ERROR(b, "past the end of the file");
  }
  EXPECT_ST_ERROR(raw_file("[1,2]", 0), "not a JSON object");
  EXPECT_ST_ERROR(raw_file("{\"a\":", 0), "invalid JSON");
  EXPECT_ST_ERROR(raw_file("{\"a\":\"\xff\"}", 0), "invalid JSON");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
                  "duplicate JSON key \"a\"");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", 8), "unsupported dtype \"Q9\"");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "non-negative");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "shape");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "data_offsets");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 7), "past the end of the data");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", 8), "past the end");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12 bytes");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8), "overflows");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8), "overflows");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlaps");
  EXPECT_ST_ERROR(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12), "gap");
  EXPECT_ST_ERROR(raw_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__");
  EXPECT_ST_ERROR(raw_file(R"({"__metadata__":[]})", 0), "__metadata__");
  EXPECT_ST_ERROR(raw_file(R"({"a":7})", 0), "tensor 'a'");
  EXPECT_NO_THROW(parse_copy(raw_file(R"({"__metadata__":{"k":"v"}}   )", 0)));
  // Deep nesting is an error, not a stack overflow.
  EXPECT_THROW(parse_copy(raw_file("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 0)), Error);
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("bitnet_st_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

TEST(Safetensors, SingleFileAndShardedModel) {
  TempDir dir;
  SafetensorsWriter a, b;
  a.add_tensor("x", "F32", {2}, bytes_of(8, 1));
  a.add_tensor("y", "U8", {3}, bytes_of(3, 2));
  b.add_tensor("z", "F16", {2, 2}, bytes_of(8, 3));
  a.write((dir.path / "model-00001-of-00002.safetensors").string());
  b.write((dir.path / "model-00002-of-00002.safetensors").string());
  b.write((dir.path / "single.safetensors").string());

  SafetensorsModel one = SafetensorsModel::open((dir.path / "single.safetensors").string());
  EXPECT_EQ(one.tensor_names(), (std::vector<std::string>{"z"}));

  write_text(dir.path / "model.safetensors.index.json",
             R"({"metadata":{"total_size":19},"weight_map":{"x":"model-00001-of-00002.safetensors",
                 "y":"model-00001-of-00002.safetensors","z":"model-00002-of-00002.safetensors"}})");
  for (const auto& p : {dir.path, dir.path / "model.safetensors.index.json"}) {
    SafetensorsModel m = SafetensorsModel::open(p.string());
    EXPECT_EQ(m.files.size(), 2u);
    EXPECT_EQ(m.tensor_names(), (std::vector<std::string>{"x", "y", "z"}));
    EXPECT_EQ(m.tensor("z").shape(), (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(m.tensor("y").data()[2], bytes_of(3, 2)[2]);
    EXPECT_EQ(m.find_tensor("q"), nullptr);
    EXPECT_THROW(m.tensor("q"), Error);
    EXPECT_EQ(m.index_metadata.size(), 1u);
  }

  auto index_error = [&](const std::string& json) -> std::string {
    write_text(dir.path / "bad.index.json", json);
    try {
      SafetensorsModel::open((dir.path / "bad.index.json").string());
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(index_error(R"({"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}})").find("weight_map says"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"q":"model-00002-of-00002.safetensors"}})").find("not in its shard"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":"../etc/passwd"}})").find("outside"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":"/etc/passwd"}})").find("outside"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":"missing.safetensors"}})").find("missing.safetensors"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":"single.safetensors","z":"model-00002-of-00002.safetensors"}})").find("in both"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":[]})").find("weight_map"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map":{"x":3}})").find("not a string"), std::string::npos);
  EXPECT_NE(index_error("{").find("invalid JSON"), std::string::npos);
  EXPECT_THROW(SafetensorsModel::open((dir.path / "nope.safetensors").string()), Error);
}

TEST(Safetensors, WriterChecksItsInput) {
  SafetensorsWriter w;
  EXPECT_THROW(w.add_tensor("a", "F32", {3}, bytes_of(8, 0)), Error);
  EXPECT_THROW(w.add_tensor("a", "Q4", {3}, bytes_of(3, 0)), Error);
  EXPECT_THROW(w.add_tensor("__metadata__", "U8", {3}, bytes_of(3, 0)), Error);
  w.add_tensor("a", "U8", {3}, bytes_of(3, 0));
  EXPECT_THROW(w.add_tensor("a", "U8", {3}, bytes_of(3, 0)), Error);
  EXPECT_THROW(w.add_tensor(Tensor::empty(DType::TQ2_0, {256}, "t")), Error);
}

}  // namespace
}  // namespace bitnet
