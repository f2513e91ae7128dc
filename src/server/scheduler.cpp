#include "server/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "ops/vec.h"

namespace bitnet::server {
namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Log-probabilities from raw logits (before temperature and filters, as OpenAI reports them).
TokenLogprob logprobs_of(std::span<const float> logits, int32_t id, int top_n) {
  // Vectorized: one pass of exp over the vocabulary per sampled token (128k on the 2B4T) cost a
  // step of 8 streams about 3 ms on the stepping thread with std::exp in double.
  const float log_z = static_cast<float>(log_sum_exp_row(logits.data(), static_cast<int64_t>(logits.size())));
  TokenLogprob lp;
  lp.id = id;
  lp.logprob = logits[static_cast<size_t>(id)] - log_z;
  if (top_n > 0)
    for (const auto& [v, i] : top_k_logits(logits, static_cast<size_t>(top_n)))
      lp.top.emplace_back(i, v - log_z);
  return lp;
}

// The same from a row's largest logits and its log-sum-exp (TopRows): the sampled token is one
// of them, and the top_n largest are their first top_n.
TokenLogprob logprobs_of_top(std::span<const std::pair<float, int32_t>> top, float log_z, int32_t id,
                             int top_n) {
  TokenLogprob lp;
  lp.id = id;
  const auto it = std::find_if(top.begin(), top.end(), [&](const auto& c) { return c.second == id; });
  BN_CHECK(it != top.end());
  lp.logprob = it->first - log_z;
  for (size_t i = 0; i < std::min(top.size(), static_cast<size_t>(std::max(top_n, 0))); ++i)
    lp.top.emplace_back(top[i].second, top[i].first - log_z);
  return lp;
}

}  // namespace

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::kStop:
      return "stop";
    case Finish::kLength:
      return "length";
    case Finish::kCancelled:
      return "cancelled";
    case Finish::kError:
      return "error";
    case Finish::kNone:
      break;
  }
  return "none";
}

bool Request::take(Output& out, int timeout_ms) {
  std::unique_lock l(m_);
  cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
               [&] { return finished_ || !pending_.text.empty() || !pending_.logprobs.empty(); });
  out.text += pending_.text;
  for (auto& lp : pending_.logprobs) out.logprobs.push_back(std::move(lp));
  pending_.text.clear();
  pending_.logprobs.clear();
  if (finished_) {
    out.finish = pending_.finish;
    out.error = pending_.error;
    out.prompt_tokens = prompt_tokens_;
    out.completion_tokens = completion_tokens_;
  }
  return finished_;
}

void Request::publish(const std::string& text, const TokenLogprob* lp, Finish f, const std::string& error) {
  {
    std::lock_guard l(m_);
    pending_.text += text;
    if (lp) pending_.logprobs.push_back(*lp);
    if (f != Finish::kNone) {
      finished_ = true;
      pending_.finish = f;
      pending_.error = error;
    }
  }
  cv_.notify_all();
}

Scheduler::Scheduler(BatchEngine& engine, const Tokenizer& tok, const SchedulerOptions& o, Metrics* metrics)
    : engine_(engine), tok_(tok), o_(o), metrics_(metrics), pool_(std::max(1, o.sample_threads)) {
  BN_CHECK(o_.n_batch >= 1 && o_.min_prefill >= 1 && o_.max_queue >= 0);
  // Short spins: between steps the pool's threads should leave the cores to a CPU engine's.
  pool_.set_spin_us(20);
  slot_tokens_.resize(static_cast<size_t>(engine_.n_seq()));
  slot_busy_.assign(static_cast<size_t>(engine_.n_seq()), false);
}

Scheduler::~Scheduler() {
  stop();
}

void Scheduler::start() {
  BN_CHECK(!thread_.joinable());
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard l(mu_);
  for (auto& s : queue_) s->req->publish({}, nullptr, Finish::kError, "the server is shutting down");
  queue_.clear();
  for (auto& s : active_) s->req->publish({}, nullptr, Finish::kError, "the server is shutting down");
  active_.clear();
  n_active_ = 0;
}

