// The server's engine on one GPU: CudaSession's decode steps and prompt calls behind the split
// engine (split_engine.h). Compiled where the CUDA backend is.
#include "cuda/infer_session.h"
#include "server/engine.h"
#include "server/split_engine.h"

namespace bitnet::server {
namespace {

class CudaSteps final : public SeqSteps {
 public:
  CudaSteps(const Model& model, const cuda::CudaSessionOptions& o) : s_(model, o), max_seqs_(o.max_seqs) {}
  const float* decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs) override {
    return s_.decode(tokens, seqs);
  }
  int max_top_k() const override { return cuda::CudaSession::kDecodeTopMax; }
  void decode_top(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int k, float* val,
                  int32_t* id, float* log_z) override {
    s_.decode_top(tokens, seqs, k, val, id, log_z);
  }
  const float* prompt(int seq, std::span<const int32_t> tokens, bool all_logits) override {
    return s_.forward_seq(seq, tokens, all_logits);
  }
  int64_t n_past(int seq) const override { return s_.n_past(seq); }
  void truncate(int seq, int64_t n) override { s_.truncate_seq(seq, n); }
  int n_seq() const override { return max_seqs_; }
  int64_t n_ctx() const override { return s_.n_ctx(); }
  int32_t n_vocab() const override { return static_cast<int32_t>(s_.model().cfg.n_vocab); }

 private:
  cuda::CudaSession s_;
  int max_seqs_;
};

}  // namespace

std::unique_ptr<BatchEngine> make_cuda_engine(const Model& model, int n_seq, int64_t n_ctx) {
  cuda::CudaSessionOptions o;
  o.n_ctx = n_ctx;
  o.max_seqs = n_seq;
  return make_split_engine(std::make_unique<CudaSteps>(model, o));
}

}  // namespace bitnet::server
