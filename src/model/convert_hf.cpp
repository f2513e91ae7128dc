#include "model/convert_hf.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/load_gguf.h"
#include "quant/formats.h"
#include "quant/quantize_rows.h"
#include "quant/ternary.h"
#include "quant/type_traits.h"
#include "tokenizer/tokenizer.h"

namespace bitnet {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("{}: cannot open", p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json read_json(const fs::path& p) {
  const std::string text = slurp(p);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}

int64_t get_int(const json& j, const std::string& file, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer()) fail("{}: missing or non-integer key '{}'", file, key);
  const int64_t v = j[key].get<int64_t>();
  if (v <= 0) fail("{}: key '{}' = {} must be positive", file, key, v);
  return v;
}

int64_t get_int_or(const json& j, const std::string& file, const char* key, int64_t def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  return get_int(j, file, key);
}

std::string get_str_or(const json& j, const std::string& file, const char* key, const std::string& def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_string()) fail("{}: key '{}' must be a string", file, key);
  return j[key].get<std::string>();
}

bool get_bool_or(const json& j, const std::string& file, const char* key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) fail("{}: key '{}' must be true or false", file, key);
  return j[key].get<bool>();
}

double get_num_or(const json& j, const std::string& file, const char* key, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number()) fail("{}: key '{}' must be a number", file, key);
  return j[key].get<double>();
}

// Reads a F32/F16/BF16 safetensors tensor as float, checking its shape.

enum class ScaleMode { kDivide, kMultiply };

struct Quantized {
  std::vector<int8_t> q;
  float scale = 0;
};

// One linear layer's ternary codes and scale, from master weights or packed uint8 + weight_scale.
Quantized read_linear(const SafetensorsModel& st, const std::string& name, int64_t out, int64_t in, ScaleMode mode) {
  const SafetensorsTensorInfo* info = st.find_tensor(name);
  if (!info) fail("checkpoint: missing tensor '{}'", name);
  const SafetensorsFile* f = st.file_of(name);
  const std::string scale_name = name.substr(0, name.size() - 6) + "weight_scale";  // "...weight" -> "...weight_scale"
  const SafetensorsTensorInfo* sinfo = st.find_tensor(scale_name);
  Quantized r;
  r.q.resize(static_cast<size_t>(out * in));
  if (info->dtype == "U8") {
    if (!sinfo) fail("{}: packed uint8 tensor '{}' has no '{}'", f->name(), name, scale_name);
    const std::vector<int64_t> want{static_cast<int64_t>(hf_packed_rows(out)), in};
    if (info->shape != want)
      fail("{}: packed tensor '{}' has shape {}, expected {} (weight [{}, {}])", f->name(), name, shape_str(info->shape),
           shape_str(want), out, in);
    unpack_hf(f->tensor_data(*info), out, in, r.q.data(), name);
    if (sinfo->shape.size() > 1 || (sinfo->shape.size() == 1 && sinfo->shape[0] != 1))
      fail("{}: '{}' has shape {}; one scale per tensor is supported", st.file_of(scale_name)->name(), scale_name,
           shape_str(sinfo->shape));
    const float ws = read_float_tensor(st, scale_name, sinfo->shape)[0];
    if (!std::isfinite(ws) || ws <= 0)
      fail("{}: '{}' = {} is not a positive scale", st.file_of(scale_name)->name(), scale_name, ws);
    // transformers/integrations/bitnet.py, BitLinear.post_quant_process:
    //   `out = input / (input_scale * weight_scale)` -> real weight = codes / weight_scale
    // (llama.cpp's dequant_bitnet agrees: "The scale is inverted", `data / scale`). AutoBitLinear
    // in offline mode instead does `output = output * self.weight_scale` after F.linear.
    r.scale = mode == ScaleMode::kDivide ? 1.0f / ws : ws;
    return r;
  }
  if (sinfo)
    fail("{}: tensor '{}' is {} but has a '{}'; expected packed uint8 weights with a weight_scale", f->name(), name,
         info->dtype, scale_name);
  const std::vector<float> w = read_float_tensor(st, name, {out, in});
  for (size_t i = 0; i < w.size(); ++i)  // a NaN would make the scale NaN: a file no loader takes
    if (!std::isfinite(w[i])) fail("{}: tensor '{}' has a non-finite value at {}", f->name(), name, i);
  r.scale = absmean_scale(w.data(), w.size());
  ternarize(w.data(), w.size(), r.scale, r.q.data());
  return r;
}