std::shared_ptr<Request> Scheduler::submit(Job job) {
  BN_CHECK(!job.prompt.empty() && static_cast<int64_t>(job.prompt.size()) < engine_.n_ctx());
  auto s = std::make_unique<Seq>();
  s->req = std::make_shared<Request>();
  s->req->prompt_tokens_ = static_cast<int64_t>(job.prompt.size());
  s->history = job.prompt;
  s->sampler = std::make_unique<Sampler>(job.sampling);
  s->decoder = std::make_unique<StreamDecoder>(tok_, true);
  s->stops = StopMatcher(job.stop);
  s->job = std::move(job);
  s->t_submit_us = now_us();
  std::shared_ptr<Request> r = s->req;
  {
    std::lock_guard l(mu_);
    const int free_slots = engine_.n_seq() - n_active_;
    if (stopping_ || static_cast<int>(queue_.size()) >= free_slots + o_.max_queue) {
      if (metrics_) metrics_->count_rejected();
      return nullptr;
    }
    queue_.push_back(std::move(s));
  }
  cv_.notify_all();
  return r;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard l(mu_);
  return {n_active_, static_cast<int>(queue_.size()), engine_.n_seq()};
}

void Scheduler::loop() {
  while (true) {
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_.empty() || n_active_ > 0; });
      if (stopping_) return;
    }
    step();
  }
}

void Scheduler::admit() {
  // Cancelled requests leave the queue without ever taking a slot.
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->req->cancelled()) {
      (*it)->req->publish({}, nullptr, Finish::kCancelled, {});
      if (metrics_) metrics_->count_cancelled();
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  while (!queue_.empty()) {
    // The free slot whose cache shares the longest prefix with the prompt keeps that prefix.
    const std::vector<int32_t>& prompt = queue_.front()->job.prompt;
    int best = -1;
    size_t best_lcp = 0;
    for (size_t i = 0; i < slot_busy_.size(); ++i) {
      if (slot_busy_[i]) continue;
      const std::vector<int32_t>& c = slot_tokens_[i];
      size_t lcp = 0;
      while (lcp < c.size() && lcp < prompt.size() && c[lcp] == prompt[lcp]) ++lcp;
      if (best < 0 || lcp > best_lcp) best = static_cast<int>(i), best_lcp = lcp;
    }
    if (best < 0) break;
    std::unique_ptr<Seq> s = std::move(queue_.front());
    queue_.pop_front();
    // At least the last prompt token runs again: its logits give the first answer token.
    const size_t keep = std::min(best_lcp, prompt.size() - 1);
    engine_.truncate(best, static_cast<int64_t>(keep));
    slot_tokens_[static_cast<size_t>(best)].resize(keep);
    slot_busy_[static_cast<size_t>(best)] = true;
    s->slot = best;
    s->prompt_done = keep;
    active_.push_back(std::move(s));
  }
  n_active_ = static_cast<int>(active_.size());
}

void Scheduler::finish(Seq& s, Finish f, const std::string& error) {
  std::string tail;
  if (f == Finish::kStop || f == Finish::kLength) {
    // Two statements: the decoder's last bytes enter the stop matcher before it lets go of what it
    // holds (the operands of one + may run in either order).
    tail = s.stops.push(s.decoder->flush());
    tail += s.stops.flush();
  }
  {
    std::lock_guard l(s.req->m_);
    s.req->completion_tokens_ = s.generated;
  }
  // The gauge and counters change before the client hears the end, so that whoever sees a request
  // end (or its cancellation counted) also sees it gone from the batch.
  {
    std::lock_guard l(mu_);
    --n_active_;  // drop_done() sets it to active_.size() again once s leaves active_
  }
  if (metrics_) {
    if (f == Finish::kCancelled) metrics_->count_cancelled();
    if (f == Finish::kStop || f == Finish::kLength)
      metrics_->count_finished(static_cast<int64_t>(s.job.prompt.size()), s.generated);
  }
  s.req->publish(tail, nullptr, f, error);
  slot_busy_[static_cast<size_t>(s.slot)] = false;
}

