// Any bytes in: encoding never crashes, every id is valid, decode(encode(x)) == x, and the
// streaming decoder's output joins up to decode's. The first input byte picks the tokenizer
// (small byte-level vocabularies with the GPT-2 and LLaMA-3 regexes, a small SentencePiece
// vocabulary, and the real LLaMA-3 table when ../shared is present) and the options.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

using namespace bitnet;

namespace {

TokenizerVocab byte_level(const char* pre) {
  TokenizerVocab v;
  v.model = "gpt2";
  v.pre = pre;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(gpt2_byte_to_unicode(static_cast<uint8_t>(b)));
  const std::string G = gpt2_byte_to_unicode(' ');
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"t", "h"}, {G, "t"}, {"th", "e"}, {G + "t", "h"}, {G + "th", "e"}, {"i", "n"}, {G, G},
      {G + G, G + G}, {"1", "2"}, {"12", "3"}, {"\xC3\xA4", "\xC2\xB8"}};  // a UTF-8 pair too
  for (const auto& [l, r] : merges) {
    v.merges.push_back(l + " " + r);
    v.tokens.push_back(l + r);
  }
  v.tokens.push_back("<|eot|>");
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types.back() = static_cast<int32_t>(TokenType::Control);
  v.eos_id = static_cast<int32_t>(v.tokens.size()) - 1;
  return v;
}

TokenizerVocab sentencepiece() {
  TokenizerVocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.token_types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v.tokens.push_back(buf);
    v.token_types.push_back(static_cast<int32_t>(TokenType::Byte));
  }
  for (const char* t : {"\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "a", "\xE2\x96\x81\xE2\x96\x81", "\xC3\xA9",
                        "ba", "aba"}) {
    v.tokens.push_back(t);
    v.token_types.push_back(1);
  }
  for (size_t i = 0; i < v.tokens.size(); ++i) v.scores.push_back(-static_cast<float>(i % 7));
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  return v;
}

std::vector<std::unique_ptr<Tokenizer>> make() {
  std::vector<std::unique_ptr<Tokenizer>> t;
  t.push_back(std::make_unique<Tokenizer>(Tokenizer::from_vocab(byte_level("default"))));
  t.push_back(std::make_unique<Tokenizer>(Tokenizer::from_vocab(byte_level("llama-bpe"))));
  t.push_back(std::make_unique<Tokenizer>(Tokenizer::from_vocab(sentencepiece())));
  const std::string shared = std::string(BITNET_SHARED_DIR) + "/tokenizers/llama3.tiktoken";
  if (std::filesystem::exists(shared)) t.push_back(std::make_unique<Tokenizer>(Tokenizer::from_tiktoken_file(shared)));
  return t;
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto toks = make();
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const Tokenizer& tok = *toks[sel % toks.size()];
  const bool parse_special = (sel >> 4) & 1;
  const bool add_bos = (sel >> 5) & 1;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto ids = tok.encode(text, {.add_bos = add_bos, .parse_special = parse_special});
  for (int32_t id : ids)
    if (!tok.valid_id(id)) std::abort();
  std::string want = text;
  if (add_bos && tok.bos_id() >= 0) want = tok.token_bytes(tok.bos_id()) + want;
  const std::string back = tok.decode(ids);
  // SentencePiece adds a space after each special token, so only plain text round-trips exactly;
  // a leading BOS keeps the space that encode prepended.
  const bool spm = tok.kind() == Tokenizer::Kind::SentencePiece;
  // "▁" in the text reads as a space, and a broken UTF-8 sequence can swallow the "▁" of a space
  // into its byte-fallback tokens (both as in llama.cpp).
  const bool lossy = spm && (parse_special || add_bos || text.find("\xE2\x96\x81") != std::string::npos ||
                             !valid_utf8(text));
  if (!lossy && back != want) std::abort();
  StreamDecoder d(tok);
  std::string joined;
  for (int32_t id : ids) joined += d.push(id);
  joined += d.flush();
  if (joined != back) std::abort();
  return 0;
}
