#include "server/metrics.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "server/scheduler.h"

namespace bitnet::server {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr double kWindow = 10;  // seconds of the tokens-per-second gauge

}  // namespace

void Metrics::count_response(const std::string& path, int status) {
  std::lock_guard l(m_);
  ++responses_[{path, status}];
}
void Metrics::count_rejected() {
  std::lock_guard l(m_);
  ++rejected_;
}
void Metrics::count_cancelled() {
  std::lock_guard l(m_);
  ++cancelled_;
}
void Metrics::count_finished(int64_t prompt_tokens, int64_t completion_tokens) {
  std::lock_guard l(m_);
  ++finished_;
  prompt_tokens_ += static_cast<uint64_t>(prompt_tokens);
  completion_tokens_ += static_cast<uint64_t>(completion_tokens);
}
void Metrics::observe_ttft(double seconds) {
  std::lock_guard l(m_);
  for (size_t i = 0; i < kTtftBuckets.size(); ++i)
    if (seconds <= kTtftBuckets[i]) ++ttft_counts_[i];
  ++ttft_n_;
  ttft_sum_ += seconds;
}
void Metrics::observe_step(int64_t sampled, int64_t prompt_tokens, double seconds) {
  std::lock_guard l(m_);
  ++steps_;
  step_seconds_ += seconds;
  step_prompt_tokens_ += static_cast<uint64_t>(prompt_tokens);
  const double t = now_s();
  recent_.emplace_back(t, sampled);
  while (!recent_.empty() && recent_.front().first < t - kWindow) recent_.pop_front();
}

std::string Metrics::render(const SchedulerStats& s) const {
  std::lock_guard l(m_);
  std::string o;
  auto line = [&o](const char* fmt, auto... args) {
    char buf[512];
    std::snprintf(buf, sizeof buf, fmt, args...);
    o += buf;
  };
  o += "# HELP bitnet_http_responses_total HTTP responses by path and status code.\n"
       "# TYPE bitnet_http_responses_total counter\n";
  for (const auto& [k, n] : responses_)
    line("bitnet_http_responses_total{path=\"%s\",code=\"%d\"} %llu\n", k.first.c_str(), k.second,
         static_cast<unsigned long long>(n));
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    line("# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
         static_cast<unsigned long long>(v));
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    line("# HELP %s %s\n# TYPE %s gauge\n%s %.6g\n", name, help, name, name, v);
  };
  counter("bitnet_requests_finished_total", "Generation requests that ran to their end.", finished_);
  counter("bitnet_requests_rejected_total", "Requests refused because the queue was full.", rejected_);
  counter("bitnet_requests_cancelled_total", "Requests whose client went away before the end.", cancelled_);
  counter("bitnet_prompt_tokens_total", "Prompt tokens of finished requests.", prompt_tokens_);
  counter("bitnet_completion_tokens_total", "Generated tokens of finished requests.", completion_tokens_);
  counter("bitnet_steps_total", "Batched forward steps.", steps_);
  counter("bitnet_prefill_tokens_total", "Prompt tokens run through the model.", step_prompt_tokens_);
  gauge("bitnet_step_seconds_total", "Seconds spent in batched forward steps.", step_seconds_);
  gauge("bitnet_queue_depth", "Requests waiting for a slot.", s.queued);
  gauge("bitnet_active_sequences", "Sequences in the running batch.", s.active);
  gauge("bitnet_slots", "KV slots (--parallel).", s.slots);
  double tps = 0;
  if (recent_.size() >= 2) {
    int64_t n = 0;
    for (size_t i = 1; i < recent_.size(); ++i) n += recent_[i].second;
    const double dt = recent_.back().first - recent_.front().first;
    if (dt > 0 && recent_.back().first > now_s() - kWindow) tps = static_cast<double>(n) / dt;
  }
  gauge("bitnet_tokens_per_second", "Tokens sampled per second over the last 10 s, all sequences together.",
        tps);
  o += "# HELP bitnet_time_to_first_token_seconds From the request's arrival to its first token.\n"
       "# TYPE bitnet_time_to_first_token_seconds histogram\n";
  for (size_t i = 0; i < kTtftBuckets.size(); ++i)
    line("bitnet_time_to_first_token_seconds_bucket{le=\"%g\"} %llu\n", kTtftBuckets[i],
         static_cast<unsigned long long>(ttft_counts_[i]));
  line("bitnet_time_to_first_token_seconds_bucket{le=\"+Inf\"} %llu\n",
       static_cast<unsigned long long>(ttft_n_));
  line("bitnet_time_to_first_token_seconds_sum %.6f\n", ttft_sum_);
  line("bitnet_time_to_first_token_seconds_count %llu\n", static_cast<unsigned long long>(ttft_n_));
  gauge("bitnet_resident_bytes", "Resident set size of the server process.",
        static_cast<double>(resident_bytes()));
  return o;
}

size_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, rss = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &rss);
  std::fclose(f);
  return got == 2 ? static_cast<size_t>(rss) * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace bitnet::server
