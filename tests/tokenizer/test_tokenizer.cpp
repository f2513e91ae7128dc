// Tokenizers against golden ids from the reference implementations:
//  * tests/data/tokenizer/goldens_llama3.jsonl: tiktoken 0.14 (and HF tokenizers 0.23, which
//    agreed on every sample) on corpus.jsonl with the LLaMA-3 rank table from ../shared;
//  * tests/data/tokenizer/goldens_spm.jsonl: llama-tokenizer-js 1.2.2 (LLaMA-1/2 SentencePiece)
//    with its vocabulary in llama2_vocab.jsonl.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>
#include <unistd.h>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_regex.h"

namespace bitnet {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

const std::string kData = std::string(BITNET_SOURCE_DIR) + "/tests/data/tokenizer/";
const std::string kTiktoken = std::string(BITNET_SHARED_DIR) + "/tokenizers/llama3.tiktoken";

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  std::vector<json> v;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) v.push_back(json::parse(line));
  return v;
}

struct Golden {
  std::string text;
  Ids plain, special;
};

const std::vector<Golden>& llama3_goldens() {
  static const std::vector<Golden> g = [] {
    std::vector<Golden> v;
    for (const auto& j : read_jsonl(kData + "goldens_llama3.jsonl"))
      v.push_back({j["text"].get<std::string>(), j["plain"].get<Ids>(), j["special"].get<Ids>()});
    return v;
  }();
  return g;
}

// The LLaMA-3 tokenizer from ../shared, loaded once per test process; null when absent.
const Tokenizer* llama3() {
  static const std::unique_ptr<Tokenizer> t = []() -> std::unique_ptr<Tokenizer> {
    if (!std::filesystem::exists(kTiktoken)) return nullptr;
    return std::make_unique<Tokenizer>(Tokenizer::from_tiktoken_file(kTiktoken));
  }();
  return t.get();
}

#define REQUIRE_LLAMA3()                                                                 \
  if (!llama3()) GTEST_SKIP() << kTiktoken << " is absent (it lives in ../shared)"; \
  const Tokenizer& tok = *llama3()

std::string show(const std::string& s) { return json(s).dump(); }

// Compares every golden sample; reports the first few mismatches.
void expect_goldens(const Tokenizer& tok, bool parse_special) {
  int bad = 0;
  for (const auto& g : llama3_goldens()) {
    const Ids got = tok.encode(g.text, {.add_bos = false, .parse_special = parse_special});
    const Ids& want = parse_special ? g.special : g.plain;
    if (got != want && ++bad <= 5)
      ADD_FAILURE() << "text " << show(g.text) << "\n got  " << json(got).dump() << "\n want " << json(want).dump();
  }
  EXPECT_EQ(bad, 0) << "of " << llama3_goldens().size() << " samples";
}

TEST(Tokenizer, CorpusIsAdversarialEnough) {
  const auto& g = llama3_goldens();
  EXPECT_GE(g.size(), 150u);
  int nonascii = 0;
  for (const auto& s : g) nonascii += std::any_of(s.text.begin(), s.text.end(), [](char c) { return c & 0x80; });
  EXPECT_GE(nonascii, 60);
}

