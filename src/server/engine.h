#pragma once
// What the scheduler needs of the model: the Session's several-sequence API (inference/forward.h)
// behind an interface, so the scheduler's tests drive it with a scripted fake and the server
// drives a real Session.
#include <cstdint>
#include <memory>
#include <span>

#include "inference/forward.h"

namespace bitnet::server {

class BatchEngine {
 public:
  virtual ~BatchEngine() = default;
  // Session::forward_batch: logits [k][n_vocab] for the k entries with logits = true, in order.
  virtual const float* forward_batch(std::span<const BatchToken> batch) = 0;
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
