#include "model/config.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace bitnet {

void validate(const ModelConfig& c) {
  auto positive = [&](int64_t v, const char* name) {
    if (v <= 0) fail("model config: {} must be positive, got {}", name, v);
  };
  positive(c.n_vocab, "vocab size");
  positive(c.n_embd, "embedding length");
  positive(c.n_layer, "block count");
  positive(c.n_head, "head count");
  positive(c.n_head_kv, "KV head count");
  positive(c.head_dim, "head dimension");
  positive(c.n_ff, "feed-forward length");
  if (c.n_head % c.n_head_kv)
    fail("model config: head count {} is not a multiple of KV head count {}", c.n_head, c.n_head_kv);
  if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2)
    fail("model config: RoPE dimension {} must be even and within head dimension {}", c.rope_dim, c.head_dim);
  // Finite and in range, not only positive: an infinite epsilon zeroes every norm, and a RoPE base
  // of 1 or less makes no falling frequencies (1e-30 gave angles of ~1e30).
  if (!(c.rms_eps > 0 && c.rms_eps < 1))
    fail("model config: RMS norm epsilon {} must be in (0, 1)", c.rms_eps);
  if (!(c.rope_theta > 1 && std::isfinite(c.rope_theta)))
    fail("model config: RoPE base {} must be finite and greater than 1", c.rope_theta);
  // GGUF keeps it as u32 (context_length); a larger one was written wrapped around.
  if (c.n_ctx_train < 0 || c.n_ctx_train > 0xFFFFFFFFll)
    fail("model config: trained context {} must be in [0, 2^32)", c.n_ctx_train);
}

std::string describe(const ModelConfig& c) {
  return fmt::format(
      "arch {} | vocab {} | embd {} | layers {} | heads {}/{} (dim {}) | ffn {} ({}) | rope {} theta {} | "
      "eps {} | sub-norms {}",
      c.arch, c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff,
      c.act == FfnAct::kRelu2 ? "relu2" : "silu", c.rope == RopeStyle::kNeox ? "neox" : "norm", c.rope_theta,
      c.rms_eps, c.sub_norms ? "yes" : "no");
}

}  // namespace bitnet
