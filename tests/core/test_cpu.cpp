#include <gtest/gtest.h>

#include "core/cpu.h"

namespace bitnet {

TEST(Cpu, FeatureImplicationsHold) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512bw || f.avx512vl || f.avx512vnni) {
    EXPECT_TRUE(f.avx512f);
  }
  if (f.avxvnni) {
    EXPECT_TRUE(f.avx2);
  }
  if (f.amx_int8) {
    EXPECT_TRUE(f.amx_tile);
  } else {
    EXPECT_FALSE(request_amx());
  }
  EXPECT_FALSE(cpu_summary().empty());
}

}  // namespace bitnet