// A linear layer's codes in the stored ternary type; when its shape does not fit the type's blocks,
// the error names the types it would fit.
std::vector<uint8_t> pack_linear(const Quantized& t, int64_t rows, int64_t cols, DType type,
                                 const std::string& name) {
  try {
    return pack_ternary(type, t.q.data(), rows, cols, t.scale, name);
  } catch (const Error& e) {
    std::vector<std::string> fit;
    for (const std::string& other : type_names(&TypeTraits::pack))
      if (ternary_fits(*dtype_from_name(other), rows, cols)) fit.push_back(other);
    if (fit.empty()) throw;
    fail("{} (use --type {})", e.what(), or_list(fit));
  }
}

// bos/eos strings in tokenizer_config.json are either "text" or {"content": "text", ...}.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

void add_tokenizer(GgufWriter& w, const fs::path& dir, const json& cfg, int64_t n_vocab) {
  const fs::path tj = dir / "tokenizer.json";
  if (!fs::exists(tj)) fail("{}: missing tokenizer.json", dir.string());
  HfTokenizerJson h = parse_hf_tokenizer_json(slurp(tj), tj.string());
  TokenizerVocab& v = h.vocab;
  if (h.add_prefix_space) fail("{}: ByteLevel add_prefix_space is not supported in GGUF", tj.string());
  if (h.pattern == kLlama3Pattern) v.pre = "llama-bpe";
  else if (h.pattern == kGpt2Pattern) v.pre = "gpt-2";
  else fail("{}: pre-tokenizer regex is neither LLaMA-3's nor GPT-2's; not supported", tj.string());
  const int64_t nt = static_cast<int64_t>(v.tokens.size());
  if (nt > n_vocab)
    fail("{}: {} tokens but config.json vocab_size is {}", tj.string(), nt, n_vocab);
  // Ids without a token (gaps, or vocab_size above the tokenizer's size): unused placeholders.
  v.tokens.resize(static_cast<size_t>(n_vocab));
  v.token_types.resize(static_cast<size_t>(n_vocab), static_cast<int32_t>(TokenType::Unused));
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.tokens[i].empty()) {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.token_types[i] = static_cast<int32_t>(TokenType::Unused);
    }
  auto id_of = [&](const std::string& text) -> int32_t {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == text && v.token_types[i] != static_cast<int32_t>(TokenType::Normal)) return static_cast<int32_t>(i);
    return -1;
  };
  const fs::path tc = dir / "tokenizer_config.json";
  if (fs::exists(tc)) {
    const json t = read_json(tc);
    if (t.contains("bos_token"))
      if (const std::string s = token_text(t["bos_token"]); !s.empty()) {
        if (id_of(s) < 0) fail("{}: bos_token '{}' is not an added token of tokenizer.json", tc.string(), s);
        v.bos_id = id_of(s);
      }
    if (t.contains("eos_token"))
      if (const std::string s = token_text(t["eos_token"]); !s.empty()) {
        if (id_of(s) < 0) fail("{}: eos_token '{}' is not an added token of tokenizer.json", tc.string(), s);
        v.eos_id = id_of(s);
      }
    if (t.contains("add_bos_token") && t["add_bos_token"].is_boolean()) v.add_bos = t["add_bos_token"].get<bool>();
  }
  auto cfg_id = [&](const char* key, int32_t& dst) {
    if (dst < 0 && cfg.contains(key) && cfg[key].is_number_integer()) {
      const int64_t x = cfg[key].get<int64_t>();
      if (x >= 0 && x < n_vocab) dst = static_cast<int32_t>(x);
    }
  };
  cfg_id("bos_token_id", v.bos_id);
  cfg_id("eos_token_id", v.eos_id);

  write_tokenizer_metadata(w, v);
}