TEST(Tokenizer, Gpt2ByteAlphabetIsABijection) {
  std::map<std::string, int> seen;
  for (int b = 0; b < 256; ++b) {
    const std::string& u = gpt2_byte_to_unicode(static_cast<uint8_t>(b));
    EXPECT_TRUE(seen.emplace(u, b).second);
    std::string back;
    ASSERT_TRUE(gpt2_unicode_to_bytes(u, back));
    ASSERT_EQ(back, std::string(1, static_cast<char>(b)));
  }
  EXPECT_EQ(gpt2_byte_to_unicode(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(gpt2_byte_to_unicode('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(gpt2_byte_to_unicode('a'), "a");
  std::string out;
  EXPECT_FALSE(gpt2_unicode_to_bytes("\xE2\x96\x81", out));  // ▁ is not in the alphabet
}

TEST(Tokenizer, WhitespaceClassesFollowUnicodeWhiteSpace) {
  EXPECT_EQ(translate_pattern(R"(\s+)"), R"([\t\n\x{0B}\f\r\x{85}\p{Z}]+)");
  EXPECT_EQ(translate_pattern(R"([^\s\r])"), R"([^\t\n\x{0B}\f\r\x{85}\p{Z}\r])");
  EXPECT_EQ(translate_pattern(R"(\s+(?!\S))"),
            R"([\t\n\x{0B}\f\r\x{85}\p{Z}]+(?![^\t\n\x{0B}\f\r\x{85}\p{Z}]))");
  EXPECT_EQ(translate_pattern(R"(\\s[]\s])"), R"(\\s[]\t\n\x{0B}\f\r\x{85}\p{Z}])");
  // \p{L} / \p{N} gain the letters and numbers PCRE2's Unicode 14 tables lack.
  const std::string l = translate_pattern(R"(\p{L}+)"), n = translate_pattern(R"([^\p{N}])");
  EXPECT_EQ(l.substr(0, 6), R"([\p{L})");
  EXPECT_NE(l.find(R"(\x{31350}-\x{323AF}]+)"), std::string::npos);
  EXPECT_EQ(n.substr(0, 7), R"([^\p{N})");
  EXPECT_NE(n.find(R"(\x{1E5F1}-\x{1E5FA}])"), std::string::npos);
  Regex re(kLlama3Pattern);
  std::vector<std::string_view> pieces;
  re.split("a\xC2\x85  b\xFF c", pieces);  // NEL is whitespace; invalid bytes become own pieces
  std::vector<std::string> got(pieces.begin(), pieces.end());
  EXPECT_EQ(got, (std::vector<std::string>{"a", "\xC2\x85 ", " b", "\xFF", " c"}));
  EXPECT_THROW(Regex("(unclosed"), Error);
}

TEST(Tokenizer, Llama3MatchesTiktokenPlain) {
  REQUIRE_LLAMA3();
  EXPECT_EQ(tok.n_vocab(), 128256);
  expect_goldens(tok, false);
}

TEST(Tokenizer, Llama3MatchesTiktokenWithSpecials) {
  REQUIRE_LLAMA3();
  expect_goldens(tok, true);
}

TEST(Tokenizer, Llama3RoundTripAndStreaming) {
  REQUIRE_LLAMA3();
  for (const auto& g : llama3_goldens()) {
    for (bool special : {false, true}) {
      const Ids ids = tok.encode(g.text, {.add_bos = false, .parse_special = special});
      ASSERT_EQ(tok.decode(ids), g.text) << show(g.text);
      StreamDecoder d(tok);
      std::string joined;
      for (int32_t id : ids) {
        const std::string chunk = d.push(id);
        // Each chunk ends on a character boundary (the input is valid UTF-8).
        if (!chunk.empty()) {
          const auto last = static_cast<uint8_t>(chunk.back());
          EXPECT_TRUE(last < 0x80 || (last & 0xC0) == 0x80) << show(g.text);
        }
        joined += chunk;
      }
      joined += d.flush();
      ASSERT_EQ(joined, g.text);
    }
  }
}

TEST(Tokenizer, Llama3SpecialsBosAndSkipping) {
  REQUIRE_LLAMA3();
  EXPECT_EQ(tok.bos_id(), 128000);
  EXPECT_EQ(tok.eos_id(), 128001);
  EXPECT_EQ(tok.eot_id(), 128009);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.special_id("<|eot_id|>"), 128009);
  EXPECT_EQ(tok.special_id("<|reserved_special_token_250|>"), 128255);
  EXPECT_EQ(tok.stop_ids(), (Ids{128001, 128009}));
  const Ids ids = tok.encode("Hi<|eot_id|>", {.add_bos = true, .parse_special = true});
  EXPECT_EQ(ids, (Ids{128000, 13347, 128009}));
  EXPECT_EQ(tok.decode(ids), "<|begin_of_text|>Hi<|eot_id|>");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "Hi");
  EXPECT_THROW(tok.decode(Ids{128256}), Error);
  EXPECT_THROW(tok.decode(Ids{-1}), Error);
  // The chat format of BitNet b1.58 2B4T.
  const Ids chat = tok.encode("<|begin_of_text|>System: x<|eot_id|>User: y<|eot_id|>Assistant:",
                              {.add_bos = false, .parse_special = true});
  EXPECT_EQ(chat.front(), 128000);
  EXPECT_EQ(std::count(chat.begin(), chat.end(), 128009), 2);
}

// 1 MB: the corpus joined by <|eot_id|>, which cuts the text into independent segments, so the
// expected ids are the goldens joined by 128009. (Speed: `bitnet tokenize --time`.)
TEST(Tokenizer, Llama3LargeInput) {
  REQUIRE_LLAMA3();
  std::string big;
  Ids want;
  while (big.size() < (1u << 20))
    for (const auto& g : llama3_goldens()) {
      big += g.text;
      big += "<|eot_id|>";
      want.insert(want.end(), g.special.begin(), g.special.end());
      want.push_back(128009);
    }
  const Ids got = tok.encode(big, {.add_bos = false, .parse_special = true});
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  EXPECT_EQ(tok.decode(got), big);
}

// GPT-2-alphabet vocabulary and merges as GGUF and tokenizer.json store them, derived from the
// tiktoken table the way HF's converter does (every split of a token into two tokens, ordered by
// the rank of the whole, then of the parts).
struct StoredVocab {
  std::vector<std::string> tokens;  // 128000 normal tokens in the GPT-2 alphabet
  std::vector<std::string> merges;
};

const StoredVocab& stored_vocab(const Tokenizer& tok) {
  static const StoredVocab sv = [&] {
    StoredVocab v;
    std::unordered_map<std::string, int32_t> rank;
    for (int32_t id = 0; id < 128000; ++id) {
      const std::string& b = tok.token_bytes(id);
      rank.emplace(b, id);
      std::string u;
      for (char c : b) u += gpt2_byte_to_unicode(static_cast<uint8_t>(c));
      v.tokens.push_back(u);
    }
    std::vector<std::array<int32_t, 3>> m;  // whole, left, right
    for (int32_t id = 0; id < 128000; ++id) {
      const std::string& b = tok.token_bytes(id);
      for (size_t k = 1; k < b.size(); ++k) {
        const auto l = rank.find(b.substr(0, k)), r = rank.find(b.substr(k));
        if (l != rank.end() && r != rank.end()) m.push_back({id, l->second, r->second});
      }
    }
    std::sort(m.begin(), m.end());
    for (const auto& x : m)
      v.merges.push_back(v.tokens[static_cast<size_t>(x[1])] + " " + v.tokens[static_cast<size_t>(x[2])]);
    return v;
  }();
  return sv;
}

// The GGUF path: the vocabulary written with GgufWriter as llama.cpp's converter stores it,
// read back with GgufFile and tokenizer_vocab_from_gguf.
TEST(Tokenizer, Llama3FromGgufMatchesTiktoken) {
  REQUIRE_LLAMA3();
  const StoredVocab& sv = stored_vocab(tok);
  std::vector<std::string> tokens = sv.tokens;
  std::vector<int64_t> types(128000, static_cast<int64_t>(TokenType::Normal));
  for (int32_t id = 128000; id < 128256; ++id) {
    tokens.push_back(tok.token_bytes(id));
    types.push_back(static_cast<int64_t>(TokenType::Control));
  }
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("bitnet-b1.58"));
  w.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::str("llama-bpe"));
  w.set("tokenizer.ggml.tokens", GgufValue::array(std::move(tokens)));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufType::I32, std::move(types)));
  w.set("tokenizer.ggml.merges", GgufValue::array(std::vector<std::string>(sv.merges)));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(128000));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(128001));
  w.set("tokenizer.ggml.eot_token_id", GgufValue::u32(128009));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  auto bytes = std::make_shared<std::vector<uint8_t>>(w.serialize());
  const GgufFile f = GgufFile::parse(bytes, bytes->data(), bytes->size(), "llama3-tokenizer.gguf");
  const TokenizerVocab v = tokenizer_vocab_from_gguf(f);
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.eot_id, 128009);
  const Tokenizer t = Tokenizer::from_vocab(v);
  expect_goldens(t, false);
  expect_goldens(t, true);
  EXPECT_EQ(t.encode("Hi", {}), (Ids{128000, 13347}));
  EXPECT_EQ(t.stop_ids(), (Ids{128001, 128009}));
}

