#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "core/arena.h"
#include "core/memory.h"
#include "core/read_probe.h"
#include "core/thread_pool.h"

namespace bitnet {

TEST(Memory, AccountsLiveAndPeak) {
  const auto before = memory_stats();
  {
    AlignedBuffer a(1000), b(3000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
    EXPECT_EQ(memory_stats().live_bytes, before.live_bytes + 4000);
    EXPECT_GE(memory_stats().peak_bytes, before.live_bytes + 4000);
  }
  EXPECT_EQ(memory_stats().live_bytes, before.live_bytes);
}

TEST(Arena, ReachesZeroAllocationsInSteadyState) {
  Arena arena;
  auto step = [&] {
    for (int i = 1; i <= 20; ++i) {
      void* p = arena.alloc_bytes(static_cast<size_t>(i) * 100000);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    }
    arena.reset();
  };
  step();  // grows: several blocks
  step();  // one merged block of the high-water size
  const uint64_t blocks = arena.block_allocations();
  const uint64_t global = memory_stats().allocations;
  for (int i = 0; i < 5; ++i) step();
  EXPECT_EQ(arena.block_allocations(), blocks);
  EXPECT_EQ(memory_stats().allocations, global);
  EXPECT_GE(arena.capacity(), arena.high_water());
}

TEST(Arena, DistinctAllocationsDoNotOverlap) {
  Arena arena(256);
  auto* a = arena.alloc<uint8_t>(100);
  auto* b = arena.alloc<uint8_t>(100);
  auto* c = arena.alloc<uint8_t>(5000);  // forces a new block
  EXPECT_GE(b, a + 100);
  for (int i = 0; i < 100; ++i) a[i] = 1, b[i] = 2;
  for (int i = 0; i < 5000; ++i) c[i] = 3;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a[i] + b[i], 3);
}

}  // namespace bitnet

namespace bitnet {

// timed_read touches exactly its ranges: odd sizes ending at the end of their allocations (the
// sanitizer build catches any read past them), empty ranges, one or two threads.
TEST(ReadProbe, ReadsOddRangesToTheirLastByte) {
  std::vector<std::unique_ptr<uint8_t[]>> keep;
  std::vector<std::span<const uint8_t>> ranges;
  for (size_t n : {size_t{1}, size_t{63}, size_t{65}, size_t{(256 << 10) + 7}, size_t{0}, size_t{1000003}}) {
    keep.emplace_back(new uint8_t[n ? n : 1]);
    std::memset(keep.back().get(), 0x5A, n);
    ranges.emplace_back(keep.back().get(), n);
  }
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (bool prefetch : {false, true}) {
      EXPECT_GT(timed_read(pool, ranges, prefetch), 0.0);
      EXPECT_GE(timed_read(pool, {}, prefetch), 0.0);
    }
  }
}

}  // namespace bitnet
