#include "model/load_gguf.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "core/error.h"
#include "quant/dequant.h"
#include "quant/type_traits.h"

namespace bitnet {
namespace {

// A stored ternary tensor (any type whose row in quant/type_traits.h packs), validated, decoded a
// slice of rows at a time.
struct TernarySource {
  std::string name;
  const GgufTensorInfo* info = nullptr;
  const TypeTraits* type = nullptr;
  int64_t rows = 0, cols = 0;
  float tensor_scale = 0;  // types with one scale per tensor (I2_S): that scale
  float extra_scale = 1;   // llama.cpp's `bitnet` arch: a separate per-tensor scale
};

TernarySource open_ternary(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols) {
  TernarySource t;
  t.name = name;
  t.info = f.find_tensor(name);
  if (!t.info) fail("{}: missing tensor '{}'", f.name(), name);
  if (t.info->shape.size() != 2 || t.info->shape[0] != rows || t.info->shape[1] != cols)
    fail("{}: tensor '{}' has shape {}, expected [{}, {}]", f.name(), name, shape_str(t.info->shape), rows, cols);
  t.rows = rows;
  t.cols = cols;
  t.type = &type_traits(t.info->dtype);
  if (!t.type->stored_ternary())
    fail("{}: tensor '{}' has type {}; ternary layers must be {}", f.name(), name, dtype_name(t.info->dtype),
         or_list(type_names(&TypeTraits::pack)));
  // Rows are whole blocks of the type (the GGUF reader checked); the tensor must be whole pack
  // blocks too (I2_S's 128-weight blocks may span rows).
  if (rows * cols % t.type->pack_block)
    fail("{}: tensor '{}': {} weights are not whole {}-weight {} blocks", f.name(), name, rows * cols,
         t.type->pack_block, dtype_name(t.info->dtype));
  if (t.type->tensor_scale) {
    t.tensor_scale = t.type->tensor_scale(f.tensor_data(*t.info), rows * cols);
    if (!std::isfinite(t.tensor_scale) || t.tensor_scale < 0)
      fail("{}: tensor '{}' has invalid {} scale {}", f.name(), name, dtype_name(t.info->dtype),
           t.tensor_scale);
  }
  std::string scale_name = name;
  if (scale_name.size() > 7 && scale_name.ends_with(".weight")) {
    scale_name.replace(scale_name.size() - 7, 7, ".scale");
    if (const GgufTensorInfo* si = f.find_tensor(scale_name)) {
      if (si->dtype != DType::F32 || si->nbytes != 4)
        fail("{}: scale tensor '{}' must be one F32 value", f.name(), scale_name);
      std::memcpy(&t.extra_scale, f.tensor_data(*si), 4);
    }
  }
  return t;
}

// Rows a slice may start at: element r0 * cols must begin a pack block of the stored type.
int64_t row_step(const TernarySource& t) {
  return t.type->pack_block / std::gcd(t.cols, t.type->pack_block);
}

// Decodes rows [r0, r1) to int8 w [r1 - r0][cols] and one scale per row. A per-tensor scale covers
// every row. Otherwise each block carries its own (TQ's fp16 d); BitNet tensors have one scale, so
// every block of a row holding a nonzero weight must agree (all-zero blocks may carry any scale,
// llama.cpp writes 0 there).
void decode_rows(const GgufFile& f, const TernarySource& t, int64_t r0, int64_t r1, int8_t* w, float* scale) {
  const int64_t first = r0 * t.cols, n = (r1 - r0) * t.cols;
  const uint8_t* in = f.tensor_data(*t.info) + row_bytes(t.info->dtype, first);
  if (t.type->tensor_scale) {
    t.type->unpack(in, n, w, nullptr, t.name, first);
    std::fill(scale, scale + (r1 - r0), t.tensor_scale * t.extra_scale);
    return;
  }
  const int64_t blk = t.type->pack_block;  // = the row block (quant/type_traits.cpp)
  std::vector<float> d(static_cast<size_t>(n / blk));
  t.type->unpack(in, n, w, d.data(), t.name, first);
  const int64_t per_row = t.cols / blk;
  for (int64_t r = 0; r < r1 - r0; ++r) {
    float s = 0;
    bool have = false;
    for (int64_t b = 0; b < per_row; ++b) {
      const int8_t* x = w + r * t.cols + b * blk;
      if (std::all_of(x, x + blk, [](int8_t v) { return v == 0; })) continue;
      const float db = d[static_cast<size_t>(r * per_row + b)];
      if (have && db != s)
        fail("{}: tensor '{}' row {} has blocks with different scales ({} and {}); per-block "
             "scales are not supported for ternary layers", f.name(), t.name, r0 + r, s, db);
      s = db;
      have = true;
    }
    scale[r] = s * t.extra_scale;
  }
}

// Reads stored ternary tensors of equal width and packs them, stacked, into one native matrix
// (fused q|k|v or gate|up keep one scale per part). Each tensor is decoded in slices of about
// 64k weights (cache-sized), and its file pages are dropped once packed, so neither the file's copy of the
// ternary weights nor an int8 copy ever stays resident beside ours.
struct Part {
  std::string name;
  int64_t rows;
};
TernaryMatrix load_fused(const GgufFile& f, const std::vector<Part>& parts, int64_t cols) {
  std::vector<TernarySource> src;
  int64_t n = 0;
  for (const Part& p : parts) {
    src.push_back(open_ternary(f, p.name, p.rows, cols));
    n += p.rows;
  }
  TernaryMatrix m = alloc_native(n, cols);
  std::vector<int8_t> w;
  std::vector<float> scale;
  int64_t row0 = 0;
  for (const TernarySource& t : src) {
    const int64_t step = row_step(t);
    const int64_t slice = std::max<int64_t>(1, (int64_t{1} << 16) / cols / step) * step;
    w.resize(static_cast<size_t>(std::min(slice, t.rows) * cols));
    scale.resize(static_cast<size_t>(std::min(slice, t.rows)));
    for (int64_t r0 = 0; r0 < t.rows; r0 += slice) {
      const int64_t r1 = std::min(t.rows, r0 + slice);
      decode_rows(f, t, r0, r1, w.data(), scale.data());
      pack_native_rows(m, row0 + r0, w.data(), r1 - r0, scale.data());
    }
    f.release_tensor(*t.info);
    row0 += t.rows;
  }
  return m;
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
  // A norm's weights multiply every activation: one NaN or inf would spread silently.
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(v[static_cast<size_t>(i)])) fail("{}: tensor '{}' has a non-finite value at {}", f.name(), name, i);
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
  // A Q8_0 or Q6_K head is regrouped for its kernel (model.h), slice by slice, each slice's file
  // pages dropped once copied: peak memory stays one copy of the table.
  auto regroup = [&](Tensor& t, const char* name) {
    if (head_layout(t.dtype(), t.cols()) == t.dtype()) return;
    t = regroup_head(t, [&](const uint8_t* p, size_t n) { f.release_bytes(p, n); });
    f.release_tensor(*f.find_tensor(name));  // the pages that straddled slices
  };
  if (f.find_tensor("output.weight")) {
    m->output = read_matrix(f, "output.weight", c.n_vocab, c.n_embd);
    m->tied_head = false;
    regroup(m->output, "output.weight");  // the embedding stays as stored: one row per token
  } else {
    regroup(m->token_embd, "token_embd.weight");
    m->output = m->token_embd;
    m->tied_head = true;
  }
  m->output_norm = read_vector(f, "output_norm.weight", c.n_embd);

  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  auto load_layer = [&](int64_t il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights L;
    L.attn_norm = read_vector(f, p + "attn_norm.weight", d);
    L.ffn_norm = read_vector(f, p + "ffn_norm.weight", d);
    if (c.sub_norms) {
      L.attn_sub_norm = read_vector(f, p + "attn_sub_norm.weight", qd);
      L.ffn_sub_norm = read_vector(f, p + "ffn_sub_norm.weight", c.n_ff);
    } else {
      // Sub-norms are told by layer 0's; another layer's without it would be dropped, and every
      // layer run without its sub-norms.
      for (const char* n : {"attn_sub_norm.weight", "ffn_sub_norm.weight"})
        if (f.find_tensor(p + n))
          fail("{}: '{}{}' is present but 'blk.0.attn_sub_norm.weight' is not: sub-norms must be in every "
               "layer or in none",
               f.name(), p, n);
    }
    L.wqkv = load_fused(f, {{p + "attn_q.weight", qd}, {p + "attn_k.weight", kvd}, {p + "attn_v.weight", kvd}}, d);
    L.wo = load_fused(f, {{p + "attn_output.weight", d}}, qd);
    L.w_gate_up = load_fused(f, {{p + "ffn_gate.weight", c.n_ff}, {p + "ffn_up.weight", c.n_ff}}, d);
    L.w_down = load_fused(f, {{p + "ffn_down.weight", d}}, c.n_ff);
    return L;
  };
  // Layers are repacked in parallel (every weight is decoded and re-encoded once, about 1 ns per
  // weight on one core). The first error any worker meets is rethrown here.
  m->layers.resize(static_cast<size_t>(c.n_layer));
  std::atomic<int64_t> next{0};
  int64_t done = 0;
  std::mutex mu;
  std::exception_ptr err;
  auto worker = [&] {
    for (;;) {
      const int64_t il = next++;
      if (il >= c.n_layer) return;
      try {
        m->layers[static_cast<size_t>(il)] = load_layer(il);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!err) err = std::current_exception();
        next = c.n_layer;
        return;
      }
      std::lock_guard lock(mu);
      if (progress && !err) progress(++done, c.n_layer);
    }
  };
  const int nt = static_cast<int>(std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, std::min<int64_t>(c.n_layer, 16)));
  std::vector<std::thread> threads;
  for (int t = 1; t < nt; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (err) std::rethrow_exception(err);
  return m;
}

}  // namespace bitnet