TEST(Tokenizer, Llama3FromHfTokenizerJsonMatchesTiktoken) {
  REQUIRE_LLAMA3();
  const StoredVocab& sv = stored_vocab(tok);
  json j;
  j["version"] = "1.0";
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  j["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}},
        {{"type", "TemplateProcessing"},
         {"single",
          {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}}}};
  json added = json::array();
  for (int32_t id = 128000; id < 128256; ++id)
    added.push_back({{"id", id}, {"content", tok.token_bytes(id)}, {"special", true}});
  j["added_tokens"] = added;
  json vocab = json::object();
  for (size_t i = 0; i < sv.tokens.size(); ++i) vocab[sv.tokens[i]] = i;
  j["model"] = {{"type", "BPE"}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", sv.merges}};
  const Tokenizer t = Tokenizer::from_hf_json(j.dump(), "generated tokenizer.json");
  EXPECT_EQ(t.bos_id(), 128000);
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.eot_id(), 128009);
  // HF always parses added tokens; compare with the parse-special goldens.
  expect_goldens(t, true);
}

TEST(Tokenizer, LoaderErrorsNameTheFile) {
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message([] { Tokenizer::from_tiktoken_file("/nonexistent/x.tiktoken"); }).find("/nonexistent/x.tiktoken"),
            std::string::npos);
  EXPECT_NE(message([] { Tokenizer::from_tiktoken("IQ== 0\nIg==\n", "t.tiktoken"); }).find("t.tiktoken:2"),
            std::string::npos);
  EXPECT_NE(message([] { Tokenizer::from_tiktoken("I!== 0\n", "t.tiktoken"); }).find("t.tiktoken:1"),
            std::string::npos);
  // A tiny table lacks most single bytes.
  EXPECT_NE(message([] { Tokenizer::from_tiktoken("IQ== 0\n", "t.tiktoken"); }).find("byte"), std::string::npos);
  EXPECT_NE(message([] { Tokenizer::from_hf_json("{", "bad.json"); }).find("bad.json"), std::string::npos);
  EXPECT_NE(message([] { Tokenizer::from_hf_json(R"({"model":{"type":"Unigram"}})", "u.json"); }).find("Unigram"),
            std::string::npos);
  TokenizerVocab v;
  v.model = "bert";
  EXPECT_NE(message([&] { Tokenizer::from_vocab(v); }).find("bert"), std::string::npos);
  v.model = "gpt2";
  v.pre = "qwen2";
  v.tokens = {"a"};
  EXPECT_NE(message([&] { Tokenizer::from_vocab(v); }).find("qwen2"), std::string::npos);
}

