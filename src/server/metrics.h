#pragma once
// The server's counters, rendered as Prometheus text by GET /metrics. Thread-safe: HTTP threads
// count responses, the scheduler counts tokens and time to first token.
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace bitnet::server {

struct SchedulerStats;

class Metrics {
 public:
  void count_response(const std::string& path, int status);
  void count_rejected();   // queue full
  void count_cancelled();  // client went away
  void count_finished(int64_t prompt_tokens, int64_t completion_tokens);
  void observe_ttft(double seconds);
  // Tokens sampled in one step that took `seconds` (decode throughput over the last 10 s).
  void observe_step(int64_t sampled, int64_t prompt_tokens, double seconds);
  std::string render(const SchedulerStats& s) const;

  // Time-to-first-token histogram buckets (seconds).
  static constexpr std::array<double, 10> kTtftBuckets{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

 private:
  mutable std::mutex m_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  uint64_t rejected_ = 0, cancelled_ = 0, finished_ = 0;
  uint64_t prompt_tokens_ = 0, completion_tokens_ = 0, steps_ = 0, step_prompt_tokens_ = 0;
  double step_seconds_ = 0;
  std::array<uint64_t, kTtftBuckets.size()> ttft_counts_{};
  uint64_t ttft_n_ = 0;
  double ttft_sum_ = 0;
  mutable std::deque<std::pair<double, int64_t>> recent_;  // (steady seconds, tokens sampled)
};

// Resident set size of this process in bytes (0 where /proc is absent).
size_t resident_bytes();

}  // namespace bitnet::server
