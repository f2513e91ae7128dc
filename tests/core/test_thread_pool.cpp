#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace bitnet {

TEST(ThreadPool, RunCallsEveryThreadOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    for (int rep = 0; rep < 200; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.run([&](int tid) { hits[static_cast<size_t>(tid)].fetch_add(1); });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeExactlyOnceInGrainUnits) {
  ThreadPool pool(3);
  for (int64_t n : {1, 15, 16, 17, 100, 1000}) {
    std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
    pool.parallel_for(n, 16, [&](int64_t b, int64_t e) {
      EXPECT_EQ(b % 16, 0);
      EXPECT_TRUE(e % 16 == 0 || e == n);
      for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
    });
    for (auto& s : seen) ASSERT_EQ(s.load(), 1);
  }
}

// run(f) splits [0, 512) into 64 chunks of 8 on a 2-thread pool, calling f(begin, end) per chunk.
// The thread that claims a chunk first is held there until the other has taken every other chunk
// (or 5 s pass). Checks every index is covered once; returns how many chunks the other took.
template <typename Run>
int chunks_others_take_while_one_is_held(Run&& run) {
  std::atomic<int> chunks_after_first{0};
  std::atomic<bool> first_taken{false};
  std::vector<std::atomic<int>> seen(64 * 8);
  run([&](int64_t b, int64_t e) {
    if (!first_taken.exchange(true)) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (chunks_after_first.load() < 63 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      chunks_after_first.fetch_add(1);
    }
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
  });
  for (auto& s : seen) EXPECT_EQ(s.load(), 1);
  return chunks_after_first.load();
}

// Dynamic chunks: every index once, each chunk exactly `grain` long except the last (one thread:
// the whole range in one call); a thread
// held up in its first chunk leaves the remaining chunks to the others.
TEST(ThreadPool, DynamicChunksCoverRangeOnceAndFlowToFreeThreads) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 15, 16, 17, 100, 1000}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      pool.parallel_for_dynamic(n, 16, [&](int64_t b, int64_t e) {
        EXPECT_EQ(b % 16, 0);
        EXPECT_EQ(e, threads == 1 ? n : std::min<int64_t>(b + 16, n));  // one thread: one call
        for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
      });
      for (auto& s : seen) ASSERT_EQ(s.load(), 1) << threads << " " << n;
    }
  }
  // With static halves the held thread would still owe 31 chunks; here the other one took them.
  ThreadPool pool(2);
  EXPECT_EQ(chunks_others_take_while_one_is_held(
                [&](auto&& f) { pool.parallel_for_dynamic(64 * 8, 8, [&](int64_t b, int64_t e) { f(b, e); }); }),
            63);
}

// Stealing: every index once in grain-sized chunks (one thread: one call with tid 0); tid is the
// caller's or a worker's index; a thread held up in its first chunk leaves the rest of its share to
// the others.
TEST(ThreadPool, StealingCoversRangeOnceAndFlowsToFreeThreads) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 15, 16, 17, 100, 1000}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      pool.parallel_for_stealing(n, 16, [&](int tid, int64_t b, int64_t e) {
        EXPECT_GE(tid, 0);
        EXPECT_LT(tid, threads);
        EXPECT_EQ(b % 16, 0);
        EXPECT_EQ(e, threads == 1 ? n : std::min<int64_t>(b + 16, n));
        for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
      });
      for (auto& s : seen) ASSERT_EQ(s.load(), 1) << threads << " " << n;
    }
  }
  ThreadPool pool(2);
  EXPECT_EQ(chunks_others_take_while_one_is_held([&](auto&& f) {
              pool.parallel_for_stealing(64 * 8, 8, [&](int, int64_t b, int64_t e) { f(b, e); });
            }),
            63);  // static halves would leave 31 to the held thread
}

TEST(ThreadPool, SurvivesSleepAndWake) {
  ThreadPool pool(2);
  pool.set_spin_us(0);  // workers go straight to the futex
  std::atomic<int> total{0};
  for (int i = 0; i < 100; ++i) {
    pool.run([&](int) { total.fetch_add(1); });
    if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(total.load(), 200);
}

}  // namespace bitnet