void Scheduler::fail_seq(Seq& s, const std::string& error) {
  finish(s, Finish::kError, error);
  engine_.truncate(s.slot, 0);
  slot_tokens_[static_cast<size_t>(s.slot)].clear();
}

bool Scheduler::advance(Seq& s, int32_t id, const TokenLogprob* lpp) {
  if (s.first_token) {
    s.first_token = false;
    if (metrics_) metrics_->observe_ttft(static_cast<double>(now_us() - s.t_submit_us) * 1e-6);
  }
  if (std::find(s.job.stop_ids.begin(), s.job.stop_ids.end(), id) != s.job.stop_ids.end()) {
    finish(s, Finish::kStop);
    return false;
  }
  ++s.generated;
  s.history.push_back(id);
  const std::string text = s.stops.push(s.decoder->push(id));
  if (s.stops.matched()) {
    s.req->publish(text, lpp, Finish::kNone, {});
    finish(s, Finish::kStop);
    return false;
  }
  s.req->publish(text, lpp, Finish::kNone, {});
  // The sampled token is fed at the next step; it needs a free position.
  const bool full = engine_.n_past(s.slot) >= engine_.n_ctx();
  if ((s.job.max_tokens >= 0 && s.generated >= s.job.max_tokens) || full) {
    finish(s, Finish::kLength);
    return false;
  }
  s.next = id;
  return true;
}

