#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "training/backend.h"

namespace bitnet::train {

TrainBackend cpu_backend(TrainModel& m, AdamWState& opt, int threads) {
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
  b.step = [st, &m, &opt](const int32_t* in, const int32_t* tg, int64_t accum, int64_t batch, int64_t seq,
                          float grad_scale, float clip, float lr, float wd) {
    std::fill(st->grads.begin(), st->grads.end(), 0.0f);
    StepStats s;
    for (int64_t a = 0; a < accum; ++a)
      s.loss_sum += forward_backward(&st->pool, m, in + a * batch * seq, tg + a * batch * seq, batch, seq,
                                     grad_scale, &st->grads, st->ws)
                        .loss_sum;
    s.grad_norm = grad_norm(st->grads);
    if (clip > 0 && s.grad_norm > clip) {
      const float k = static_cast<float>(clip / s.grad_norm);
      for (float& g : st->grads) g *= k;
    }
    adamw_step(m, st->grads, opt, AdamWConfig{}, lr, wd);
    return s;
  };
  b.eval = [st, &m](const int32_t* in, const int32_t* tg, int64_t batch, int64_t seq) {
    return forward_backward(&st->pool, m, in, tg, batch, seq, 0.0f, nullptr, st->ws).loss_sum;
  };
  b.to_host = [] {};  // the CPU works on the host model itself
  return b;
}

}  // namespace bitnet::train
