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

}  // namespace bitnet
