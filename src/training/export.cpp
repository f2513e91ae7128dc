#include "training/export.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "model/load_gguf.h"
#include "quant/quantize_rows.h"
#include "quant/ternary.h"
#include "quant/type_traits.h"

namespace bitnet::train {

namespace {

void check_finite(const float* p, int64_t n, const std::string& name) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]))
      fail("export: tensor '{}' has a non-finite value at {} (training diverged?)", name, i);
}

}  // namespace

GgufWriter export_gguf(const TrainModel& m, const TokenizerVocab& vocab, DType ternary_type, DType embd_type,
                       const std::string& name) {
  const ModelConfig& c = m.cfg;
  if (c.arch != "bitnet-b1.58") fail("export: architecture must be bitnet-b1.58, not '{}'", c.arch);
  if (!m.quantize) fail("export: a --float model has no ternary weights to export as GGUF");
  if (!quantize_supported(embd_type))
    fail("export: embedding type {} cannot be written", dtype_name(embd_type));
  if (static_cast<int64_t>(vocab.tokens.size()) != c.n_vocab)
    fail("export: the tokenizer has {} tokens, the model {}", vocab.tokens.size(), c.n_vocab);
  check_finite(m.params.data(), static_cast<int64_t>(m.params.size()), "(any)");
  GgufWriter w;
  w.set("general.name", GgufValue::str(name));
  write_config_metadata(w, c);
  write_tokenizer_metadata(w, vocab);

  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff;
  auto add_float = [&](const std::string& gname, int64_t off, int64_t rows, int64_t cols, DType t) {
    std::vector<int64_t> shape = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    std::vector<uint8_t> bytes;
    try {
      bytes = quantize_rows(t, m.at(off), rows, cols);
    } catch (const Error& e) {
      fail("export: tensor '{}': {}", gname, e.what());
    }
    w.add_tensor(gname, *ggml_from_dtype(t), std::move(shape), std::move(bytes));
  };
  // Rows [r0, r0 + rows) of a fused matrix of `cols` columns: one logical matrix, one scale.
  auto add_ternary = [&](const std::string& gname, int64_t off, int64_t r0, int64_t rows, int64_t cols) {
    const float* W = m.at(off) + r0 * cols;
    const size_t n = static_cast<size_t>(rows * cols);
    const float scale = absmean_scale(W, n);
    std::vector<int8_t> q(n);
    ternarize(W, n, scale, q.data());
    w.add_tensor(gname, *ggml_from_dtype(ternary_type), {rows, cols},
                 pack_ternary(ternary_type, q.data(), rows, cols, scale, gname));
  };
  add_float("token_embd.weight", m.tok_embd, c.n_vocab, d, embd_type);
  add_float("output_norm.weight", m.output_norm, 1, d, DType::F32);
  if (!m.tied) add_float("output.weight", m.output, c.n_vocab, d, embd_type);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const TrainModel::Layer& L = m.layers[static_cast<size_t>(il)];
    const std::string g = "blk." + std::to_string(il) + ".";
    add_float(g + "attn_norm.weight", L.attn_norm, 1, d, DType::F32);
    add_ternary(g + "attn_q.weight", L.wqkv, 0, qd, d);
    add_ternary(g + "attn_k.weight", L.wqkv, qd, kvd, d);
    add_ternary(g + "attn_v.weight", L.wqkv, qd + kvd, kvd, d);
    if (c.sub_norms) add_float(g + "attn_sub_norm.weight", L.attn_sub_norm, 1, qd, DType::F32);
    add_ternary(g + "attn_output.weight", L.wo, 0, d, qd);
    add_float(g + "ffn_norm.weight", L.ffn_norm, 1, d, DType::F32);
    add_ternary(g + "ffn_gate.weight", L.w_gate_up, 0, ff, d);
    add_ternary(g + "ffn_up.weight", L.w_gate_up, ff, ff, d);
    if (c.sub_norms) add_float(g + "ffn_sub_norm.weight", L.ffn_sub_norm, 1, ff, DType::F32);
    add_ternary(g + "ffn_down.weight", L.w_down, 0, d, ff);
  }
  return w;
}

}  // namespace bitnet::train
