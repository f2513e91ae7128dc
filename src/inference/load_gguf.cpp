#include "inference/load_gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "quant/dequant.h"
#include "quant/formats.h"

namespace bitnet {
namespace {

struct Ternary {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> w;       // [rows][cols]
  std::vector<float> scale;    // [rows]
};

// Unpacks a stored ternary tensor to int8 and one scale per row. TQ blocks carry their own fp16
// scale; BitNet tensors have one scale, so every block of a row holding a nonzero weight must
// agree (all-zero blocks may carry any scale, llama.cpp writes 0 there).
Ternary read_ternary(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols) {
  const GgufTensorInfo* info = f.find_tensor(name);
  if (!info) fail("{}: missing tensor '{}'", f.name(), name);
  if (info->shape.size() != 2 || info->shape[0] != rows || info->shape[1] != cols)
    fail("{}: tensor '{}' has shape {}, expected [{}, {}]", f.name(), name, shape_str(info->shape), rows, cols);
  Ternary t;
  t.rows = rows;
  t.cols = cols;
  t.w.resize(static_cast<size_t>(rows * cols));
  t.scale.resize(static_cast<size_t>(rows));
  const uint8_t* data = f.tensor_data(*info);
  const int64_t n = rows * cols;
  switch (info->dtype) {
    case DType::I2_S: {
      float s = 0;
      unpack_i2s(data, n, t.w.data(), &s, name);
      if (!std::isfinite(s) || s < 0) fail("{}: tensor '{}' has invalid I2_S scale {}", f.name(), name, s);
      std::fill(t.scale.begin(), t.scale.end(), s);
      break;
    }
    case DType::TQ2_0:
    case DType::TQ1_0: {
      std::vector<float> d(static_cast<size_t>(n / kTqBlock));
      if (info->dtype == DType::TQ2_0) unpack_tq2_0(data, n, t.w.data(), d.data(), name);
      else unpack_tq1_0(data, n, t.w.data(), d.data(), name);
      const int64_t per_row = cols / kTqBlock;
      for (int64_t r = 0; r < rows; ++r) {
        float s = 0;
        bool have = false;
        for (int64_t b = 0; b < per_row; ++b) {
          const int8_t* blk = t.w.data() + r * cols + b * kTqBlock;
          if (std::all_of(blk, blk + kTqBlock, [](int8_t v) { return v == 0; })) continue;
          const float db = d[static_cast<size_t>(r * per_row + b)];
          if (have && db != s)
            fail("{}: tensor '{}' row {} has blocks with different scales ({} and {}); per-block "
                 "scales are not supported for ternary layers", f.name(), name, r, s, db);
          s = db;
          have = true;
        }
        t.scale[static_cast<size_t>(r)] = s;
      }
      break;
    }
    default:
      fail("{}: tensor '{}' has type {}; ternary layers must be I2_S, TQ2_0 or TQ1_0", f.name(), name,
           dtype_name(info->dtype));
  }
  // llama.cpp's `bitnet` arch may carry a separate per-tensor scale (blk.N.attn_q.scale).
  std::string scale_name = name;
  if (scale_name.size() > 7 && scale_name.ends_with(".weight")) {
    scale_name.replace(scale_name.size() - 7, 7, ".scale");
    if (const GgufTensorInfo* si = f.find_tensor(scale_name)) {
      if (si->dtype != DType::F32 || si->nbytes != 4)
        fail("{}: scale tensor '{}' must be one F32 value", f.name(), scale_name);
      float s;
      std::memcpy(&s, f.tensor_data(*si), 4);
      for (auto& v : t.scale) v *= s;
    }
  }
  return t;
}

TernaryMatrix pack_fused(const std::vector<Ternary>& parts) {
  const int64_t cols = parts[0].cols;
  std::vector<int8_t> w;
  std::vector<float> s;
  for (const auto& p : parts) {
    BN_CHECK(p.cols == cols);
    w.insert(w.end(), p.w.begin(), p.w.end());
    s.insert(s.end(), p.scale.begin(), p.scale.end());
  }
  return pack_native(w.data(), static_cast<int64_t>(s.size()), cols, s.data());
}

std::vector<float> read_vector(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensorInfo* info = f.find_tensor(name);
  if (!info) fail("{}: missing tensor '{}'", f.name(), name);
  int64_t count = 1;
  for (auto d : info->shape) count *= d;
  if (count != n) fail("{}: tensor '{}' has {} values, expected {}", f.name(), name, count, n);
  if (!dequant_supported(info->dtype)) fail("{}: tensor '{}' has unsupported type {}", f.name(), name, dtype_name(info->dtype));
  std::vector<float> v(static_cast<size_t>(n));
  dequantize_row(info->dtype, f.tensor_data(*info), n, v.data());
  return v;
}

Tensor read_matrix(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols) {
  const GgufTensorInfo* info = f.find_tensor(name);
  if (!info) fail("{}: missing tensor '{}'", f.name(), name);
  if (info->shape.size() != 2 || info->shape[0] != rows || info->shape[1] != cols)
    fail("{}: tensor '{}' has shape {}, expected [{}, {}]", f.name(), name, shape_str(info->shape), rows, cols);
  if (!dequant_supported(info->dtype))
    fail("{}: tensor '{}' has type {}; supported: f32, f16, bf16, q8_0, q4_0, q6_k", f.name(), name, dtype_name(info->dtype));
  return f.tensor(*info);
}

}  // namespace

void write_config_metadata(GgufWriter& w, const ModelConfig& c) {
  const std::string& a = c.arch;
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  w.set("general.architecture", GgufValue::str(a));
  w.set(a + ".vocab_size", u32(c.n_vocab));
  w.set(a + ".context_length", u32(c.n_ctx_train));
  w.set(a + ".embedding_length", u32(c.n_embd));
  w.set(a + ".block_count", u32(c.n_layer));
  w.set(a + ".feed_forward_length", u32(c.n_ff));
  w.set(a + ".attention.head_count", u32(c.n_head));
  w.set(a + ".attention.head_count_kv", u32(c.n_head_kv));
  w.set(a + ".attention.key_length", u32(c.head_dim));
  w.set(a + ".attention.value_length", u32(c.head_dim));
  w.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(c.rms_eps));
  w.set(a + ".rope.freq_base", GgufValue::f32(c.rope_theta));
  w.set(a + ".rope.dimension_count", u32(c.rope_dim));
  w.set(a + ".hidden_act", GgufValue::str(c.act == FfnAct::kRelu2 ? "relu2" : "silu"));
}

