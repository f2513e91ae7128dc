#include "server/engine.h"

namespace bitnet::server {
namespace {

class SessionEngine final : public Engine {
 public:
  SessionEngine(const Model& model, const SessionOptions& opts) : s_(model, opts) {}
  // TEMPORARY: one sequence over Session::forward until the several-sequence Session lands.
  const float* forward_batch(std::span<const BatchToken> batch) override {
    std::vector<int32_t> toks;
    for (const auto& b : batch) toks.push_back(b.token);
    const float* all = s_.forward(toks, true);
    const size_t nv = static_cast<size_t>(n_vocab());
    out_.clear();
    for (size_t i = 0; i < batch.size(); ++i)
      if (batch[i].logits) out_.insert(out_.end(), all + i * nv, all + (i + 1) * nv);
    return out_.data();
  }
  int64_t n_past(int) const override { return s_.n_past(); }
  void truncate(int, int64_t n) override { s_.truncate(n); }
  int n_seq() const override { return 1; }
  int64_t n_ctx() const override { return s_.n_ctx(); }
  int32_t n_vocab() const override { return static_cast<int32_t>(s_.model().cfg.n_vocab); }

 private:
  Session s_;
  std::vector<float> out_;
};

}  // namespace

std::unique_ptr<Engine> make_session_engine(const Model& model, const SessionOptions& opts) {
  return std::make_unique<SessionEngine>(model, opts);
}

}  // namespace bitnet::server
