#include "cuda/train_dp.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <thread>
#include <utility>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/dp_nccl.h"
#include "cuda/train_device.h"
#include "training/collective.h"
#include "training/grad_buckets.h"

namespace bitnet::cuda {

namespace {

using train::TrainModel;

// One rank's device state on top of the one-GPU trainer's: its shard of the flat parameters, the
// communication stream and the buckets.
struct Rank {
  DeviceCollective c;
  DeviceTrainer dt;             // params: size x shard (padded), grads: n, m and v: this rank's shard
  size_t n = 0;                 // parameters
  size_t shard = 0;             // each rank's share, padded so that every rank's is equal (NCCL's all-gather)
  size_t begin = 0, count = 0;  // this rank's parameters [begin, begin + count) of [0, n)
  cudaStream_t comm = nullptr;  // the gradient all-reduces, beside the backward
  cudaEvent_t ready = nullptr, reduced = nullptr;
  Buffer<double> stats;        // [loss, squared gradient norm], summed over the ranks
  train::GradBuckets buckets;  // which gradients to sum as the backward goes (training/grad_buckets.h)
  explicit Rank(const DeviceCollective& col) : c(col) {}
  Rank(const Rank&) = delete;
  Rank& operator=(const Rank&) = delete;
  ~Rank() {  // a destructor must not throw: results ignored
    if (comm) (void)cudaStreamDestroy(comm);
    if (ready) (void)cudaEventDestroy(ready);
    if (reduced) (void)cudaEventDestroy(reduced);
  }

