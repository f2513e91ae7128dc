#include <gtest/gtest.h>

#include "core/available_memory.h"
#include "core/memory.h"

namespace bitnet {

TEST(AvailableMemory, ReadsMemAvailableInBytes) {
  const char* meminfo =
      "MemTotal:       32768000 kB\nMemFree:         1000000 kB\nMemAvailable:   24153652 kB\nBuffers: 1 "
      "kB\n";
  EXPECT_EQ(meminfo_available(meminfo), size_t{24153652} * 1024);
  EXPECT_EQ(meminfo_available("MemAvailable: 7 kB"), size_t{7} * 1024);  // last line, no newline
  EXPECT_EQ(meminfo_available("MemTotal: 5 kB\n"), std::nullopt);        // an old kernel: no such line
  EXPECT_EQ(meminfo_available("MemAvailable: lots kB\n"), std::nullopt);
  EXPECT_EQ(meminfo_available("MemAvailable: 5 MB\n"), std::nullopt);  // not the kernel's unit
  EXPECT_EQ(meminfo_available("MemAvailable: 99999999999999999999 kB\n"), std::nullopt);
  EXPECT_EQ(meminfo_available(""), std::nullopt);
}

TEST(AvailableMemory, ReadsCgroupNumbers) {
  EXPECT_EQ(cgroup_number("4294967296\n"), size_t{4294967296});
  EXPECT_EQ(cgroup_number("max\n"), std::nullopt);  // v2: no limit
  EXPECT_EQ(cgroup_number(""), std::nullopt);
  EXPECT_EQ(cgroup_number("-1"), std::nullopt);
  EXPECT_EQ(cgroup_number("12 34"), std::nullopt);
}

TEST(AvailableMemory, FindsTheMemoryControllersPath) {
  bool v2 = true;
  // v1 (and a hybrid system, whose v2 line has no memory controller): the memory line's path.
  const char* hybrid = "9:name=systemd:/\n4:memory:/process_api/ee9b\n3:cpuset:/\n0::/\n";
  EXPECT_EQ(cgroup_path(hybrid, v2), "/process_api/ee9b");
  EXPECT_FALSE(v2);
  EXPECT_EQ(cgroup_path("5:cpu,memory,blkio:/box\n", v2), "/box");
  EXPECT_FALSE(v2);
  // Pure v2: the one line.
  EXPECT_EQ(cgroup_path("0::/user.slice/user-1000.slice/session-2.scope\n", v2),
            "/user.slice/user-1000.slice/session-2.scope");
  EXPECT_TRUE(v2);
  EXPECT_EQ(cgroup_path("", v2), std::nullopt);
  EXPECT_EQ(cgroup_path("garbage\n3:cpuset:/\n", v2), std::nullopt);
  EXPECT_EQ(cgroup_path("4:memory\n", v2), std::nullopt);  // cut short
}

// On this machine: something is read (Linux has MemAvailable since 3.14), and it is no more than
// the memory installed.
TEST(AvailableMemory, IsAtMostThePhysicalMemory) {
  const size_t have = available_memory_bytes(), installed = physical_memory_bytes();
  ASSERT_GT(have, 0u);
  EXPECT_LE(have, installed);
}

}  // namespace bitnet
