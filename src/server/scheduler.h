#pragma once
// Continuous batching. One thread owns the BatchEngine and runs steps; each step is one forward_batch
// holding the next token of every decoding sequence plus a bounded chunk of prompt tokens of the
// sequences still prefilling, so a long prompt never stalls the running streams for more than one
// chunk. Requests wait in a bounded queue, take a free KV slot (the one sharing the longest
// prefix with their prompt, whose cached positions are kept) between steps, and leave when they
// finish or their client goes away (cancel()).
//
// Detokenization, stop strings and log-probabilities happen here too, so a sequence stops at the
// exact token that completed a stop string and its slot is free for the next step.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "inference/sampler.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "server/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace bitnet::server {

struct Job {
  std::vector<int32_t> prompt;  // at least one token, fewer than the engine's n_ctx
  int max_tokens = -1;          // < 0: until the context is full
  SamplerOptions sampling;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_ids;  // tokens that end the answer (EOS / EOT); not shown
  int top_logprobs = -1;          // < 0: no log-probabilities; else also the n most likely tokens
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

enum class Finish { kNone, kStop, kLength, kCancelled, kError };
const char* finish_name(Finish f);  // OpenAI's finish_reason: "stop", "length", ...

// What one request has produced so far. The scheduler appends; the HTTP thread takes.
struct Output {
  std::string text;                    // new text, whole UTF-8 characters
  std::vector<TokenLogprob> logprobs;  // one per new token when asked for
  Finish finish = Finish::kNone;       // set once, with the last output
  std::string error;                   // kError: what went wrong
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

class Request {
 public:
  // Waits up to timeout_ms for new output or the end; moves it into `out` (appending). Returns
  // true once finished (out.finish set).
  bool take(Output& out, int timeout_ms);
  // The client is gone: the sequence leaves the batch at the next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  void publish(const std::string& text, const TokenLogprob* lp, Finish f, const std::string& error);

  std::mutex m_;
  std::condition_variable cv_;
  Output pending_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
};

struct SchedulerOptions {
  int n_batch = 128;     // tokens per step: decodes first, prompt chunks fill the rest
  int min_prefill = 16;  // prompt tokens a step takes even when decodes fill n_batch
  int max_queue = 64;    // requests waiting for a slot beyond which submit() refuses
  // Threads that sample a step's sequences (the stepping thread counts): with a GPU engine a
  // step of 64 spent most of its time sampling on one thread.
  int sample_threads = 1;
};

struct SchedulerStats {
  int active = 0, queued = 0, slots = 0;
};

class Scheduler {
 public:
  // The engine and tokenizer must outlive the scheduler. metrics may be null.
  Scheduler(BatchEngine& engine, const Tokenizer& tok, const SchedulerOptions& o, Metrics* metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Starts the stepping thread (tests may instead call step() themselves).
  void start();
  void stop();
  // Queues a job; nullptr when the queue is full. The job's prompt must fit the context.
  std::shared_ptr<Request> submit(Job job);
  // One step: admits waiting jobs into free slots, drops cancelled ones, runs one batch. Returns
  // false when there was nothing to do.
  bool step();
  SchedulerStats stats() const;
  int64_t n_ctx() const { return engine_.n_ctx(); }

 private:
  struct Seq {
    std::shared_ptr<Request> req;
    Job job;
    int slot = -1;
    size_t prompt_done = 0;        // prompt tokens in the cache
    std::vector<int32_t> history;  // prompt + generated, for the sampler's penalty
    int32_t next = -1;             // sampled, to feed at the next step (-1: still prefilling)
    int generated = 0;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<StreamDecoder> decoder;
    StopMatcher stops;
    int64_t t_submit_us = 0;
    bool first_token = true;
  };
  void loop();
  void admit();  // with mu_ held
  // Takes s's sampled token (and its logprobs where asked); returns false when s has finished
  // (published and released).
  bool advance(Seq& s, int32_t id, const TokenLogprob* lp);
  void finish(Seq& s, Finish f, const std::string& error = {});
  // finish() with an error, and the slot starts empty (its cache may hold what failed).
  void fail_seq(Seq& s, const std::string& error);

  BatchEngine& engine_;
  const Tokenizer& tok_;
  SchedulerOptions o_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Seq>> queue_;         // waiting for a slot (under mu_)
  std::vector<std::unique_ptr<Seq>> active_;       // in slots, admission order (stepping thread only)
  std::vector<std::vector<int32_t>> slot_tokens_;  // what each slot's cache holds
  std::vector<bool> slot_busy_;
  ThreadPool pool_;   // samples a step's sequences (stepping thread only)
  int n_active_ = 0;  // active_.size() for stats() (under mu_)
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace bitnet::server
