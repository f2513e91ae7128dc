#pragma once
// forward_batch (engine.h) over an engine whose calls run either one token each of several
// sequences (a decode step) or several tokens of one sequence (a prompt chunk), as the GPU session
// does (cuda/infer_session.h): the batch's sequences with one token go through one decode call,
// each sequence with more through its own prompt call, and the logits come back in the batch's
// order, as Session::forward_batch returns them. forward_batch_top does the same with the steps'
// decode_top; a prompt's logits row is reduced to its top k on the host.
#include <cstdint>
#include <memory>
#include <span>

#include "server/engine.h"

namespace bitnet::server {

class SeqSteps {
 public:
  virtual ~SeqSteps() = default;
  // One token for each of seqs[i] (distinct sequences), appended at its n_past: logits
  // [seqs.size()][n_vocab], valid until the next call.
  virtual const float* decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs) = 0;
  // Tokens appended to `seq`: the last token's logits [n_vocab], or every token's with all_logits.
  virtual const float* prompt(int seq, std::span<const int32_t> tokens, bool all_logits) = 0;
  // decode(), returning each row's k largest logits and log-sum-exp (TopRows' fields) into
  // val / id [seqs.size()][k] and log_z; offered where max_top_k() > 0.
  virtual int max_top_k() const { return 0; }
  virtual void decode_top(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int k, float* val,
                          int32_t* id, float* log_z);
  virtual int64_t n_past(int seq) const = 0;
  virtual void truncate(int seq, int64_t n) = 0;
  virtual int n_seq() const = 0;
  virtual int64_t n_ctx() const = 0;
  virtual int32_t n_vocab() const = 0;
};

std::unique_ptr<BatchEngine> make_split_engine(std::unique_ptr<SeqSteps> steps);

}  // namespace bitnet::server