  // Starts the sum of grads[b, e) on the communication stream once the backward queued so far is done.
  void reduce(train::ParamRange r) {
    if (r.second <= r.first) return;
    BN_CUDA(cudaEventRecord(ready, dt.stream));
    BN_CUDA(cudaStreamWaitEvent(comm, ready, 0));
    c.all_reduce_sum(dt.grads.data() + r.first, r.second - r.first, comm);
  }
  void grads_done(int64_t il) {
    if (il >= 0) {
      reduce(buckets.after_layer[static_cast<size_t>(il)]);
      return;
    }
    for (const train::ParamRange& r : buckets.after_embedding) reduce(r);
  }
};

// f(rank) on one host thread per rank (inline for one rank), each with its GPU current; the first
// failure is rethrown once all have returned.
template <typename F>
void on_ranks(const std::vector<DeviceCollective>& cs, F&& f) {
  if (cs.size() == 1) {
    BN_CUDA(cudaSetDevice(cs[0].device));
    f(0);
    return;
  }
  std::vector<std::exception_ptr> err(cs.size());
  std::vector<std::thread> t;
  for (size_t r = 0; r < cs.size(); ++r)
    t.emplace_back([&, r] {
      try {
        BN_CUDA(cudaSetDevice(cs[r].device));
        f(r);
      } catch (...) {
        err[r] = std::current_exception();
      }
    });
  for (auto& x : t) x.join();
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
}

}  // namespace

train::TrainBackend cuda_backend(TrainModel& m, train::AdamWState& opt, const DeviceCollective& c,
                                 size_t bucket_floats) {
  require_device();
  if (c.size < 1 || c.rank < 0 || c.rank >= c.size) fail("data parallel: rank {} of {}", c.rank, c.size);
  if (c.device < 0 || static_cast<size_t>(c.device) >= devices().size())
    fail("data parallel: rank {} wants GPU {}, this machine has {}", c.rank, c.device, devices().size());
  BN_CUDA(cudaSetDevice(c.device));
  auto st = std::make_shared<Rank>(c);
  DeviceTrainer& dt = st->dt;
  if (dt.prof.on()) dt.ctx.prof = &dt.prof;  // BITNET_CUDA_PROFILE: as the one-GPU backend
  const size_t n = m.params.size(), R = static_cast<size_t>(c.size);
  st->n = n;
  st->shard = ((n + R - 1) / R + 63) / 64 * 64;  // 256-byte aligned shares
  st->begin = std::min(n, static_cast<size_t>(c.rank) * st->shard);
  st->count = std::min(st->shard, n - st->begin);
  dt.params.resize(R * st->shard);
  BN_CUDA(cudaMemset(dt.params.data(), 0, dt.params.bytes()));
  BN_CUDA(cudaMemcpy(dt.params.data(), m.params.data(), n * 4, cudaMemcpyHostToDevice));
  dt.grads.resize(n);
  dt.m.resize(st->shard);
  dt.v.resize(st->shard);
  BN_CUDA(cudaMemset(dt.m.data(), 0, dt.m.bytes()));
  BN_CUDA(cudaMemset(dt.v.data(), 0, dt.v.bytes()));
  if (opt.m.size() == n && opt.v.size() == n) {  // resuming: this rank's shard of the full moments
    BN_CUDA(cudaMemcpy(dt.m.data(), opt.m.data() + st->begin, st->count * 4, cudaMemcpyHostToDevice));
    BN_CUDA(cudaMemcpy(dt.v.data(), opt.v.data() + st->begin, st->count * 4, cudaMemcpyHostToDevice));
  } else if (opt.step != 0) {
    fail("cuda trainer: the optimizer state does not match the model");
  }
  dt.decay.upload(decay_mask(m));
  st->stats.resize(2);
  BN_CUDA(cudaStreamCreateWithFlags(&st->comm, cudaStreamNonBlocking));
  BN_CUDA(cudaEventCreateWithFlags(&st->ready, cudaEventDisableTiming));
  BN_CUDA(cudaEventCreateWithFlags(&st->reduced, cudaEventDisableTiming));
  st->buckets = train::grad_buckets(m, bucket_floats);

  train::TrainBackend b;
  b.name = "cuda (" + devices()[static_cast<size_t>(c.device)].name + "), rank " + std::to_string(c.rank) +
           " of " + std::to_string(c.size);
  b.step = [st, &m, &opt](const int32_t* in, const int32_t* tg, int64_t accum, int64_t batch, int64_t seq,
                          float grad_scale, float clip, float lr, float wd) {
    Rank& s = *st;
    DeviceTrainer& dt = s.dt;
    BN_CUDA(cudaSetDevice(s.c.device));
    const std::vector<size_t> rows = train::shard_offsets(static_cast<size_t>(batch), s.c.size);
    const int64_t r0 = static_cast<int64_t>(rows[static_cast<size_t>(s.c.rank)]);
    const int64_t nr = static_cast<int64_t>(rows[static_cast<size_t>(s.c.rank) + 1]) - r0;
    BN_CUDA(cudaMemsetAsync(dt.grads.data(), 0, s.n * 4, dt.stream));
    double host[2] = {0, 0};
    for (int64_t a = 0; a < accum; ++a) {
      // The sums start during the last micro-batch's backward, when the gradients are complete.
      const bool last = a + 1 == accum;
      if (last) dt.on_grads_done = [st](int64_t il) { st->grads_done(il); };
      if (nr > 0) {
        const int64_t at = (a * batch + r0) * seq;
        host[0] += dt.forward_backward(m, in + at, tg + at, nr, seq, grad_scale, true);
      } else if (last) {  // no rows here: a zero gradient, summed in the same calls as the others'
        for (int64_t il = static_cast<int64_t>(m.layers.size()) - 1; il >= -1; --il) s.grads_done(il);
      }
      dt.on_grads_done = nullptr;
    }
    BN_CUDA(cudaEventRecord(s.reduced, s.comm));
    BN_CUDA(cudaStreamWaitEvent(dt.stream, s.reduced, 0));
    dt.prof.mark("optimizer", dt.stream);
    // The global norm from the reduced gradients: each rank's shard, then the sum of the squares.
    BN_CUDA(cudaMemcpyAsync(s.stats.data(), host, sizeof(double), cudaMemcpyHostToDevice, dt.stream));
    auto* partial = static_cast<double*>(dt.ctx.scratch(sizeof(double) * kern::kNormParts));
    kern::sum_squares(dt.grads.data() + s.begin, static_cast<int64_t>(s.count), partial, s.stats.data() + 1,
                      dt.stream);
    s.c.all_reduce_sum_f64(s.stats.data(), 2, dt.stream);
    BN_CUDA(cudaMemcpyAsync(host, s.stats.data(), sizeof(host), cudaMemcpyDeviceToHost, dt.stream));
    BN_CUDA(cudaStreamSynchronize(dt.stream));
    train::StepStats out;
    out.loss_sum = host[0];
    out.grad_norm = std::sqrt(host[1]);
    float* g = dt.grads.data() + s.begin;
    const auto cnt = static_cast<int64_t>(s.count);
    adamw_step(dt.params.data() + s.begin, g, dt.m.data(), dt.v.data(), dt.decay.data() + s.begin, cnt,
               opt.step + 1, train::AdamWConfig{}, lr, wd, dt.stream, clip_factor(out.grad_norm, clip));
    s.c.all_gather(dt.params.data(), s.shard, dt.stream);
    ++opt.step;
    dt.prof.end_step(dt.stream);
    return out;
  };
  b.eval = [st, &m](const int32_t* in, const int32_t* tg, int64_t batch, int64_t seq) {
    Rank& s = *st;
    BN_CUDA(cudaSetDevice(s.c.device));
    const std::vector<size_t> rows = train::shard_offsets(static_cast<size_t>(batch), s.c.size);
    const int64_t r0 = static_cast<int64_t>(rows[static_cast<size_t>(s.c.rank)]);
    const int64_t nr = static_cast<int64_t>(rows[static_cast<size_t>(s.c.rank) + 1]) - r0;
    double loss = nr > 0 ? s.dt.forward_backward(m, in + r0 * seq, tg + r0 * seq, nr, seq, 0.0f, false) : 0.0;
    s.dt.prof.drop();
    BN_CUDA(cudaMemcpyAsync(s.stats.data(), &loss, sizeof(loss), cudaMemcpyHostToDevice, s.dt.stream));
    s.c.all_reduce_sum_f64(s.stats.data(), 1, s.dt.stream);
    BN_CUDA(cudaMemcpyAsync(&loss, s.stats.data(), sizeof(loss), cudaMemcpyDeviceToHost, s.dt.stream));
    BN_CUDA(cudaStreamSynchronize(s.dt.stream));
    return loss;
  };
  b.to_host = [st, &m, &opt] {
    Rank& s = *st;
    DeviceTrainer& dt = s.dt;
    BN_CUDA(cudaSetDevice(s.c.device));
    BN_CUDA(cudaStreamSynchronize(dt.stream));
    m.params.resize(s.n);
    BN_CUDA(cudaMemcpy(m.params.data(), dt.params.data(), s.n * 4, cudaMemcpyDeviceToHost));
    if (opt.step == 0) return;
    // Checkpoints hold the full moments, whatever the rank count: gathered from the shards.
    Buffer<float> full(static_cast<size_t>(s.c.size) * s.shard);
    for (Buffer<float>* mom : {&dt.m, &dt.v}) {
      BN_CUDA(cudaMemcpyAsync(full.data() + static_cast<size_t>(s.c.rank) * s.shard, mom->data(), s.count * 4,
                              cudaMemcpyDeviceToDevice, dt.stream));
      s.c.all_gather(full.data(), s.shard, dt.stream);
      BN_CUDA(cudaStreamSynchronize(dt.stream));
      if (s.c.rank != 0) continue;
      std::vector<float>& host = mom == &dt.m ? opt.m : opt.v;
      host.resize(s.n);
      BN_CUDA(cudaMemcpy(host.data(), full.data(), s.n * 4, cudaMemcpyDeviceToHost));
    }
  };
  return b;
}

train::TrainBackend cuda_backend_ranks(TrainModel& m, train::AdamWState& opt,
                                       std::vector<DeviceCollective> cs) {
  if (cs.empty()) fail("data parallel: no ranks");
  struct Ranks {
    std::vector<DeviceCollective> cs;
    std::vector<TrainModel> models;  // ranks 1 .. R - 1 (rank 0 trains the caller's)
    std::vector<train::AdamWState> opts;
    std::vector<train::TrainBackend> be;
    ~Ranks() {  // each rank's resources released on its own thread, as NCCL's teardown may wait for all
      try {
        on_ranks(cs, [&](size_t r) {
          be[r] = {};
          cs[r] = {};  // the last copy: NCCL's communicator goes with it
        });
      } catch (...) {  // a destructor must not throw
      }
    }
  };
  auto rs = std::make_shared<Ranks>();
  const size_t R = cs.size();
  rs->cs = std::move(cs);
  rs->models.assign(R - 1, m);
  rs->opts.assign(R - 1, opt);
  rs->be.resize(R);
  on_ranks(rs->cs, [&](size_t r) {
    rs->be[r] = r == 0 ? cuda_backend(m, opt, rs->cs[0])
                       : cuda_backend(rs->models[r - 1], rs->opts[r - 1], rs->cs[r]);
  });
  for (train::AdamWState& o : rs->opts) {  // uploaded: only rank 0's moments come back (to_host)
    o.m = {};
    o.v = {};
  }
  train::TrainBackend b;
  b.name = rs->be[0].name.substr(0, rs->be[0].name.find(", rank")) + ", data parallel over " +
           std::to_string(R) + (R == 1 ? " rank" : " ranks");
  b.step = [rs](const int32_t* in, const int32_t* tg, int64_t accum, int64_t batch, int64_t seq,
                float grad_scale, float clip, float lr, float wd) {
    train::StepStats out;
    on_ranks(rs->cs, [&](size_t r) {
      const train::StepStats s = rs->be[r].step(in, tg, accum, batch, seq, grad_scale, clip, lr, wd);
      if (r == 0) out = s;
    });
    return out;
  };
  b.eval = [rs](const int32_t* in, const int32_t* tg, int64_t batch, int64_t seq) {
    double out = 0;
    on_ranks(rs->cs, [&](size_t r) {
      const double l = rs->be[r].eval(in, tg, batch, seq);
      if (r == 0) out = l;
    });
    return out;
  };
  b.to_host = [rs] { on_ranks(rs->cs, [&](size_t r) { rs->be[r].to_host(); }); };
  return b;
}

train::TrainBackend cuda_backend_gpus(TrainModel& m, train::AdamWState& opt, int gpus) {
  return cuda_backend_ranks(m, opt, nccl_ranks_in_process(gpus));
}

}  // namespace bitnet::cuda
