#include "server/engine.h"

#include "core/error.h"

namespace bitnet::server {

TopRows BatchEngine::forward_batch_top(std::span<const BatchToken>, int k) {
  fail("this engine does not find the top {} logits itself (max_top_k() is 0)", k);
}

namespace {

class SessionEngine final : public BatchEngine {
 public:
  SessionEngine(const Model& model, const SessionOptions& opts) : s_(model, opts) {}
  const float* forward_batch(std::span<const BatchToken> batch) override { return s_.forward_batch(batch); }
  int64_t n_past(int seq) const override { return s_.n_past(seq); }
  void truncate(int seq, int64_t n) override { s_.truncate(seq, n); }
  int n_seq() const override { return s_.n_seq(); }
  int64_t n_ctx() const override { return s_.n_ctx(); }
  int32_t n_vocab() const override { return static_cast<int32_t>(s_.model().cfg.n_vocab); }

 private:
  Session s_;
};

}  // namespace

std::unique_ptr<BatchEngine> make_session_engine(const Model& model, const SessionOptions& opts) {
  return std::make_unique<SessionEngine>(model, opts);
}

}  // namespace bitnet::server
