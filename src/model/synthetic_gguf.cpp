#include "model/synthetic_gguf.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "model/load_gguf.h"
#include "model/synthetic.h"
#include "quant/quantize_rows.h"
#include "quant/type_traits.h"
#include "tokenizer/tokenizer.h"

namespace bitnet {
namespace {

struct Rng {
  uint64_t x;
  uint64_t next() {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() >> 40) / static_cast<float>(1 << 24); }
};

void add_ternary(GgufWriter& w, const std::string& name, int64_t rows, int64_t cols, DType type, Rng& rng) {
  const int64_t n = rows * cols;
  std::vector<int8_t> q(static_cast<size_t>(n));
  for (auto& v : q) v = static_cast<int8_t>(static_cast<int>((rng.next() >> 32) % 3) - 1);
  // About 2/3 of the weights are nonzero: this scale keeps activations at unit size layer to layer.
  const float scale = std::sqrt(1.5f / static_cast<float>(cols));
  w.add_tensor(name, *ggml_from_dtype(type), {rows, cols},
               pack_ternary(type, q.data(), rows, cols, scale, name));
}

void add_norm(GgufWriter& w, const std::string& name, int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(0.8f, 1.2f);
  w.add_tensor(name, *ggml_from_dtype(DType::F32), {n}, quantize_rows(DType::F32, v.data(), 1, n));
}

}  // namespace

ModelConfig synthetic_config(const std::string& shape) {
  ModelConfig c = config_2b4t();
  if (shape == "2b4t") return c;
  if (shape != "tiny") fail("unknown synthetic shape '{}' (2b4t, tiny)", shape);
  c.n_vocab = 2048;
  c.n_embd = 256;
  c.n_layer = 4;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 64;
  c.rope_dim = 64;
  c.n_ff = 768;
  c.n_ctx_train = 1024;
  return c;
}

GgufWriter synthetic_gguf(const ModelConfig& c, DType ternary_type, DType embd_type, uint64_t seed) {
  validate(c);
  if (!type_traits(ternary_type).stored_ternary())
    fail("synthetic model: ternary type must be {}, not {}", or_list(type_names(&TypeTraits::pack)),
         dtype_name(ternary_type));
  if (!quantize_supported(embd_type))
    fail("synthetic model: embedding type must be {}, not {}", or_list(type_names(&TypeTraits::quantize)),
         dtype_name(embd_type));
  if (c.n_vocab < 259) fail("synthetic model: vocabulary must hold the 256 byte tokens and specials");
  GgufWriter w;
  write_config_metadata(w, c);
  w.set("general.name", GgufValue::str("bitnet synthetic (random weights: meaningless text)"));
  // Byte-level tokenizer: ids 0..255 are the bytes (GPT-2 alphabet), then BOS, EOS, reserved.
  write_tokenizer_metadata(w, byte_level_vocab(c.n_vocab));

  Rng rng{seed * 0x9E3779B97F4A7C15ull + 12345};
  std::vector<float> e(static_cast<size_t>(c.n_vocab * c.n_embd));
  for (auto& x : e) x = rng.uniform(-1.0f, 1.0f);
  w.add_tensor("token_embd.weight", *ggml_from_dtype(embd_type), {c.n_vocab, c.n_embd},
               quantize_rows(embd_type, e.data(), c.n_vocab, c.n_embd));
  e.clear();
  add_norm(w, "output_norm.weight", c.n_embd, rng);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    add_norm(w, p + "attn_norm.weight", c.n_embd, rng);
    add_ternary(w, p + "attn_q.weight", c.q_dim(), c.n_embd, ternary_type, rng);
    add_ternary(w, p + "attn_k.weight", c.kv_dim(), c.n_embd, ternary_type, rng);
    add_ternary(w, p + "attn_v.weight", c.kv_dim(), c.n_embd, ternary_type, rng);
    add_ternary(w, p + "attn_output.weight", c.n_embd, c.q_dim(), ternary_type, rng);
    add_ternary(w, p + "ffn_gate.weight", c.n_ff, c.n_embd, ternary_type, rng);
    add_ternary(w, p + "ffn_up.weight", c.n_ff, c.n_embd, ternary_type, rng);
    add_ternary(w, p + "ffn_down.weight", c.n_embd, c.n_ff, ternary_type, rng);
    if (c.sub_norms) {
      add_norm(w, p + "attn_sub_norm.weight", c.q_dim(), rng);
      add_norm(w, p + "ffn_sub_norm.weight", c.n_ff, rng);
    }
    add_norm(w, p + "ffn_norm.weight", c.n_embd, rng);
  }
  return w;
}

}  // namespace bitnet
