// The device list: empty with a reason on a machine without a GPU (CI), real properties with one.
#include <gtest/gtest.h>

#include "core/error.h"
#include "cuda/device.h"

namespace bitnet::cuda {
namespace {

TEST(CudaDevice, ListOrReason) {
  const auto d = devices();
  const std::string why = unavailable_reason();
  if (d.empty()) {
    EXPECT_FALSE(why.empty());
    EXPECT_THROW(require_device(), Error);
    GTEST_SKIP() << "no GPU here: " << why;
  }
  EXPECT_TRUE(why.empty());
  EXPECT_NO_THROW(require_device());
  for (const GpuInfo& g : d) {
    EXPECT_FALSE(g.name.empty());
    EXPECT_GE(g.cc_major, 7);
    EXPECT_GT(g.multiprocessors, 0);
    EXPECT_GT(g.memory_bytes, size_t{1} << 30);
  }
}

}  // namespace
}  // namespace bitnet::cuda
