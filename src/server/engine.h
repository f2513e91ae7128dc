#pragma once
// What the scheduler needs of the model: the Session's several-sequence API (inference/forward.h)
// behind an interface, so the scheduler's tests drive it with a scripted fake and the server
// drives a real Session.
#include <cstdint>
#include <memory>
#include <span>

#include "inference/forward.h"

namespace bitnet::server {

// What sampling needs of a batch's logits rows (inference/sampler.h Sampler::sample_top): row r's
// k largest logits and their ids at val / id + r k, largest first, ties to the lowest id
// (top_k_logits' list), and its log-sum-exp at log_z[r] (logprobs).
struct TopRows {
  int k = 0;
  const float* val = nullptr;
  const int32_t* id = nullptr;
  const float* log_z = nullptr;
};

class BatchEngine {
 public:
  virtual ~BatchEngine() = default;
  // Session::forward_batch: logits [k][n_vocab] for the k entries with logits = true, in order.
  virtual const float* forward_batch(std::span<const BatchToken> batch) = 0;
  // The same step returning TopRows of k (1 <= k <= max_top_k()) instead of the logits, for
  // engines that find them where the logits are (the GPU: a step of 64 sequences then copies 64 k
  // pairs, not 33 MB, and the host does not scan 128k logits a sequence). 0: not offered.
  virtual int max_top_k() const { return 0; }
  virtual TopRows forward_batch_top(std::span<const BatchToken> batch, int k);
  virtual int64_t n_past(int seq) const = 0;
  virtual void truncate(int seq, int64_t n) = 0;
  virtual int n_seq() const = 0;
  virtual int64_t n_ctx() const = 0;  // positions per sequence
  virtual int32_t n_vocab() const = 0;
};

// A Session of n_seq sequences of n_ctx positions each over `model` (which must outlive it).
std::unique_ptr<BatchEngine> make_session_engine(const Model& model, const SessionOptions& opts);

#if defined(BITNET_HAVE_CUDA)
// The same on the GPU (cuda/infer_session.h): n_seq KV slots of n_ctx positions; a step's decoded
// tokens run as one batched decode step, its prompt chunks one sequence at a time
// (split_engine.h).
std::unique_ptr<BatchEngine> make_cuda_engine(const Model& model, int n_seq, int64_t n_ctx);
#endif

}  // namespace bitnet::server