bool Scheduler::step() {
  {
    std::lock_guard l(mu_);
    admit();
  }
  std::vector<Seq*> done;
  for (auto& s : active_) {
    if (s->req->cancelled()) {
      finish(*s, Finish::kCancelled);
      done.push_back(s.get());
    }
  }
  auto drop_done = [&] {
    if (done.empty()) return;
    std::erase_if(active_, [&](const std::unique_ptr<Seq>& s) {
      return std::find(done.begin(), done.end(), s.get()) != done.end();
    });
    done.clear();
    std::lock_guard l(mu_);
    n_active_ = static_cast<int>(active_.size());
  };
  drop_done();
  if (active_.empty()) return false;

  // Decodes first (one token each), then prompt chunks in admission order up to the budget.
  std::vector<BatchToken> batch;
  std::vector<Seq*> rows;                    // the sequence of each logits row
  std::vector<std::pair<Seq*, size_t>> fed;  // (sequence, tokens it adds to its slot)
  for (auto& s : active_) {
    if (s->next < 0) continue;
    batch.push_back({s->next, s->slot, true});
    rows.push_back(s.get());
    fed.emplace_back(s.get(), 1);
  }
  const int n_decode = static_cast<int>(batch.size());
  int budget = std::max(o_.n_batch - n_decode, o_.min_prefill);
  int64_t n_prompt = 0;
  for (auto& s : active_) {
    if (s->next >= 0 || budget <= 0) continue;
    const size_t left = s->job.prompt.size() - s->prompt_done;
    const size_t k = std::min(left, static_cast<size_t>(budget));
    for (size_t i = 0; i < k; ++i)
      batch.push_back({s->job.prompt[s->prompt_done + i], s->slot, i + 1 == left});
    if (k == left) rows.push_back(s.get());
    fed.emplace_back(s.get(), k);
    budget -= static_cast<int>(k);
    n_prompt += static_cast<int64_t>(k);
  }

  // Where the engine finds each row's largest logits itself (the GPU) and every row's sampler can
  // work from them (Sampler::top_candidates), the step returns those instead of the logits.
  const size_t n_vocab = static_cast<size_t>(engine_.n_vocab());
  int top_k = 0;
  if (engine_.max_top_k() > 0 && !rows.empty()) {
    size_t k = 0;
    for (const Seq* s : rows) {
      const size_t c = s->sampler->top_candidates(n_vocab);
      if (c == 0) {
        k = 0;
        break;
      }
      k = std::max({k, c, static_cast<size_t>(std::max(s->job.top_logprobs, 0))});
    }
    if (k > 0 && k <= static_cast<size_t>(engine_.max_top_k())) top_k = static_cast<int>(k);
  }

  const int64_t t0 = now_us();
  const float* logits = nullptr;
  TopRows top;
  try {
    if (top_k > 0)
      top = engine_.forward_batch_top(batch, top_k);
    else
      logits = engine_.forward_batch(batch);
  } catch (const Error& e) {
    // Whatever the engine refused, the sequences of this batch cannot go on; their slots restart.
    for (auto& [s, n] : fed) {
      fail_seq(*s, e.what());
      done.push_back(s);
    }
    drop_done();
    return true;
  }
  for (auto& [s, n] : fed) {
    std::vector<int32_t>& cache = slot_tokens_[static_cast<size_t>(s->slot)];
    if (s->next >= 0) {
      cache.push_back(s->next);
    } else {
      cache.insert(cache.end(), s->job.prompt.begin() + static_cast<ptrdiff_t>(s->prompt_done),
                   s->job.prompt.begin() + static_cast<ptrdiff_t>(s->prompt_done + n));
      s->prompt_done += n;
    }
  }
  // Sampling (and logprobs) per sequence on the pool: each sequence's sampler and history are its
  // own. Publishing, stops and slots stay on this thread, in row order.
  // A refusal (a NaN logit) ends that sequence with an error; it must not leave the pool's thread,
  // where it would end the process.
  std::vector<int32_t> ids(rows.size());
  std::vector<TokenLogprob> lps(rows.size());
  std::vector<std::optional<std::string>> errors(rows.size());
  pool_.parallel_for_dynamic(static_cast<int64_t>(rows.size()), 1, [&](int64_t b, int64_t e) {
    std::vector<std::pair<float, int32_t>> cand;
    for (int64_t i = b; i < e; ++i) {
      const size_t r = static_cast<size_t>(i);
      Seq& s = *rows[r];
      try {
        if (top_k > 0) {
          const size_t at = r * static_cast<size_t>(top_k);
          cand.resize(static_cast<size_t>(top_k));
          for (size_t j = 0; j < cand.size(); ++j) cand[j] = {top.val[at + j], top.id[at + j]};
          ids[r] = s.sampler->sample_top(cand, n_vocab);
          if (s.job.top_logprobs >= 0)
            lps[r] = logprobs_of_top(cand, top.log_z[r], ids[r], s.job.top_logprobs);
        } else {
          const std::span<const float> lg(logits + r * n_vocab, n_vocab);
          ids[r] = s.sampler->sample(lg, s.history);
          if (s.job.top_logprobs >= 0) lps[r] = logprobs_of(lg, ids[r], s.job.top_logprobs);
        }
      } catch (const std::exception& ex) {
        errors[r] = ex.what();
      }
    }
  });
  for (size_t i = 0; i < rows.size(); ++i) {
    if (errors[i]) {
      fail_seq(*rows[i], *errors[i]);  // its cache may hold what made the logits NaN
      done.push_back(rows[i]);
    } else if (!advance(*rows[i], ids[i], rows[i]->job.top_logprobs >= 0 ? &lps[i] : nullptr)) {
      done.push_back(rows[i]);
    }
  }
  drop_done();
  if (metrics_)
    metrics_->observe_step(static_cast<int64_t>(rows.size()), n_prompt,
                           static_cast<double>(now_us() - t0) * 1e-6);
  return true;
}

}  // namespace bitnet::server
