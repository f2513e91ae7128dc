#include "training/export_hf.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "io/safetensors.h"
#include "model/convert_hf.h"

namespace bitnet::train {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

// The HF tensors of the trainer's fused matrices: (HF name, offset, first row, rows, cols).
struct HfTensor {
  std::string name;
  int64_t offset, row0, rows, cols;
};

std::vector<HfTensor> hf_layout(const TrainModel& m) {
  const ModelConfig& c = m.cfg;
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff;
  std::vector<HfTensor> t;
  t.push_back({"model.embed_tokens.weight", m.tok_embd, 0, c.n_vocab, d});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const TrainModel::Layer& L = m.layers[static_cast<size_t>(il)];
    const std::string h = "model.layers." + std::to_string(il) + ".";
    t.push_back({h + "input_layernorm.weight", L.attn_norm, 0, 1, d});
    t.push_back({h + "self_attn.q_proj.weight", L.wqkv, 0, qd, d});
    t.push_back({h + "self_attn.k_proj.weight", L.wqkv, qd, kvd, d});
    t.push_back({h + "self_attn.v_proj.weight", L.wqkv, qd + kvd, kvd, d});
    if (c.sub_norms) t.push_back({h + "self_attn.attn_sub_norm.weight", L.attn_sub_norm, 0, 1, qd});
    t.push_back({h + "self_attn.o_proj.weight", L.wo, 0, d, qd});
    t.push_back({h + "post_attention_layernorm.weight", L.ffn_norm, 0, 1, d});
    t.push_back({h + "mlp.gate_proj.weight", L.w_gate_up, 0, ff, d});
    t.push_back({h + "mlp.up_proj.weight", L.w_gate_up, ff, ff, d});
    if (c.sub_norms) t.push_back({h + "mlp.ffn_sub_norm.weight", L.ffn_sub_norm, 0, 1, ff});
    t.push_back({h + "mlp.down_proj.weight", L.w_down, 0, d, ff});
  }
  t.push_back({"model.norm.weight", m.output_norm, 0, 1, d});
  if (!m.tied) t.push_back({"lm_head.weight", m.output, 0, c.n_vocab, d});
  return t;
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  if (!f) fail("{}: cannot write", p.string());
  f << s;
  if (!f) fail("{}: write failed", p.string());
}

}  // namespace

void export_hf(const TrainModel& m, const TokenizerVocab& vocab, const std::string& dir, DType dtype) {
  const ModelConfig& c = m.cfg;
  if (dtype != DType::F32 && dtype != DType::BF16)
    fail("HF export: dtype must be f32 or bf16, not {}", dtype_name(dtype));
  if (c.act != FfnAct::kRelu2 || c.rope != RopeStyle::kNeox || !c.sub_norms)
    fail("HF export: BitNetForCausalLM is relu2, NEOX RoPE and sub-norms");
  if (static_cast<int64_t>(vocab.tokens.size()) != c.n_vocab)
    fail("HF export: the tokenizer has {} tokens, the model {}", vocab.tokens.size(), c.n_vocab);
  fs::create_directories(dir);
  SafetensorsWriter w;
  w.metadata.push_back({"format", "pt"});
  for (const HfTensor& t : hf_layout(m)) {
    const float* p = m.at(t.offset) + t.row0 * t.cols;
    const size_t n = static_cast<size_t>(t.rows * t.cols);
    std::vector<uint8_t> bytes(n * (dtype == DType::F32 ? 4 : 2));
    if (dtype == DType::F32) {
      std::memcpy(bytes.data(), p, n * 4);
    } else {
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(p[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    std::vector<int64_t> shape =
        t.rows == 1 ? std::vector<int64_t>{t.cols} : std::vector<int64_t>{t.rows, t.cols};
    w.add_tensor(t.name, dtype == DType::F32 ? "F32" : "BF16", std::move(shape), std::move(bytes));
  }
  w.write((fs::path(dir) / "model.safetensors").string());
  const std::string dt = dtype == DType::F32 ? "float32" : "bfloat16";
  ojson cfg = {{"architectures", {"BitNetForCausalLM"}},
               {"model_type", "bitnet"},
               {"attention_bias", false},
               {"attention_dropout", 0.0},
               {"hidden_act", "relu2"},
               {"hidden_size", c.n_embd},
               {"intermediate_size", c.n_ff},
               {"num_hidden_layers", c.n_layer},
               {"num_attention_heads", c.n_head},
               {"num_key_value_heads", c.n_head_kv},
               {"head_dim", c.head_dim},
               {"vocab_size", c.n_vocab},
               {"max_position_embeddings", c.n_ctx_train},
               {"rms_norm_eps", c.rms_eps},
               {"rope_theta", c.rope_theta},
               {"rope_parameters", {{"rope_theta", c.rope_theta}, {"rope_type", "default"}}},
               {"initializer_range", 0.02},
               {"tie_word_embeddings", m.tied},
               {"torch_dtype", dt},
               {"dtype", dt},
               {"use_cache", true}};
  // transformers' BitNet quantizer in online mode quantizes these master weights on the fly with
  // the same recipe (absmean ternary weights per tensor, per-token absmax int8 activations), so
  // BitNetForCausalLM computes what the trainer computed. A --float model has no quantization.
  if (m.quantize)
    cfg["quantization_config"] = {
        {"quant_method", "bitnet"}, {"linear_class", "autobitlinear"}, {"quantization_mode", "online"}};
  if (vocab.bos_id >= 0) cfg["bos_token_id"] = vocab.bos_id;
  if (vocab.eos_id >= 0) cfg["eos_token_id"] = vocab.eos_id;
  write_text(fs::path(dir) / "config.json", cfg.dump(2) + "\n");
  write_text(fs::path(dir) / "tokenizer.json", hf_tokenizer_json(vocab));
  ojson tc = {{"tokenizer_class", "PreTrainedTokenizerFast"},
              {"add_bos_token", vocab.add_bos},
              {"model_max_length", c.n_ctx_train}};
  if (vocab.bos_id >= 0) tc["bos_token"] = vocab.tokens[static_cast<size_t>(vocab.bos_id)];
  if (vocab.eos_id >= 0) tc["eos_token"] = vocab.tokens[static_cast<size_t>(vocab.eos_id)];
  write_text(fs::path(dir) / "tokenizer_config.json", tc.dump(2) + "\n");
}

TrainModel load_hf_model(const std::string& dir, bool quantize) {
  const ModelConfig c = hf_config(dir);
  TrainModel m = make_train_model(c, hf_tied(dir), quantize, 0);
  const SafetensorsModel st = SafetensorsModel::open(dir);
  for (const HfTensor& t : hf_layout(m)) {
    std::vector<int64_t> shape =
        t.rows == 1 ? std::vector<int64_t>{t.cols} : std::vector<int64_t>{t.rows, t.cols};
    const std::vector<float> v = read_float_tensor(st, t.name, shape);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) fail("{}: tensor '{}' has a non-finite value at {}", dir, t.name, i);
    std::copy(v.begin(), v.end(), m.at(t.offset) + t.row0 * t.cols);
  }
  return m;
}

}  // namespace bitnet::train
