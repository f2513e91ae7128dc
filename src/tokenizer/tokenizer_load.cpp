// Tokenizer loaders: tiktoken rank files and HF tokenizer.json.
#include <cctype>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/read_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_regex.h"

namespace bitnet {
namespace {

bool base64_decode(std::string_view in, std::string& out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = val(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return true;
}

std::vector<std::string> llama3_special_names() {
  std::vector<std::string> v = {"<|begin_of_text|>",
                                "<|end_of_text|>",
                                "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>",
                                "<|reserved_special_token_2|>",
                                "<|reserved_special_token_3|>",
                                "<|start_header_id|>",
                                "<|end_header_id|>",
                                "<|reserved_special_token_4|>",
                                "<|eot_id|>"};
  for (int i = 5; i <= 250; ++i) v.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  return v;
}

}  // namespace

TokenizerVocab hf_json_spm_vocab(const nlohmann::json& j, const std::string& name);

Tokenizer Tokenizer::from_tiktoken_file(const std::string& path) { return from_tiktoken(read_file(path, "tokenizer"), path); }

Tokenizer Tokenizer::from_tiktoken(std::string_view text, const std::string& name) {
  std::vector<std::pair<std::string, int64_t>> entries;
  int64_t max_rank = -1;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) fail("{}:{}: expected 'base64-token rank'", name, line_no);
    std::string bytes;
    if (!base64_decode(line.substr(0, sp), bytes) || bytes.empty())
      fail("{}:{}: invalid base64 token '{}'", name, line_no, line.substr(0, sp));
    int64_t rank = 0;
    const std::string_view r = line.substr(sp + 1);
    if (r.empty() || r.size() > 9) fail("{}:{}: invalid rank '{}'", name, line_no, r);
    for (char c : r) {
      if (c < '0' || c > '9') fail("{}:{}: invalid rank '{}'", name, line_no, r);
      rank = rank * 10 + (c - '0');
    }
    max_rank = std::max(max_rank, rank);
    entries.emplace_back(std::move(bytes), rank);
  }
  if (entries.empty()) fail("{}: no tokens in the tiktoken file", name);
  if (max_rank >= (int64_t{1} << 24)) fail("{}: rank {} is too large", name, max_rank);

  Tokenizer t;
  t.kind_ = Kind::BytePairBpe;
  const auto n = static_cast<int32_t>(max_rank + 1);
  const auto specials = llama3_special_names();
  const size_t total = static_cast<size_t>(n) + specials.size();
  t.bytes_.assign(total, std::string());
  t.types_.assign(total, TokenType::Unused);
  t.lookup_.reserve(entries.size());
  for (auto& [bytes, rank] : entries) {
    const auto id = static_cast<size_t>(rank);
    if (t.types_[id] != TokenType::Unused) fail("{}: rank {} appears twice", name, rank);
    if (!t.lookup_.emplace(bytes, static_cast<int32_t>(rank)).second)
      fail("{}: token of rank {} appears twice", name, rank);
    t.types_[id] = TokenType::Normal;
    t.bytes_[id] = std::move(bytes);
  }
  for (size_t i = 0; i < specials.size(); ++i) {
    t.bytes_[static_cast<size_t>(n) + i] = specials[i];
    t.types_[static_cast<size_t>(n) + i] = TokenType::Control;
  }
  // tiktoken merges the adjacent pair whose concatenation has the lowest rank: bpe_piece looks the
  // pair's bytes up instead of a merge table.
  t.rank_by_bytes_ = true;
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const auto it = t.lookup_.find(std::string_view(&c, 1));
    t.byte_ids_[b] = it == t.lookup_.end() ? -1 : it->second;
  }
  t.regex_ = std::make_shared<const Regex>(kLlama3Pattern);
  t.ignore_merges_ = true;
  t.bos_id_ = n;      // <|begin_of_text|>
  t.eos_id_ = n + 1;  // <|end_of_text|>
  t.eot_id_ = n + 9;  // <|eot_id|>
  t.add_bos_ = true;
  try {
    t.finish();
  } catch (const Error& e) {
    fail("{}: {}", name, e.what());
  }
  return t;
}

Tokenizer Tokenizer::from_hf_json_file(const std::string& path) { return from_hf_json(read_file(path, "tokenizer"), path); }