// A small byte-level vocabulary built in the test: all 256 bytes plus a few merges (GPT-2 regex).
TEST(Tokenizer, SmallGpt2VocabMergesByRank) {
  TokenizerVocab v;
  v.model = "gpt2";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(gpt2_byte_to_unicode(static_cast<uint8_t>(b)));
  const std::string G = gpt2_byte_to_unicode(' ');
  v.merges = {"l o", "lo w", G + " lo", "e r", G + "lo w"};
  for (const std::string& t : std::vector<std::string>{"lo", "low", G + "lo", "er", G + "low"}) v.tokens.push_back(t);
  v.tokens.push_back("<|endoftext|>");
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types.back() = static_cast<int32_t>(TokenType::Control);
  v.eos_id = static_cast<int32_t>(v.tokens.size()) - 1;
  const Tokenizer t = Tokenizer::from_vocab(v);
  // "lower" -> l o (rank 0), lo w (1), e r (3); " low" -> l o (0), lo w (1) before Ġ lo (2).
  EXPECT_EQ(t.encode("lower low", {}), (Ids{257, 259, 32, 257}));
  EXPECT_EQ(t.encode(" lo", {}), (Ids{258}));
  EXPECT_EQ(t.decode(t.encode("lower low", {})), "lower low");
  EXPECT_EQ(t.encode("x<|endoftext|>", {.add_bos = false, .parse_special = true}), (Ids{'x', 261}));
}

// ---- SentencePiece (llama.cpp's algorithm) against llama-tokenizer-js -----------------------------

const Tokenizer& llama2() {
  static const Tokenizer t = [] {
    TokenizerVocab v;
    v.model = "llama";
    for (const auto& j : read_jsonl(kData + "llama2_vocab.jsonl")) {
      v.tokens.push_back(j[0].get<std::string>());
      v.scores.push_back(j[1].get<float>());
      v.token_types.push_back(j[2].get<int32_t>());
    }
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
    return Tokenizer::from_vocab(v);
  }();
  return t;
}

