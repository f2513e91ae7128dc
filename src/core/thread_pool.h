#pragma once
// A persistent pool for the forward pass: about 200 parallel sections run per decoded token, so
// dispatch + join must cost microseconds, not the tens of microseconds of a condition variable.
// Workers spin on a generation counter for a short while after each job (so back-to-back
// sections never touch the kernel), then sleep on a futex (std::atomic::wait). The calling thread
// is worker 0 and does its share of every job.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace bitnet {

class ThreadPool {
 public:
  // n_threads counts the caller; 1 means everything runs inline. 0 picks hardware_concurrency.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_; }

  // Calls f(tid) once on each of the size() threads (tid 0 is the caller) and returns when all
  // have finished. Not reentrant: f must not call run() on the same pool.
  template <typename F>
  void run(F&& f) {
    using Fn = std::remove_reference_t<F>;
    run_impl([](void* ctx, int tid) { (*static_cast<Fn*>(ctx))(tid); }, &f);
  }

  // Splits [0, n) into size() contiguous ranges, each a multiple of `grain` (except the last), and
  // calls f(begin, end) for each non-empty one.
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& f) {
    const int64_t chunks = chunks_or_inline(n, grain, f);
    if (chunks == 0) return;
    run([&](int tid) {
      const int64_t c0 = chunks * tid / n_, c1 = chunks * (tid + 1) / n_;
      const int64_t b = c0 * grain, e = c1 * grain < n ? c1 * grain : n;
      if (b < e) f(b, e);
    });
  }

  // Splits [0, n) into chunks of `grain` (the last may be shorter) that the threads claim in
  // order from a shared counter, calling f(begin, end) per chunk. For memory-bound streams (the
  // decode GEMV, the output head): a thread slowed down by another tenant or an interrupt takes
  // fewer chunks instead of leaving the others spinning at the join, where they stream nothing.
  // Which thread runs a chunk must not change results (each chunk writes its own outputs). With
  // one thread, or one chunk, f(0, n) is called once.
  template <typename F>
  void parallel_for_dynamic(int64_t n, int64_t grain, F&& f) {
    const int64_t chunks = chunks_or_inline(n, grain, f);
    if (chunks == 0) return;
    alignas(64) std::atomic<int64_t> next{0};
    run([&](int) {
      for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
           c = next.fetch_add(1, std::memory_order_relaxed)) {
        const int64_t b = c * grain;
        f(b, b + grain < n ? b + grain : n);
      }
    });
  }

  // Like parallel_for, each thread starts on its own contiguous share of the grain-sized chunks,
  // in order (so per-token data stays with the same core from one section to the next); a thread
  // that finishes its share then takes the chunks still unclaimed in the others' shares, in
  // order. So a thread slowed down by another tenant leaves its remaining chunks to the rest
  // instead of holding up the join. Which thread runs a chunk must not change results. Calls
  // f(tid, begin, end), tid being the running thread (for per-thread scratch).
  template <typename F>
  void parallel_for_stealing(int64_t n, int64_t grain, F&& f) {
    auto inline_f = [&](int64_t b, int64_t e) { f(0, b, e); };
    const int64_t chunks = chunks_or_inline(n, grain, inline_f);
    if (chunks == 0) return;
    struct alignas(64) Share {
      std::atomic<int64_t> next;
      int64_t end;
    };
    std::vector<Share> shares(static_cast<size_t>(n_));
    for (int t = 0; t < n_; ++t) {
      shares[static_cast<size_t>(t)].next.store(chunks * t / n_, std::memory_order_relaxed);
      shares[static_cast<size_t>(t)].end = chunks * (t + 1) / n_;
    }
    run([&](int tid) {
      for (int v = 0; v < n_; ++v) {
        Share& sh = shares[static_cast<size_t>((tid + v) % n_)];
        for (int64_t c = sh.next.fetch_add(1, std::memory_order_relaxed); c < sh.end;
             c = sh.next.fetch_add(1, std::memory_order_relaxed)) {
          const int64_t b = c * grain;
          f(tid, b, b + grain < n ? b + grain : n);
        }
      }
    });
  }

  // How long workers spin before sleeping (microseconds). Default 200.
  void set_spin_us(int us) { spin_us_ = us; }

 private:
  // The number of grain-sized chunks (grain raised to >= 1) over [0, n); 0 when there is nothing
  // to split: n <= 0, or one thread or one chunk, in which case f(0, n) has already run inline.
  template <typename F>
  int64_t chunks_or_inline(int64_t n, int64_t& grain, F& f) {
    if (n <= 0) return 0;
    if (grain < 1) grain = 1;
    const int64_t chunks = (n + grain - 1) / grain;
    if (n_ == 1 || chunks == 1) {
      f(int64_t{0}, n);
      return 0;
    }
    return chunks;
  }

  using JobFn = void (*)(void*, int);
  void run_impl(JobFn fn, void* ctx);
  void worker_loop(int tid);

  int n_ = 1;
  int spin_us_ = 200;
  std::vector<std::thread> threads_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  JobFn job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  bool stop_ = false;
};

}  // namespace bitnet
