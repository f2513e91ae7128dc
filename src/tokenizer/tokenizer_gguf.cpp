// Tokenizer from a GGUF file's tokenizer.ggml.* keys (as llama.cpp's convert scripts write them).
#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace bitnet {

TokenizerVocab tokenizer_vocab_from_gguf(const GgufFile& f) {
  TokenizerVocab v;
  v.model = f.get_str("tokenizer.ggml.model");
  if (v.model != "gpt2" && v.model != "llama")
    fail("{}: tokenizer.ggml.model '{}' is not supported (gpt2, llama)", f.name(), v.model);
  v.pre = f.get_str("tokenizer.ggml.pre", v.model == "gpt2" ? "default" : "");
  v.tokens = f.get_str_arr("tokenizer.ggml.tokens");
  const size_t n = v.tokens.size();
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_str_arr("tokenizer.ggml.merges");
  if (f.has("tokenizer.ggml.scores")) {
    v.scores = f.get_f32_arr("tokenizer.ggml.scores");
    if (v.scores.size() != n) fail("{}: tokenizer.ggml.scores has {} values for {} tokens", f.name(), v.scores.size(), n);
  }
  if (f.has("tokenizer.ggml.token_type")) {
    const auto types = f.get_int_arr("tokenizer.ggml.token_type");
    if (types.size() != n) fail("{}: tokenizer.ggml.token_type has {} values for {} tokens", f.name(), types.size(), n);
    v.token_types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (types[i] < 0 || types[i] > 6) fail("{}: tokenizer.ggml.token_type[{}] = {} is not a token type", f.name(), i, types[i]);
      v.token_types.push_back(static_cast<int32_t>(types[i]));
    }
  }
  auto id = [&](const char* key) -> int32_t {
    if (!f.has(key)) return -1;
    const int64_t x = f.get_i64(key);
    if (x < 0 || static_cast<uint64_t>(x) >= n) fail("{}: {} = {} is not a token id (vocabulary has {} tokens)", f.name(), key, x, n);
    return static_cast<int32_t>(x);
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  v.eot_id = id("tokenizer.ggml.eot_token_id");
  v.unk_id = id("tokenizer.ggml.unknown_token_id");
  // llama.cpp's defaults when the key is absent: SentencePiece and LLaMA-3 add BOS.
  const bool llama3 = v.pre == "llama-bpe" || v.pre == "llama3" || v.pre == "llama-v3";
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", v.model == "llama" || llama3);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", v.model == "llama");
  return v;
}

Tokenizer Tokenizer::from_gguf_file(const std::string& path) {
  const GgufFile f = GgufFile::open(path);
  const TokenizerVocab v = tokenizer_vocab_from_gguf(f);
  try {
    return from_vocab(v);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

void write_tokenizer_metadata(GgufWriter& w, const TokenizerVocab& v) {
  if (v.model != "gpt2" && v.model != "llama") fail("tokenizer model '{}' cannot be written (gpt2, llama)", v.model);
  const size_t n = v.tokens.size();
  if (!v.token_types.empty() && v.token_types.size() != n) fail("tokenizer: {} token types for {} tokens", v.token_types.size(), n);
  if (!v.scores.empty() && v.scores.size() != n) fail("tokenizer: {} scores for {} tokens", v.scores.size(), n);
  w.set("tokenizer.ggml.model", GgufValue::str(v.model));
  if (!v.pre.empty()) w.set("tokenizer.ggml.pre", GgufValue::str(v.pre));
  w.set("tokenizer.ggml.tokens", GgufValue::array(v.tokens));
  if (!v.token_types.empty())
    w.set("tokenizer.ggml.token_type",
          GgufValue::array(GgufType::I32, std::vector<int64_t>(v.token_types.begin(), v.token_types.end())));
  if (!v.scores.empty())
    w.set("tokenizer.ggml.scores", GgufValue::array(GgufType::F32, std::vector<double>(v.scores.begin(), v.scores.end())));
  if (v.model == "gpt2") w.set("tokenizer.ggml.merges", GgufValue::array(v.merges));
  auto id = [&](const char* key, int32_t x) {
    if (x >= 0) w.set(key, GgufValue::u32(static_cast<uint32_t>(x)));
  };
  id("tokenizer.ggml.bos_token_id", v.bos_id);
  id("tokenizer.ggml.eos_token_id", v.eos_id);
  id("tokenizer.ggml.eot_token_id", v.eot_id);
  id("tokenizer.ggml.unknown_token_id", v.unk_id);
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(v.add_bos && v.bos_id >= 0));
  if (v.model == "llama") w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(v.add_space_prefix));
}

TokenizerVocab byte_level_vocab(int64_t n_vocab) {
  if (n_vocab < 258) fail("a byte-level vocabulary needs at least 258 ids (256 bytes, BOS, EOS), not {}", n_vocab);
  TokenizerVocab v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(gpt2_byte_to_unicode(static_cast<uint8_t>(b)));
  v.token_types.assign(256, static_cast<int32_t>(TokenType::Normal));
  v.tokens.push_back("<|begin_of_text|>");
  v.tokens.push_back("<|end_of_text|>");
  while (static_cast<int64_t>(v.tokens.size()) < n_vocab)
    v.tokens.push_back("<|reserved_" + std::to_string(v.tokens.size()) + "|>");
  v.token_types.resize(v.tokens.size(), static_cast<int32_t>(TokenType::Control));
  v.bos_id = 256;
  v.eos_id = 257;
  v.add_bos = true;
  return v;
}

}  // namespace bitnet