TEST(Tokenizer, SentencePieceMatchesLlamaTokenizerJs) {
  const Tokenizer& tok = llama2();
  ASSERT_EQ(tok.n_vocab(), 32000);
  int bad = 0, n = 0;
  for (const auto& j : read_jsonl(kData + "goldens_spm.jsonl")) {
    const std::string text = j["text"].get<std::string>();
    const Ids want = j["ids"].get<Ids>();
    const Ids got = tok.encode(text, {.add_bos = false});
    ++n;
    if (got != want && ++bad <= 5)
      ADD_FAILURE() << "text " << show(text) << "\n got  " << json(got).dump() << "\n want " << json(want).dump();
    ASSERT_EQ(tok.decode(got), text) << show(text);
  }
  EXPECT_EQ(bad, 0) << "of " << n;
  EXPECT_GE(n, 150);
}

TEST(Tokenizer, SentencePieceBosSpecialsAndByteFallback) {
  const Tokenizer& tok = llama2();
  EXPECT_EQ(tok.encode("grabbed", {}), (Ids{1, 2646, 1327, 287}));  // llama-tokenizer-js's own test
  EXPECT_EQ(tok.encode("           grabbed", {}), (Ids{1, 9651, 2646, 1327, 287}));
  // <s> parsed only with parse_special; a space prefix follows a special token (llama.cpp).
  const Ids a = tok.encode("<s>hi", {.add_bos = false, .parse_special = true});
  EXPECT_EQ(a.front(), 1);
  EXPECT_EQ(a, (Ids{1, tok.encode("hi", {.add_bos = false})[0]}));
  EXPECT_NE(tok.encode("<s>hi", {.add_bos = false})[0], 1);
  // A character outside the vocabulary falls back to bytes: U+1F600 -> F0 9F 98 80.
  const Ids e = tok.encode("\xF0\x9F\x98\x80", {.add_bos = false});
  ASSERT_EQ(e.size(), 5u);  // "▁" + 4 byte tokens
  EXPECT_EQ(e[1], 3 + 0xF0);
  EXPECT_EQ(tok.token_type(e[1]), TokenType::Byte);
  EXPECT_EQ(tok.decode(e), "\xF0\x9F\x98\x80");
  // Streaming: the emoji comes out whole, after its last byte.
  StreamDecoder d(tok);
  std::vector<std::string> chunks;
  for (int32_t id : e) chunks.push_back(d.push(id));
  EXPECT_EQ(chunks, (std::vector<std::string>{"", "", "", "", "\xF0\x9F\x98\x80"}));
  EXPECT_EQ(d.flush(), "");
  EXPECT_EQ(tok.decode(Ids{1, 15043}, true), "Hello");
  EXPECT_EQ(tok.decode(Ids{1, 15043}, false), "<s> Hello");
}

TEST(Tokenizer, StreamDecoderFlushesAnIncompleteTail) {
  const Tokenizer& tok = llama2();
  StreamDecoder d(tok);
  EXPECT_EQ(d.push(3 + 'a'), "a");
  EXPECT_EQ(d.push(3 + 0xE4), "");
  EXPECT_EQ(d.push(3 + 0xBD), "");
  EXPECT_EQ(d.flush(), "\xE4\xBD");
}

