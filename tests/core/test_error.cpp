#include <gtest/gtest.h>

#include "core/error.h"

namespace bitnet {

TEST(Error, FailFormatsMessage) {
  try {
    fail("tensor '{}' at offset {}", "blk.0.attn_q.weight", 1234);
    FAIL() << "fail() returned";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'blk.0.attn_q.weight' at offset 1234");
  }
}

TEST(ErrorDeathTest, CheckPrintsFileAndLine) {
  EXPECT_DEATH(BN_CHECK(1 + 1 == 3, "math is {}", "broken"), "test_error.cpp:[0-9]+: CHECK failed: 1 \\+ 1 == 3: math is broken");
}

}  // namespace bitnet
