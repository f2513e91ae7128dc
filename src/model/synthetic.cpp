#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"
#include "quant/q8_0x.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"

namespace bitnet {

ModelConfig config_2b4t() {
  ModelConfig c;
  c.arch = "bitnet-b1.58";
  c.n_vocab = 128256;
  c.n_embd = 2560;
  c.n_layer = 30;
  c.n_head = 20;
  c.n_head_kv = 5;
  c.head_dim = 128;
  c.n_ff = 6912;
  c.n_ctx_train = 4096;
  c.rope_dim = 128;
  c.rope_theta = 500000.0f;
  c.rms_eps = 1e-5f;
  c.rope = RopeStyle::kNeox;
  c.act = FfnAct::kRelu2;
  c.sub_norms = true;
  return c;
}

namespace {

// `scale` is relative to the unit-variance scale sqrt(1.5 / k) (2/3 of random ternary weights are
// nonzero), so activations keep their size through the layers as in a trained model.
TernaryMatrix random_matrix(int64_t n, int64_t k, uint64_t seed, float scale) {
  const float unit = std::sqrt(1.5f / static_cast<float>(k));
  TernaryMatrix m = random_native(n, k, seed, scale * unit);
  return m;
}

std::vector<float> random_norm(int64_t n, uint64_t seed) {
  return random_floats(static_cast<size_t>(n), seed, 0.5f, 1.5f);
}

}  // namespace

Model make_synthetic_model(const ModelConfig& cfg, uint64_t seed, DType embd_type) {
  validate(cfg);
  if (!quantize_supported(embd_type) || !head_supported(embd_type))
    fail("synthetic model: embedding type {} not supported (f32, f16, bf16, q8_0, q4_0, q6_k)", dtype_name(embd_type));
  Model m;
  m.cfg = cfg;
  const int64_t d = cfg.n_embd;
  // A Q8_0 or Q6_K table is held as the head kernel's Q8_0X or Q6_KX where a loaded model's would
  // be (model.h); the 4096-row slices below are whole Q6_KX groups.
  const DType held = head_layout(embd_type, d);
  m.token_embd = Tensor::empty(held, {cfg.n_vocab, d}, "token_embd.weight", false);
  // Generated and stored 4096 rows at a time (the 2B4T table is 1.3 GB as floats).
  const size_t rb = row_bytes(embd_type, d);
  for (int64_t r0 = 0; r0 < cfg.n_vocab; r0 += 4096) {
    const int64_t rows = std::min<int64_t>(4096, cfg.n_vocab - r0);
    auto e = random_floats(static_cast<size_t>(rows * d), seed + 7919 * static_cast<uint64_t>(r0 / 4096), -1.0f, 1.0f);
    const auto bytes = quantize_rows(embd_type, e.data(), rows, d);
    uint8_t* dst = m.token_embd.mutable_data() + static_cast<size_t>(r0) * rb;
    if (held == DType::Q8_0X)
      repack_q8_0x_rows(bytes.data(), rows, d, dst);
    else if (held == DType::Q6_KX)
      repack_q6_kx_rows(bytes.data(), rows, d, dst);
    else
      std::memcpy(dst, bytes.data(), bytes.size());
  }
  m.output = m.token_embd;
  m.tied_head = true;
  m.output_norm = random_norm(d, seed + 1);
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const uint64_t s = seed + 1000 * static_cast<uint64_t>(il + 1);
    LayerWeights L;
    L.attn_norm = random_norm(d, s + 1);
    L.ffn_norm = random_norm(d, s + 2);
    if (cfg.sub_norms) {
      L.attn_sub_norm = random_norm(cfg.q_dim(), s + 3);
      L.ffn_sub_norm = random_norm(cfg.n_ff, s + 4);
    }
    // Fused matrices are generated whole (random codes are random either way), with one scale per
    // logical part as a loaded model has.
    L.wqkv = random_matrix(cfg.q_dim() + 2 * cfg.kv_dim(), d, s + 5, 0.9f);
    float* qs = L.wqkv.row_scale_buf.as<float>();
    const float unit = std::sqrt(1.5f / static_cast<float>(d));
    for (int64_t r = cfg.q_dim(); r < cfg.q_dim() + cfg.kv_dim(); ++r) qs[r] = 1.1f * unit;
    for (int64_t r = cfg.q_dim() + cfg.kv_dim(); r < cfg.q_dim() + 2 * cfg.kv_dim(); ++r) qs[r] = 0.7f * unit;
    L.wo = random_matrix(d, cfg.q_dim(), s + 8, 0.8f);
    L.w_gate_up = random_matrix(2 * cfg.n_ff, d, s + 9, 1.2f);
    float* gs = L.w_gate_up.row_scale_buf.as<float>();
    for (int64_t r = cfg.n_ff; r < 2 * cfg.n_ff; ++r) gs[r] = 0.6f * unit;
    L.w_down = random_matrix(d, cfg.n_ff, s + 11, 0.5f);
    m.layers.push_back(std::move(L));
  }
  return m;
}

}  // namespace bitnet