Tokenizer Tokenizer::from_hf_json(std::string_view text, const std::string& name) {
  const HfTokenizerJson h = parse_hf_tokenizer_json(text, name);
  if (h.vocab.model == "llama") {  // SentencePiece-style BPE with byte fallback
    try {
      return from_vocab(h.vocab);
    } catch (const Error& e) {
      fail("{}: {}", name, e.what());
    }
  }
  return build_bpe(h.vocab, h.pattern, h.ignore_merges, h.add_prefix_space, name);
}

HfTokenizerJson parse_hf_tokenizer_json(std::string_view text, const std::string& name) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", name, e.what());
  }
  try {
    if (!j.is_object() || !j.contains("model")) fail("{}: not a tokenizer.json (no \"model\")", name);
    const json& m = j["model"];
    const std::string type = m.value("type", std::string("BPE"));
    if (type != "BPE") fail("{}: model.type '{}' is not supported (only BPE)", name, type);
    if (m.value("byte_fallback", false)) {
      HfTokenizerJson h;
      h.vocab = hf_json_spm_vocab(j, name);  // model "llama": no pre-tokenizer pattern
      return h;
    }
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      fail("{}: normalizers are not supported with byte-level BPE", name);

    // Pre-tokenizer: [Split(Regex, Isolated)] then ByteLevel.
    std::string pattern;
    bool byte_level = false, add_prefix_space = false;
    std::vector<json> pres;
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      const json& p = j["pre_tokenizer"];
      if (p.value("type", "") == "Sequence")
        for (const auto& x : p.at("pretokenizers")) pres.push_back(x);
      else
        pres.push_back(p);
    }
    for (const auto& p : pres) {
      const std::string t = p.value("type", "");
      if (t == "Split") {
        if (!pattern.empty()) fail("{}: more than one Split pre-tokenizer is not supported", name);
        if (!p.contains("pattern") || !p["pattern"].contains("Regex"))
          fail("{}: Split pre-tokenizer without a Regex pattern is not supported", name);
        if (p.value("behavior", "") != "Isolated" || p.value("invert", false))
          fail("{}: Split pre-tokenizer must have behavior Isolated and invert false", name);
        pattern = p["pattern"]["Regex"].get<std::string>();
      } else if (t == "ByteLevel") {
        byte_level = true;
        add_prefix_space = p.value("add_prefix_space", false);
        if (p.value("use_regex", true)) {
          if (!pattern.empty()) fail("{}: Split followed by ByteLevel(use_regex) is not supported", name);
          pattern = kGpt2Pattern;
        }
      } else {
        fail("{}: pre-tokenizer '{}' is not supported (Split, ByteLevel)", name, t);
      }
    }
    if (!byte_level) fail("{}: only byte-level BPE (a ByteLevel pre-tokenizer) is supported", name);

    TokenizerVocab v;
    v.model = "gpt2";
    int64_t n = 0;
    for (const auto& [tok, id] : m.at("vocab").items()) n = std::max<int64_t>(n, id.get<int64_t>() + 1);
    std::vector<std::pair<int64_t, std::string>> added;
    std::vector<bool> added_special;
    if (j.contains("added_tokens"))
      for (const auto& a : j["added_tokens"]) {
        added.emplace_back(a.at("id").get<int64_t>(), a.at("content").get<std::string>());
        added_special.push_back(a.value("special", false));
        n = std::max<int64_t>(n, added.back().first + 1);
      }
    if (n <= 0 || n >= (int64_t{1} << 24)) fail("{}: vocabulary size {} is out of range", name, n);
    v.tokens.assign(static_cast<size_t>(n), std::string());
    v.token_types.assign(static_cast<size_t>(n), static_cast<int32_t>(TokenType::Unused));
    for (const auto& [tok, idj] : m.at("vocab").items()) {
      const int64_t id = idj.get<int64_t>();
      if (id < 0) fail("{}: negative id for token '{}'", name, tok);
      v.tokens[static_cast<size_t>(id)] = tok;
      v.token_types[static_cast<size_t>(id)] = static_cast<int32_t>(TokenType::Normal);
    }
    for (size_t i = 0; i < added.size(); ++i) {
      const auto& [id, content] = added[i];
      if (id < 0) fail("{}: negative id for added token '{}'", name, content);
      v.tokens[static_cast<size_t>(id)] = content;
      v.token_types[static_cast<size_t>(id)] =
          static_cast<int32_t>(added_special[i] ? TokenType::Control : TokenType::UserDefined);
    }
    if (m.contains("merges"))
      for (const auto& mg : m["merges"]) {
        if (mg.is_string())
          v.merges.push_back(mg.get<std::string>());
        else if (mg.is_array() && mg.size() == 2)
          v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
        else
          fail("{}: merge {} is neither 'a b' nor [a, b]", name, v.merges.size());
      }
    auto find_added = [&](std::initializer_list<const char*> names) -> int32_t {
      for (const char* s : names)
        for (const auto& [id, content] : added)
          if (content == s) return static_cast<int32_t>(id);
      return -1;
    };
    // BOS from a TemplateProcessing post-processor whose single template starts with a special.
    std::vector<json> posts;
    if (j.contains("post_processor") && !j["post_processor"].is_null()) {
      const json& p = j["post_processor"];
      if (p.value("type", "") == "Sequence")
        for (const auto& x : p.at("processors")) posts.push_back(x);
      else
        posts.push_back(p);
    }
    for (const auto& p : posts) {
      if (p.value("type", "") != "TemplateProcessing" || !p.contains("single")) continue;
      const json& single = p["single"];
      if (!single.empty() && single[0].contains("SpecialToken")) {
        const std::string s = single[0]["SpecialToken"].at("id").get<std::string>();
        int32_t id = -1;
        for (const auto& [aid, content] : added)
          if (content == s) id = static_cast<int32_t>(aid);
        if (id < 0) fail("{}: post-processor names unknown special token '{}'", name, s);
        v.bos_id = id;
        v.add_bos = true;
      }
    }
    if (v.bos_id < 0) v.bos_id = find_added({"<|begin_of_text|>", "<s>"});
    v.eos_id = find_added({"<|end_of_text|>", "</s>", "<|endoftext|>"});
    v.eot_id = find_added({"<|eot_id|>", "<|im_end|>", "<|end|>"});
    HfTokenizerJson h;
    h.vocab = std::move(v);
    h.pattern = std::move(pattern);
    h.ignore_merges = m.value("ignore_merges", false);
    h.add_prefix_space = add_prefix_space;
    return h;
  } catch (const json::exception& e) {
    fail("{}: unexpected tokenizer.json layout: {}", name, e.what());
  }
}