json read_config(const fs::path& dir) {
  const fs::path p = dir / "config.json";
  if (!fs::exists(p)) fail("{}: missing config.json", dir.string());
  json j = read_json(p);
  if (!j.is_object()) fail("{}: not a JSON object", p.string());
  // transformers 5.x may nest the language model's settings in "text_config".
  if (j.contains("text_config") && j["text_config"].is_object() && !j.contains("hidden_size")) j = j["text_config"];
  return j;
}

}  // namespace

ModelConfig hf_config(const std::string& dir_s) {
  const fs::path dir(dir_s);
  const json j = read_config(dir);
  const std::string file = (dir / "config.json").string();
  const std::string mt = get_str_or(j, file, "model_type", "");
  bool arch_ok = mt == "bitnet";
  if (j.contains("architectures") && j["architectures"].is_array())
    for (const auto& a : j["architectures"])
      if (a.is_string() && a.get<std::string>() == "BitNetForCausalLM") arch_ok = true;
  if (!arch_ok)
    fail("{}: model_type '{}' is not a BitNet checkpoint (expected model_type \"bitnet\" / BitNetForCausalLM)", file, mt);
  ModelConfig c;
  c.arch = "bitnet-b1.58";
  c.n_embd = get_int(j, file, "hidden_size");
  c.n_ff = get_int(j, file, "intermediate_size");
  c.n_layer = get_int(j, file, "num_hidden_layers");
  c.n_head = get_int(j, file, "num_attention_heads");
  c.n_head_kv = get_int_or(j, file, "num_key_value_heads", c.n_head);
  c.n_vocab = get_int(j, file, "vocab_size");
  c.n_ctx_train = get_int_or(j, file, "max_position_embeddings", 2048);
  if (c.n_embd % c.n_head) fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", file, c.n_embd, c.n_head);
  c.head_dim = get_int_or(j, file, "head_dim", c.n_embd / c.n_head);
  c.rope_dim = c.head_dim;
  c.rms_eps = static_cast<float>(get_num_or(j, file, "rms_norm_eps", 1e-6));  // BitNetConfig's default
  // RoPE base: transformers 4.x "rope_theta"; 5.x "rope_parameters": {"rope_theta", "rope_type"}.
  double theta = get_num_or(j, file, "rope_theta", 500000.0);  // BitNetConfig's default
  for (const char* k : {"rope_parameters", "rope_scaling"}) {
    if (!j.contains(k) || j[k].is_null()) continue;
    const json& rp = j[k];
    if (!rp.is_object()) fail("{}: '{}' must be an object", file, k);
    const std::string type = get_str_or(rp, file, "rope_type", get_str_or(rp, file, "type", "default"));
    if (type != "default") fail("{}: {}.rope_type '{}' is not supported (only default RoPE)", file, k, type);
    if (rp.contains("rope_theta")) theta = get_num_or(rp, file, "rope_theta", theta);
  }
  c.rope_theta = static_cast<float>(theta);
  // modeling_bitnet.py applies RoPE with rotate_half (pairs i, i + d/2): NEOX, so q/k need no
  // permutation.
  c.rope = RopeStyle::kNeox;
  const std::string act = get_str_or(j, file, "hidden_act", "relu2");
  if (act == "relu2") c.act = FfnAct::kRelu2;
  else if (act == "silu") c.act = FfnAct::kSilu;
  else fail("{}: hidden_act '{}' is not supported (relu2, silu)", file, act);
  c.sub_norms = true;
  if (get_bool_or(j, file, "attention_bias", false)) fail("{}: attention_bias true is not supported", file);
  validate(c);
  return c;
}

