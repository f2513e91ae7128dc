#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace bitnet {

TEST(DType, RowBytesOfPackedTypes) {
  EXPECT_EQ(row_bytes(DType::F32, 10), 40u);
  EXPECT_EQ(row_bytes(DType::TQ2_0, 512), 132u);
  EXPECT_EQ(row_bytes(DType::TQ1_0, 256), 54u);
  EXPECT_EQ(row_bytes(DType::Q8_0, 64), 68u);
  EXPECT_EQ(row_bytes(DType::Q6_K, 256), 210u);
  EXPECT_THROW(row_bytes(DType::TQ2_0, 100), Error);
  EXPECT_EQ(Tensor::nbytes(DType::I2_S, {4, 128}), 4u * 32 + 32);  // packed + scale trailer
  EXPECT_EQ(dtype_from_name("TQ2_0"), DType::TQ2_0);
  EXPECT_FALSE(dtype_from_name("q3_k").has_value());
}

TEST(Tensor, EmptyIsAlignedAndZeroed) {
  Tensor t = Tensor::empty(DType::F32, {3, 5}, "x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  EXPECT_EQ(t.numel(), 15);
  EXPECT_EQ(t.rows(), 3);
  EXPECT_EQ(t.cols(), 5);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(t.data_as<float>()[i], 0.0f);
}

TEST(Tensor, SliceAndReshapeShareStorage) {
  Tensor t = Tensor::empty(DType::F32, {4, 3});
  for (int i = 0; i < 12; ++i) t.mutable_data_as<float>()[i] = static_cast<float>(i);
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s.data_as<float>()[0], 3.0f);
  EXPECT_EQ(s.data_as<float>()[5], 8.0f);
  Tensor r = t.reshape({2, 6});
  EXPECT_EQ(r.data(), t.data());
  EXPECT_THROW(t.reshape({5, 2}), Error);
  Tensor q = Tensor::empty(DType::TQ2_0, {2, 256});
  EXPECT_THROW(q.reshape({4, 128}), Error);  // 128 is not a whole TQ2_0 block
  Tensor v = Tensor::empty(DType::I32, {10});
  EXPECT_EQ(v.slice(4, 6).data(), v.data() + 16);
}

TEST(Tensor, BorrowKeepsOwnerAlive) {
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4});
  Tensor t = Tensor::borrow(DType::F32, {2, 2}, owner->data(), owner);
  std::weak_ptr<std::vector<float>> weak = owner;
  owner.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(t.data_as<float>()[3], 4.0f);
  EXPECT_FALSE(t.owns_data());
}

TEST(Half, F16RoundTripsAndRounds) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    const float f = f16_to_f32(x);
    if (f != f) continue;  // NaN payloads need not survive bit for bit
    EXPECT_EQ(f32_to_f16(f), x) << h;
  }
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3C00);  // tie -> even
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(f32_to_f16(70000.0f), 0x7C00);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3F80);        // tie -> even
  EXPECT_EQ(bf16_to_f32(0x3F81), 1.0078125f);
}

TEST(MappedFile, MapsAndNamesMissingFile) {
  const std::string path = ::testing::TempDir() + "/bitnet_map_test.bin";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_TRUE(f);
  std::fwrite("hello", 1, 5, f);
  std::fclose(f);
  auto m = MappedFile::open(path);
  ASSERT_EQ(m->size(), 5u);
  EXPECT_EQ(std::memcmp(m->data(), "hello", 5), 0);
  try {
    MappedFile::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

// Resident bytes of the mapping that contains p, from /proc/self/smaps (Linux).
static long resident_kb_of_mapping(const void* p) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  const auto a = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  while (std::getline(in, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 17) {
      inside = a >= lo && a < hi;
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      return std::stol(line.substr(4));
    }
  }
  return -1;
}

TEST(MappedFile, ReleaseDropsResidentPagesAndKeepsTheData) {
  const std::string path = ::testing::TempDir() + "/bitnet_release_test.bin";
  std::vector<uint8_t> bytes(8 << 20);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 31 + 7);
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_TRUE(f);
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
  auto m = MappedFile::open(path);
  ASSERT_EQ(std::memcmp(m->data(), bytes.data(), bytes.size()), 0);  // touches every page
  const long before = resident_kb_of_mapping(m->data());
  if (before < 0) GTEST_SKIP() << "no /proc/self/smaps here";
  EXPECT_GE(before, 7 * 1024);
  m->release(m->data() + 100, bytes.size() - 200);  // interior pages only
  const long after = resident_kb_of_mapping(m->data());
  EXPECT_LE(after, 16) << "before " << before;
  EXPECT_EQ(std::memcmp(m->data(), bytes.data(), bytes.size()), 0);  // faults back in intact
  std::remove(path.c_str());
}

}  // namespace bitnet
