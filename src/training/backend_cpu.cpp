#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "training/backend.h"

namespace bitnet::train {

TrainBackend cpu_backend(TrainModel& m, AdamWState& opt, int threads, const Collective& c) {
  struct State {
    ThreadPool pool;
    Workspace ws;
    std::vector<float> grads;
    explicit State(int t) : pool(t) {}
  };
  auto st = std::make_shared<State>(threads);
  st->grads.resize(m.params.size());
  TrainBackend b;
  b.name = "cpu (" + std::to_string(threads) + " threads)";
  if (c.size > 1) b.name += ", rank " + std::to_string(c.rank) + " of " + std::to_string(c.size);
  b.step = [st, &m, &opt, c](const int32_t* in, const int32_t* tg, int64_t accum, int64_t batch, int64_t seq,
                             float grad_scale, float clip, float lr, float wd) {
    std::fill(st->grads.begin(), st->grads.end(), 0.0f);
    // This rank's rows of each micro-batch (all of them on one rank).
    const std::vector<size_t> rows = shard_offsets(static_cast<size_t>(batch), c.size);
    const int64_t r0 = static_cast<int64_t>(rows[static_cast<size_t>(c.rank)]);
    const int64_t nr = static_cast<int64_t>(rows[static_cast<size_t>(c.rank) + 1]) - r0;
    StepStats s;
    for (int64_t a = 0; a < accum && nr > 0; ++a) {
      const int64_t at = (a * batch + r0) * seq;
      s.loss_sum +=
          forward_backward(&st->pool, m, in + at, tg + at, nr, seq, grad_scale, &st->grads, st->ws).loss_sum;
    }
    if (c.size > 1) {
      c.all_reduce_sum(st->grads.data(), st->grads.size());
      c.all_reduce_sum_f64(&s.loss_sum, 1);
    }
    s.grad_norm = grad_norm(st->grads);
    if (clip > 0 && s.grad_norm > clip) {
      const float k = static_cast<float>(clip / s.grad_norm);
      for (float& g : st->grads) g *= k;
    }
    if (c.size == 1) {
      adamw_step(m, st->grads, opt, AdamWConfig{}, lr, wd);
      return s;
    }
    const std::vector<size_t> shard = shard_offsets(m.params.size(), c.size);
    adamw_step(m, st->grads, opt, AdamWConfig{}, lr, wd, shard[static_cast<size_t>(c.rank)],
               shard[static_cast<size_t>(c.rank) + 1]);
    c.all_gather(m.params.data(), shard.data());
    return s;
  };
  b.eval = [st, &m](const int32_t* in, const int32_t* tg, int64_t batch, int64_t seq) {
    return forward_backward(&st->pool, m, in, tg, batch, seq, 0.0f, nullptr, st->ws).loss_sum;
  };
  // The CPU works on the host model itself; under ZeRO-1 each rank updated only its share of the
  // AdamW moments, so the shares are gathered (every rank calls to_host, as the collectives need).
  b.to_host = [&m, &opt, c] {
    if (c.size == 1) return;
    const std::vector<size_t> shard = shard_offsets(m.params.size(), c.size);
    c.all_gather(opt.m.data(), shard.data());
    c.all_gather(opt.v.data(), shard.data());
  };
  return b;
}

}  // namespace bitnet::train
