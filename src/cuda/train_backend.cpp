#include "cuda/train_backend.h"

#include <memory>
#include <vector>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/train_device.h"

namespace bitnet::cuda {

using train::TrainModel;

train::TrainBackend cuda_backend(TrainModel& m, train::AdamWState& opt) {
  require_device();
  auto dt = std::make_shared<DeviceTrainer>();
  if (dt->prof.on()) dt->ctx.prof = &dt->prof;
  const size_t n = m.params.size();
  dt->params.upload(m.params);
  dt->grads.resize(n);
  if (opt.m.size() == n && opt.v.size() == n) {
    dt->m.upload(opt.m);
    dt->v.upload(opt.v);
  } else {
    if (opt.step != 0) fail("cuda trainer: the optimizer state does not match the model");
    dt->m.resize(n);
    dt->v.resize(n);
    BN_CUDA(cudaMemset(dt->m.data(), 0, n * 4));
    BN_CUDA(cudaMemset(dt->v.data(), 0, n * 4));
  }
  dt->decay.upload(decay_mask(m));
  const auto gpus = devices();
  train::TrainBackend b;
  b.name = "cuda (" + gpus.front().name + ")";
  b.step = [dt, &m, &opt, n](const int32_t* in, const int32_t* tg, int64_t accum, int64_t batch, int64_t seq,
                             float grad_scale, float clip, float lr, float wd) {
    BN_CUDA(cudaMemsetAsync(dt->grads.data(), 0, n * 4, dt->stream));
    train::StepStats s;
    for (int64_t a = 0; a < accum; ++a)
      s.loss_sum +=
          dt->forward_backward(m, in + a * batch * seq, tg + a * batch * seq, batch, seq, grad_scale, true);
    dt->prof.mark("optimizer", dt->stream);
    s.grad_norm = grad_norm(dt->ctx, dt->grads.data(), static_cast<int64_t>(n), dt->stream);
    adamw_step(dt->params.data(), dt->grads.data(), dt->m.data(), dt->v.data(), dt->decay.data(),
               static_cast<int64_t>(n), opt.step + 1, train::AdamWConfig{}, lr, wd, dt->stream,
               clip_factor(s.grad_norm, clip));
    ++opt.step;
    dt->prof.end_step(dt->stream);
    return s;
  };
  b.eval = [dt, &m](const int32_t* in, const int32_t* tg, int64_t batch, int64_t seq) {
    const double loss = dt->forward_backward(m, in, tg, batch, seq, 0.0f, false);
    dt->prof.drop();
    return loss;
  };
  b.to_host = [dt, &m, &opt] {
    BN_CUDA(cudaStreamSynchronize(dt->stream));
    m.params = dt->params.download();
    if (opt.step > 0) {
      opt.m = dt->m.download();
      opt.v = dt->v.download();
    }
  };
  return b;
}

}  // namespace bitnet::cuda