std::vector<float> read_float_tensor(const SafetensorsModel& st, const std::string& name, const std::vector<int64_t>& shape) {
  const SafetensorsTensorInfo* info = st.find_tensor(name);
  if (!info) fail("checkpoint: missing tensor '{}'", name);
  const SafetensorsFile* f = st.file_of(name);
  if (info->shape != shape)
    fail("{}: tensor '{}' has shape {}, expected {}", f->name(), name, shape_str(info->shape), shape_str(shape));
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  std::vector<float> out(n);
  const uint8_t* p = f->tensor_data(*info);
  if (info->dtype == "F32") {
    std::memcpy(out.data(), p, n * 4);
  } else if (info->dtype == "F16" || info->dtype == "BF16") {
    const bool bf = info->dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
    }
  } else {
    fail("{}: tensor '{}' has dtype {}; expected F32, F16 or BF16", f->name(), name, info->dtype);
  }
  return out;
}

bool hf_tied(const std::string& dir) {
  const std::filesystem::path d(dir);
  return get_bool_or(read_config(d), (d / "config.json").string(), "tie_word_embeddings",
                     true);  // BitNetConfig's default
}

DType default_embd_type(const ModelConfig& c) {
  if (c.n_embd % 256 == 0) return DType::Q6_K;
  if (c.n_embd % 32 == 0) return DType::Q8_0;
  return DType::F16;
}