std::unique_ptr<Model> load_gguf_model(const GgufFile& f, const std::function<void(int64_t, int64_t)>& progress) {
  const std::string arch = f.get_str("general.architecture");
  const bool b158 = arch == "bitnet-b1.58" || arch == "bitnet-25";
  if (!b158 && arch != "bitnet" && arch != "llama")
    fail("{}: unsupported architecture '{}' (supported: bitnet-b1.58, bitnet-25, bitnet, llama)", f.name(), arch);
  auto key = [&](const char* k) { return arch + "." + k; };
  auto m = std::make_unique<Model>();
  ModelConfig& c = m->cfg;
  c.arch = arch;
  c.n_embd = f.get_u32(key("embedding_length"));
  c.n_layer = f.get_u32(key("block_count"));
  c.n_ff = f.get_u32(key("feed_forward_length"));
  c.n_head = f.get_u32(key("attention.head_count"));
  c.n_head_kv = f.get_u32(key("attention.head_count_kv"), static_cast<uint32_t>(c.n_head));
  if (c.n_head <= 0 || c.n_embd % c.n_head)
    fail("{}: embedding length {} is not a multiple of head count {}", f.name(), c.n_embd, c.n_head);
  c.head_dim = f.get_u32(key("attention.key_length"), static_cast<uint32_t>(c.n_embd / c.n_head));
  c.rope_dim = f.get_u32(key("rope.dimension_count"), static_cast<uint32_t>(c.head_dim));
  c.rope_theta = f.get_f32(key("rope.freq_base"), 10000.0f);
  c.rms_eps = f.get_f32(key("attention.layer_norm_rms_epsilon"), 1e-5f);
  c.n_ctx_train = f.get_u32(key("context_length"), 4096);
  // RoPE: llama.cpp and bitnet.cpp use rotate-half (NEOX) for the BitNet archs, interleaved
  // pairs (NORM) for `llama`.
  c.rope = arch == "llama" ? RopeStyle::kNorm : RopeStyle::kNeox;
  // FFN activation: the file's hidden_act when present, else the arch's: relu^2 for BitNet
  // b1.58 2B4T (bitnet-b1.58 / bitnet-25), SiLU for llama.cpp's `bitnet` and `llama`.
  c.act = b158 ? FfnAct::kRelu2 : FfnAct::kSilu;
  if (const GgufValue* act = f.find(key("hidden_act")); act && b158) {
    const std::string a = f.get_str(key("hidden_act"));
    if (a == "relu2" || a == "relu_sqr" || a == "relu_squared") c.act = FfnAct::kRelu2;
    else if (a == "silu" || a == "swish") c.act = FfnAct::kSilu;
    else fail("{}: unsupported hidden_act '{}'", f.name(), a);
    (void)act;
  }
  c.sub_norms = f.find_tensor("blk.0.attn_sub_norm.weight") != nullptr;

  m->token_embd = [&] {
    const GgufTensorInfo* e = f.find_tensor("token_embd.weight");
    if (!e) fail("{}: missing tensor 'token_embd.weight'", f.name());
    if (e->shape.size() != 2) fail("{}: token_embd.weight has shape {}", f.name(), shape_str(e->shape));
    c.n_vocab = e->shape[0];
    return read_matrix(f, "token_embd.weight", c.n_vocab, c.n_embd);
  }();
  validate(c);
  if (f.find_tensor("output.weight")) {
    m->output = read_matrix(f, "output.weight", c.n_vocab, c.n_embd);
    m->tied_head = false;
  } else {
    m->output = m->token_embd;
    m->tied_head = true;
  }
  m->output_norm = read_vector(f, "output_norm.weight", c.n_embd);

  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights L;
    L.attn_norm = read_vector(f, p + "attn_norm.weight", d);
    L.ffn_norm = read_vector(f, p + "ffn_norm.weight", d);
    if (c.sub_norms) {
      L.attn_sub_norm = read_vector(f, p + "attn_sub_norm.weight", qd);
      L.ffn_sub_norm = read_vector(f, p + "ffn_sub_norm.weight", c.n_ff);
    }
    L.wqkv = pack_fused({read_ternary(f, p + "attn_q.weight", qd, d), read_ternary(f, p + "attn_k.weight", kvd, d),
                         read_ternary(f, p + "attn_v.weight", kvd, d)});
    L.wo = pack_fused({read_ternary(f, p + "attn_output.weight", d, qd)});
    L.w_gate_up = pack_fused({read_ternary(f, p + "ffn_gate.weight", c.n_ff, d), read_ternary(f, p + "ffn_up.weight", c.n_ff, d)});
    L.w_down = pack_fused({read_ternary(f, p + "ffn_down.weight", d, c.n_ff)});
    m->layers.push_back(std::move(L));
    if (progress) progress(il + 1, c.n_layer);
  }
  return m;
}

}  // namespace bitnet
