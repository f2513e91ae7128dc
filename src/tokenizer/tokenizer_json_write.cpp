// A byte-level BPE vocabulary written as a Hugging Face tokenizer.json (the inverse of
// parse_hf_tokenizer_json), so that a model the trainer exports loads in transformers and in
// `bitnet convert` with the same tokenization.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace bitnet {

std::string hf_tokenizer_json(const TokenizerVocab& v) {
  using ojson = nlohmann::ordered_json;
  if (v.model != "gpt2")
    fail("tokenizer.json: only byte-level BPE (gpt2) vocabularies are written, not '{}'", v.model);
  const bool llama3 = v.pre == "llama-bpe" || v.pre == "llama3" || v.pre == "llama-v3";
  const bool gpt2 = v.pre.empty() || v.pre == "default" || v.pre == "gpt2" || v.pre == "gpt-2";
  if (!llama3 && !gpt2)
    fail("tokenizer.json: pre-tokenizer '{}' cannot be written (llama-bpe, gpt-2)", v.pre);
  auto type_of = [&](size_t i) {
    return v.token_types.empty() ? TokenType::Normal : static_cast<TokenType>(v.token_types[i]);
  };
  ojson added = ojson::array(), vocab = ojson::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const TokenType t = type_of(i);
    if (t == TokenType::Unused) continue;  // placeholder ids past the tokenizer: no token
    vocab[v.tokens[i]] = i;
    if (t == TokenType::Control || t == TokenType::UserDefined)
      added.push_back({{"id", i},
                       {"content", v.tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", t == TokenType::Control}});
  }
  ojson merges = ojson::array();
  for (const std::string& m : v.merges) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos) fail("tokenizer.json: merge '{}' is not two tokens", m);
    merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
  }
  ojson byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", !llama3}};
  ojson pre = byte_level;
  if (llama3)
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "Split"},
              {"pattern", {{"Regex", kLlama3Pattern}}},
              {"behavior", "Isolated"},
              {"invert", false}},
             byte_level}}};
  ojson post = nullptr;
  if (v.add_bos && v.bos_id >= 0) {
    const std::string bos = v.tokens[static_cast<size_t>(v.bos_id)];
    post = {
        {"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {v.bos_id}}, {"tokens", {bos}}}}}}};
  }
  ojson j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre},
      {"post_processor", post},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", llama3},
        {"vocab", vocab},
        {"merges", merges}}}};
  return j.dump(1);
}

}  // namespace bitnet
