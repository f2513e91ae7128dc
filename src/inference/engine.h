#pragma once
// What a text loop (run, chat, perplexity) needs of a forward pass over one sequence, so it runs
// the same on the CPU Session (forward.h) or a GPU backend (src/cuda/infer_session.h) without
// this folder knowing the GPU.
#include <cstdint>
#include <span>

#include "model/model.h"

namespace bitnet {

class Engine {
 public:
  virtual ~Engine() = default;
  // Appends tokens at n_past() ..; logits of the last token ([n_vocab]) or, with all_logits, of
  // every token ([n][n_vocab]), valid until the next call. Throws bitnet::Error on overflow.
  virtual const float* forward(std::span<const int32_t> tokens, bool all_logits = false) = 0;
  virtual int64_t n_past() const = 0;
  virtual int64_t n_ctx() const = 0;
  // Forgets cached positions >= n (n <= n_past()).
  virtual void truncate(int64_t n) = 0;
  virtual const Model& model() const = 0;
  // forward() of one token returning what sampling needs instead of the logits: its k largest
  // logits and their ids, largest first, ties to the lowest id (sampler.h top_k_logits' list;
  // Sampler::sample_top draws from it), into val / id [k], for engines that find them where the
  // logits are (the GPU). max_top_k() 0: not offered.
  virtual int max_top_k() const { return 0; }
  virtual void forward_top(int32_t token, int k, float* val, int32_t* id);
};

}  // namespace bitnet