GgufWriter convert_hf(const std::string& dir_s, const ConvertOptions& opt) {
  if (!type_traits(opt.ternary_type).stored_ternary())
    fail("convert: ternary type must be {}, not {}", or_list(type_names(&TypeTraits::pack)),
         dtype_name(opt.ternary_type));
  if (opt.embd_type && !quantize_supported(*opt.embd_type))
    fail("convert: embedding type must be {}, not {}", or_list(type_names(&TypeTraits::quantize)),
         dtype_name(*opt.embd_type));
  const fs::path dir(dir_s);
  const ModelConfig c = hf_config(dir_s);
  const DType embd_type = opt.embd_type.value_or(default_embd_type(c));
  const json j = read_config(dir);
  const std::string cfile = (dir / "config.json").string();
  const bool tied = get_bool_or(j, cfile, "tie_word_embeddings", true);  // BitNetConfig's default
  ScaleMode mode = ScaleMode::kDivide;
  if (j.contains("quantization_config") && j["quantization_config"].is_object()) {
    const json& q = j["quantization_config"];
    const std::string qfile = cfile + " (quantization_config)";
    const std::string qm = get_str_or(q, qfile, "quant_method", "bitnet");
    if (qm != "bitnet") fail("{}: quantization_config.quant_method '{}' is not supported (bitnet)", cfile, qm);
    if (get_str_or(q, qfile, "linear_class", "bitlinear") == "autobitlinear" &&
        get_str_or(q, qfile, "quantization_mode", "offline") == "offline")
      mode = ScaleMode::kMultiply;
    if (get_bool_or(q, qfile, "use_rms_norm", false)) fail("{}: quantization_config.use_rms_norm is not supported", cfile);
  }

  fs::path st_path = dir;
  if (!fs::exists(dir / "model.safetensors.index.json") && !fs::exists(dir / "model.safetensors")) {
    std::vector<fs::path> found;
    if (fs::is_directory(dir))
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".safetensors") found.push_back(e.path());
    if (found.empty()) fail("{}: no *.safetensors file or model.safetensors.index.json", dir.string());
    if (found.size() > 1) fail("{}: several .safetensors files but no model.safetensors.index.json", dir.string());
    st_path = found[0];
  }
  const SafetensorsModel st = SafetensorsModel::open(st_path.string());
  // Layers past the config's count would be left out of the file without a word: the model would
  // run, shortened, and give wrong text.
  for (const std::string& name : st.tensor_names()) {
    constexpr std::string_view kLayers = "model.layers.";
    if (name.compare(0, kLayers.size(), kLayers) != 0) continue;
    int64_t il = 0;
    const char* first = name.data() + kLayers.size();
    const auto [end, ec] = std::from_chars(first, name.data() + name.size(), il);
    if (ec == std::errc() && end != first && il >= c.n_layer)
      fail("{}: num_hidden_layers is {} but the checkpoint has '{}' (layer {}); fix the config or the checkpoint",
           cfile, c.n_layer, name, il);
  }

  // The vocabulary's size against the embedding's rows before anything is sized by it (the
  // tokenizer's table is): a mistyped vocab_size of 10^12 ran out of memory instead of naming it.
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"})
    if (const SafetensorsTensorInfo* info = st.find_tensor(name);
        info && (info->shape.size() != 2 || info->shape[0] != c.n_vocab || info->shape[1] != c.n_embd))
      fail("{}: vocab_size {} and hidden_size {} do not match '{}' of shape {}; fix the config or the checkpoint",
           cfile, c.n_vocab, c.n_embd, name, shape_str(info->shape));

  GgufWriter w;
  w.set("general.name", GgufValue::str(fs::absolute(dir).lexically_normal().filename().string().empty()
                                          ? std::string("bitnet")
                                          : fs::absolute(dir).lexically_normal().filename().string()));
  write_config_metadata(w, c);
  add_tokenizer(w, dir, j, c.n_vocab);

  const bool has_head = !tied;
  if (!tied && !st.find_tensor("lm_head.weight"))
    fail("{}: tie_word_embeddings is false but the checkpoint has no 'lm_head.weight'", cfile);
  const size_t total = 2 + (has_head ? 1 : 0) + static_cast<size_t>(c.n_layer) * 11;
  size_t done = 0;
  auto step = [&](const std::string& name) {
    if (opt.progress) opt.progress(++done, total, name);
  };
  auto add_float = [&](const std::string& gname, const std::string& hname, std::vector<int64_t> shape, DType t) {
    step(gname);
    const std::vector<float> v = read_float_tensor(st, hname, shape);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) fail("{}: tensor '{}' has a non-finite value at {}", st.file_of(hname)->name(), hname, i);
    const int64_t cols = shape.back(), rows = static_cast<int64_t>(v.size()) / cols;
    std::vector<uint8_t> bytes;
    try {
      bytes = quantize_rows(t, v.data(), rows, cols);
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", st.file_of(hname)->name(), hname, e.what());
    }
    w.add_tensor(gname, *ggml_from_dtype(t), std::move(shape), std::move(bytes));
  };
  auto add_lin = [&](const std::string& gname, const std::string& hname, int64_t out, int64_t in) {
    step(gname);
    const Quantized q = read_linear(st, hname, out, in, mode);
    w.add_tensor(gname, *ggml_from_dtype(opt.ternary_type), {out, in},
                 pack_linear(q, out, in, opt.ternary_type, hname));
  };

  add_float("token_embd.weight", "model.embed_tokens.weight", {c.n_vocab, c.n_embd}, embd_type);
  add_float("output_norm.weight", "model.norm.weight", {c.n_embd}, DType::F32);
  if (has_head) add_float("output.weight", "lm_head.weight", {c.n_vocab, c.n_embd}, embd_type);
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string g = "blk." + std::to_string(il) + ".", h = "model.layers." + std::to_string(il) + ".";
    add_float(g + "attn_norm.weight", h + "input_layernorm.weight", {d}, DType::F32);
    add_lin(g + "attn_q.weight", h + "self_attn.q_proj.weight", qd, d);
    add_lin(g + "attn_k.weight", h + "self_attn.k_proj.weight", kvd, d);
    add_lin(g + "attn_v.weight", h + "self_attn.v_proj.weight", kvd, d);
    add_float(g + "attn_sub_norm.weight", h + "self_attn.attn_sub_norm.weight", {qd}, DType::F32);
    add_lin(g + "attn_output.weight", h + "self_attn.o_proj.weight", d, qd);
    add_float(g + "ffn_norm.weight", h + "post_attention_layernorm.weight", {d}, DType::F32);
    add_lin(g + "ffn_gate.weight", h + "mlp.gate_proj.weight", c.n_ff, d);
    add_lin(g + "ffn_up.weight", h + "mlp.up_proj.weight", c.n_ff, d);
    add_float(g + "ffn_sub_norm.weight", h + "mlp.ffn_sub_norm.weight", {c.n_ff}, DType::F32);
    add_lin(g + "ffn_down.weight", h + "mlp.down_proj.weight", d, c.n_ff);
  }
  return w;
}

}  // namespace bitnet