// SentencePiece-style BPE in tokenizer.json (LLaMA-1/2, Mistral): vocabulary with "▁" and
// <0xNN> byte tokens, byte_fallback, merges; a space prefix from a Prepend("▁") normalizer or a
// Metaspace pre-tokenizer. Merge ranks become SentencePiece scores (score = -rank of the first merge
// that makes the token), so llama.cpp's score-ordered merging gives HF's rank-ordered result.
TokenizerVocab hf_json_spm_vocab(const nlohmann::json& j, const std::string& name) {
  using nlohmann::json;
  const json& m = j["model"];
  bool prefix = false;
  auto check_normalizer = [&](const json& n) {
    const std::string t = n.value("type", "");
    if (t == "Prepend" && n.value("prepend", "") == "\xE2\x96\x81") {
      prefix = true;
    } else if (t == "Replace" && n.contains("pattern") && n["pattern"].value("String", "") == " " &&
               n.value("content", "") == "\xE2\x96\x81") {
      // spaces -> "▁": what build_spm's encoder does anyway
    } else {
      fail("{}: normalizer '{}' is not supported with SentencePiece-style BPE", name, t);
    }
  };
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const json& n = j["normalizer"];
    if (n.value("type", "") == "Sequence")
      for (const auto& x : n.at("normalizers")) check_normalizer(x);
    else
      check_normalizer(n);
  }
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    const json& p = j["pre_tokenizer"];
    if (p.value("type", "") != "Metaspace" || p.value("split", true))
      fail("{}: pre-tokenizer '{}' is not supported with SentencePiece-style BPE (Metaspace, split false)", name,
           p.value("type", ""));
    prefix = p.value("prepend_scheme", std::string("always")) != "never";
  }
  TokenizerVocab v;
  v.model = "llama";
  v.add_space_prefix = prefix;
  int64_t n = 0;
  for (const auto& [tok, id] : m.at("vocab").items()) n = std::max<int64_t>(n, id.get<int64_t>() + 1);
  if (j.contains("added_tokens"))
    for (const auto& a : j["added_tokens"]) n = std::max<int64_t>(n, a.at("id").get<int64_t>() + 1);
  if (n <= 0 || n >= (int64_t{1} << 24)) fail("{}: vocabulary size {} is out of range", name, n);
  v.tokens.assign(static_cast<size_t>(n), std::string());
  v.token_types.assign(static_cast<size_t>(n), static_cast<int32_t>(TokenType::Unused));
  v.scores.assign(static_cast<size_t>(n), -1e9f);
  std::unordered_map<std::string, int32_t> ids;
  for (const auto& [tok, idj] : m.at("vocab").items()) {
    const int64_t id = idj.get<int64_t>();
    if (id < 0) fail("{}: negative id for token '{}'", name, tok);
    v.tokens[static_cast<size_t>(id)] = tok;
    const bool byte = tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
                      std::isxdigit(static_cast<unsigned char>(tok[3])) && std::isxdigit(static_cast<unsigned char>(tok[4]));
    v.token_types[static_cast<size_t>(id)] = static_cast<int32_t>(byte ? TokenType::Byte : TokenType::Normal);
    ids[tok] = static_cast<int32_t>(id);
  }
  const std::string unk = m.contains("unk_token") && m["unk_token"].is_string() ? m["unk_token"].get<std::string>() : "";
  if (!unk.empty()) {
    const auto it = ids.find(unk);
    if (it != ids.end()) {
      v.unk_id = it->second;
      v.token_types[static_cast<size_t>(it->second)] = static_cast<int32_t>(TokenType::Unknown);
    }
  }
  if (j.contains("added_tokens"))
    for (const auto& a : j["added_tokens"]) {
      const auto id = static_cast<size_t>(a.at("id").get<int64_t>());
      v.tokens[id] = a.at("content").get<std::string>();
      if (static_cast<int32_t>(id) != v.unk_id)
        v.token_types[id] = static_cast<int32_t>(a.value("special", false) ? TokenType::Control : TokenType::UserDefined);
      if (v.tokens[id] == "<s>") v.bos_id = static_cast<int32_t>(id);
      if (v.tokens[id] == "</s>") v.eos_id = static_cast<int32_t>(id);
    }
  size_t rank = 0;
  if (m.contains("merges"))
    for (const auto& mg : m["merges"]) {
      std::string merged;
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) fail("{}: merge {} ('{}') is not 'left right'", name, rank, s);
        merged = s.substr(0, sp) + s.substr(sp + 1);
      } else if (mg.is_array() && mg.size() == 2) {
        merged = mg[0].get<std::string>() + mg[1].get<std::string>();
      } else {
        fail("{}: merge {} is neither 'a b' nor [a, b]", name, rank);
      }
      const auto it = ids.find(merged);
      if (it == ids.end()) fail("{}: merge {} makes '{}', which is not in the vocabulary", name, rank, merged);
      float& sc = v.scores[static_cast<size_t>(it->second)];
      sc = std::max(sc, -static_cast<float>(rank));
      ++rank;
    }
  // BOS from the post-processor, as for byte-level tokenizers.
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    const json& p = j["post_processor"];
    if (p.value("type", "") == "TemplateProcessing" && p.contains("single") && !p["single"].empty() &&
        p["single"][0].contains("SpecialToken")) {
      const auto it = ids.find(p["single"][0]["SpecialToken"].at("id").get<std::string>());
      if (it != ids.end()) {
        v.bos_id = it->second;
        v.add_bos = true;
      }
    }
  }
  return v;
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  const std::string text = read_file(path, "tokenizer");
  // A model file where a tokenizer file is expected (tiktoken's parser would quote its bytes).
  if (text.compare(0, 4, "GGUF") == 0)
    fail("{}: a GGUF model file, not a tokenizer.json or tiktoken file (pass the model with -m)", path);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') return from_hf_json(text, path);
  return from_tiktoken(text, path);
}

}  // namespace bitnet