// A SentencePiece GGUF file on disk (scores, token types, <0xNN> bytes), read by path.
TEST(Tokenizer, SentencePieceFromGgufFile) {
  const Tokenizer& ref = llama2();
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int64_t> types;
  for (const auto& j : read_jsonl(kData + "llama2_vocab.jsonl")) {
    tokens.push_back(j[0].get<std::string>());
    scores.push_back(j[1].get<double>());
    types.push_back(j[2].get<int64_t>());
  }
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::array(std::move(tokens)));
  w.set("tokenizer.ggml.scores", GgufValue::array(GgufType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufType::I32, std::move(types)));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(2));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(0));
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("bitnet_tok_" + std::to_string(::getpid()) + ".gguf")).string();
  w.write(path);
  const Tokenizer t = Tokenizer::from_gguf_file(path);
  std::filesystem::remove(path);
  EXPECT_TRUE(t.add_bos());  // llama.cpp's default for SentencePiece
  EXPECT_TRUE(t.add_space_prefix());
  for (const auto& j : read_jsonl(kData + "goldens_spm.jsonl")) {
    const std::string text = j["text"].get<std::string>();
    ASSERT_EQ(t.encode(text, {.add_bos = false}), j["ids"].get<Ids>()) << show(text);
  }
  EXPECT_EQ(t.encode("Hello", {}), ref.encode("Hello", {}));
  // Missing keys are named.
  GgufWriter bad;
  bad.set("tokenizer.ggml.model", GgufValue::str("llama"));
  auto b = std::make_shared<std::vector<uint8_t>>(bad.serialize());
  const GgufFile fb = GgufFile::parse(b, b->data(), b->size(), "bad.gguf");
  try {
    tokenizer_vocab_from_gguf(fb);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.tokens"), std::string::npos) << e.what();
  }
}

// A SentencePiece-style tokenizer.json (LLaMA-2 layout: Prepend/Replace normalizer, BPE with
// byte_fallback and merges) made from the same vocabulary, merges ordered by score as HF's
// converter orders them.
TEST(Tokenizer, SentencePieceFromHfTokenizerJson) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const auto& j : read_jsonl(kData + "llama2_vocab.jsonl")) {
    tokens.push_back(j[0].get<std::string>());
    scores.push_back(j[1].get<float>());
    types.push_back(j[2].get<int32_t>());
  }
  std::unordered_map<std::string, int32_t> id;
  for (size_t i = 0; i < tokens.size(); ++i) id.emplace(tokens[i], static_cast<int32_t>(i));
  std::vector<std::tuple<float, int32_t, std::string, std::string>> m;  // -score, id, left, right
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] != 1) continue;
    const std::string& t = tokens[i];
    for (size_t k = 1; k < t.size(); ++k) {
      if ((static_cast<uint8_t>(t[k]) & 0xC0) == 0x80) continue;  // split between characters only
      if (id.count(t.substr(0, k)) && id.count(t.substr(k)))
        m.emplace_back(-scores[i], static_cast<int32_t>(i), t.substr(0, k), t.substr(k));
    }
  }
  std::sort(m.begin(), m.end());
  json merges = json::array(), vocab = json::object();
  for (const auto& [s, i, l, r] : m) merges.push_back(l + " " + r);
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  const std::string sp = "\xE2\x96\x81";
  json j;
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", sp}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}}}};
  j["pre_tokenizer"] = nullptr;
  j["added_tokens"] = {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                       {{"id", 1}, {"content", "<s>"}, {"special", true}},
                       {{"id", 2}, {"content", "</s>"}, {"special", true}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  j["model"] = {{"type", "BPE"}, {"byte_fallback", true}, {"fuse_unk", true}, {"unk_token", "<unk>"},
                {"vocab", vocab}, {"merges", merges}};
  const Tokenizer t = Tokenizer::from_hf_json(j.dump(), "llama2 tokenizer.json");
  EXPECT_EQ(t.kind(), Tokenizer::Kind::SentencePiece);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_TRUE(t.add_bos());
  int bad = 0;
  for (const auto& g : read_jsonl(kData + "goldens_spm.jsonl")) {
    const std::string text = g["text"].get<std::string>();
    const Ids got = t.encode(text, {.add_bos = false});
    if (got != g["ids"].get<Ids>() && ++bad <= 5)
      ADD_FAILURE() << "text " << show(text) << "\n got  " << json(got).dump() << "\n want " << g["ids"].dump();
    ASSERT_EQ(t.decode(got), text);
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(t.encode("grabbed", {}), (Ids{1, 2646, 1327, 287}));
  // Tokenizer::from_file tells tokenizer.json from a tiktoken file by content.
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("bitnet_tok_" + std::to_string(::getpid()) + ".json")).string();
  std::ofstream(path) << "\n  " << j.dump();
  const Tokenizer f = Tokenizer::from_file(path);
  std::filesystem::remove(path);
  EXPECT_EQ(f.encode("Hello world", {}), t.encode("Hello world", {}));
}

}  // namespace
}  // namespace bitnet
