// BPE training (tokenizer/bpe_train.h): hand-checked first merges, exact vocabulary size,
// determinism, agreement with the encoder (with and without ignore_merges), byte-exact round
// trips through tokenizer.json, and clear errors on bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_regex.h"

namespace bitnet {
namespace {

using Ids = std::vector<int32_t>;
constexpr EncodeOptions kNoBos{.add_bos = false, .parse_special = false};

// Deterministic mixed text: English-like words, numbers, punctuation, contractions, newlines,
// non-ASCII letters, and now and then a few raw (often invalid UTF-8) bytes.
std::vector<std::string> make_docs(int n_docs, uint32_t seed) {
  static const std::vector<std::string> words = {
      "the",  "of",    "and",   "to",    "in",        "is",     "that",    "it",    "was",  "for",
      "on",   "are",   "with",  "as",    "they",      "be",     "at",      "one",   "have", "this",
      "from", "word",  "token", "lower", "newest",    "widest", "café",    "naïve", "日本", "über",
      "it's", "don't", "we'll", "HELLO", "Tokenizer", "BPE",    "ternary", "model", "2024", "3.14159"};
  static const char* const kSeparators[] = {", ", ".\n", "\n\n", "  ", "\t"};
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n_docs; ++d) {
    std::string s;
    const int n = 20 + static_cast<int>(rng() % 200);
    for (int i = 0; i < n; ++i) {
      s += words[rng() % words.size()];
      const uint32_t r = rng() % 16;
      if (r < 5)
        s += kSeparators[r];
      else if (r == 5)
        s += std::to_string(rng() % 100000) + " ";
      else if (r == 6)
        s += static_cast<char>(0x80 + rng() % 128);  // a stray byte
      else
        s += " ";
    }
    docs.push_back(s);
  }
  return docs;
}

TokenizerVocab train_on(const std::vector<std::string>& docs, int64_t vocab, BpeTrainStats* st = nullptr,
                        int64_t min_frequency = 2) {
  BpeTrainer t;
  for (const auto& d : docs) t.add_text(d);
  return t.train({.vocab_size = vocab, .min_frequency = min_frequency}, st);
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

TEST(BpeTrain, FirstMergesAreTheMostFrequentPairs) {
  // Pieces: "low" x1, " low" x4, " lower" x2, " newest" x6, " widest" x3. Pair counts: e s 9, s t 9
  // (tie: smaller left id 'e' first), then es t 9, l o 7, lo w 7; then six pairs at 6 count, taken
  // by smallest (left id, right id): Ġ n (n=110 < low=256+3), Ġ low, e w, Ġn ew, Ġnew est.
  std::string text = "low";
  for (int i = 0; i < 4; ++i) text += " low";
  for (int i = 0; i < 2; ++i) text += " lower";
  for (int i = 0; i < 6; ++i) text += " newest";
  for (int i = 0; i < 3; ++i) text += " widest";
  BpeTrainer t;
  t.add_text(text);
  const TokenizerVocab v = t.train({.vocab_size = 259 + 9});
  const std::vector<std::string> want = {"e s",   "es t", "l o",   "lo w",    "Ġ n",
                                         "Ġ low", "e w",  "Ġn ew", "Ġnew est"};
  EXPECT_EQ(v.merges, want);
  EXPECT_EQ(v.tokens[256], "es");
  EXPECT_EQ(v.tokens[264], "Ġnewest");
  const Tokenizer tok = Tokenizer::from_vocab(v);
  EXPECT_EQ(tok.encode(" newest lowest", kNoBos), (Ids{264, 261, 257}));
}

TEST(BpeTrain, VocabularySizeIsExact) {
  const auto docs = make_docs(40, 1);
  for (int64_t n : {259, 300, 1000}) {
    BpeTrainStats st;
    const TokenizerVocab v = train_on(docs, n, &st);
    EXPECT_EQ(static_cast<int64_t>(v.tokens.size()), n);
    EXPECT_EQ(static_cast<int64_t>(v.token_types.size()), n);
    EXPECT_EQ(256 + st.merges + 3 + st.reserved, n);
    EXPECT_EQ(static_cast<int64_t>(v.merges.size()), st.merges);
    EXPECT_EQ(Tokenizer::from_vocab(v).n_vocab(), n);
  }
  // A tiny text runs out of pairs: the rest of the vocabulary is reserved control tokens.
  BpeTrainStats st;
  const TokenizerVocab v = train_on({"abc abc abd"}, 400, &st);
  EXPECT_EQ(v.tokens.size(), 400u);
  EXPECT_GT(st.reserved, 0);
  EXPECT_EQ(v.tokens.back(), "<|reserved_special_token_" + std::to_string(st.reserved - 1) + "|>");
}

TEST(BpeTrain, LayoutBytesThenMergesThenControlTokens) {
  const TokenizerVocab v = train_on(make_docs(20, 2), 512);
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "llama-bpe");
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(v.tokens[static_cast<size_t>(b)], gpt2_byte_to_unicode(static_cast<uint8_t>(b)));
  const int32_t m = 256 + static_cast<int32_t>(v.merges.size());
  EXPECT_EQ(v.bos_id, m);
  EXPECT_EQ(v.eos_id, m + 1);
  EXPECT_EQ(v.eot_id, m + 2);
  EXPECT_EQ(v.tokens[static_cast<size_t>(v.bos_id)], "<|begin_of_text|>");
  EXPECT_EQ(v.tokens[static_cast<size_t>(v.eos_id)], "<|end_of_text|>");
  EXPECT_EQ(v.tokens[static_cast<size_t>(v.eot_id)], "<|eot_id|>");
  for (int32_t id : {v.bos_id, v.eos_id, v.eot_id})
    EXPECT_EQ(v.token_types[static_cast<size_t>(id)], static_cast<int32_t>(TokenType::Control));
  EXPECT_TRUE(v.add_bos);
}

TEST(BpeTrain, DeterministicWhateverTheOrderOfTheText) {
  auto docs = make_docs(60, 3);
  const std::string a = hf_tokenizer_json(train_on(docs, 700));
  const std::string b = hf_tokenizer_json(train_on(docs, 700));
  EXPECT_EQ(a, b);
  // The same pieces counted in another order (and so inserted into the hash map in another order).
  std::reverse(docs.begin(), docs.end());
  EXPECT_EQ(hf_tokenizer_json(train_on(docs, 700)), a);
}

TEST(BpeTrain, EncoderReproducesTrainingSegmentation) {
  const auto docs = make_docs(60, 4);
  BpeTrainStats st;
  const TokenizerVocab v = train_on(docs, 800, &st);
  const Tokenizer tok = Tokenizer::from_vocab(v);
  // The token count training reports is what the encoder gives on the same text.
  int64_t n = 0, bytes = 0;
  for (const auto& d : docs)
    n += static_cast<int64_t>(tok.encode(d, kNoBos).size()), bytes += static_cast<int64_t>(d.size());
  EXPECT_EQ(n, st.tokens);
  EXPECT_EQ(bytes, st.bytes);
  EXPECT_LT(st.tokens, st.bytes / 2);  // it does compress
}

TEST(BpeTrain, IgnoreMergesChangesNothing) {
  // LLaMA-3's encoder emits a piece that is itself a token whole (ignore_merges); the merges alone
  // must reach the same tokens, or the tokenizer would depend on that flag.
  const auto docs = make_docs(60, 5);
  const TokenizerVocab v = train_on(docs, 800);
  nlohmann::json j = nlohmann::json::parse(hf_tokenizer_json(v));
  ASSERT_TRUE(j["model"]["ignore_merges"].get<bool>());
  const Tokenizer with = Tokenizer::from_hf_json(j.dump(), "with");
  j["model"]["ignore_merges"] = false;
  const Tokenizer without = Tokenizer::from_hf_json(j.dump(), "without");
  for (const auto& d : make_docs(30, 6)) EXPECT_EQ(with.encode(d, kNoBos), without.encode(d, kNoBos));
  // Every token, as text of its own, encodes the same both ways; and to itself, when the
  // pre-tokenizer keeps it whole (a token from inside "naïve" may be "\xAFve", which alone splits
  // into two pieces).
  const Regex re(kLlama3Pattern);
  int whole = 0;
  for (int32_t id = 256; id < v.bos_id; ++id) {
    const std::string& b = with.token_bytes(id);
    EXPECT_EQ(without.encode(b, kNoBos), with.encode(b, kNoBos)) << "token " << id;
    std::vector<std::string_view> pieces;
    re.split(b, pieces);
    if (pieces.size() != 1) continue;
    ++whole;
    EXPECT_EQ(without.encode(b, kNoBos), Ids{id}) << "token " << id;
  }
  EXPECT_GT(whole, (v.bos_id - 256) / 2);
}

TEST(BpeTrain, EncodeDecodeIsIdentityOnAnyBytes) {
  const Tokenizer tok = Tokenizer::from_vocab(train_on(make_docs(40, 7), 600));
  std::mt19937 rng(8);
  std::vector<std::string> texts = make_docs(10, 9);
  for (int i = 0; i < 200; ++i) texts.push_back(random_bytes(rng, rng() % 64));
  texts.push_back(std::string("\0\xFF\xC3(\xE2\x82 \xF0\x9F\x98\x80 <|eot_id|>", 20));
  texts.push_back("");
  for (const auto& s : texts) {
    EXPECT_EQ(tok.decode(tok.encode(s, kNoBos)), s);
    const Ids with_bos = tok.encode(s);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], tok.bos_id());
    EXPECT_EQ(tok.decode(with_bos, /*skip_special=*/true), s);
  }
}

TEST(BpeTrain, TokenizerJsonRoundTrips) {
  const TokenizerVocab v = train_on(make_docs(40, 10), 600);
  const std::string json = hf_tokenizer_json(v);
  const HfTokenizerJson h = parse_hf_tokenizer_json(json, "trained");
  EXPECT_EQ(h.vocab.tokens, v.tokens);
  EXPECT_EQ(h.vocab.token_types, v.token_types);
  EXPECT_EQ(h.vocab.merges, v.merges);
  EXPECT_EQ(h.vocab.bos_id, v.bos_id);
  EXPECT_EQ(h.vocab.eos_id, v.eos_id);
  EXPECT_EQ(h.vocab.eot_id, v.eot_id);
  EXPECT_TRUE(h.vocab.add_bos);
  EXPECT_TRUE(h.ignore_merges);
  EXPECT_EQ(h.pattern, kLlama3Pattern);
  const Tokenizer a = Tokenizer::from_vocab(v);
  const Tokenizer b = Tokenizer::from_hf_json(json, "trained");
  EXPECT_EQ(b.n_vocab(), a.n_vocab());
  EXPECT_EQ(b.eot_id(), v.eot_id);
  EXPECT_EQ(b.stop_ids(), (Ids{v.eos_id, v.eot_id}));
  for (const auto& d : make_docs(20, 11)) EXPECT_EQ(b.encode(d), a.encode(d));
}

TEST(BpeTrain, ChatTurnSeparatorParses) {
  // `bitnet chat` (bitnet template) formats turns as "User: {u}<|eot_id|>Assistant: " and parses
  // the markers as special tokens; the trained vocabulary has no <|start_header_id|>, so the
  // bitnet template is the one chosen.
  const Tokenizer tok = Tokenizer::from_vocab(train_on(make_docs(20, 12), 400));
  EXPECT_EQ(tok.special_id("<|start_header_id|>"), -1);
  const Ids ids = tok.encode("User: hi<|eot_id|>Assistant: ", {.add_bos = false, .parse_special = true});
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok.eot_id()), 1);
  // Without parse_special the marker is plain text.
  const Ids plain = tok.encode("<|eot_id|>", kNoBos);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), tok.eot_id()), 0);
}

TEST(BpeTrain, MinFrequencyStopsMerging) {
  BpeTrainStats lo, hi;
  const auto docs = make_docs(40, 13);
  train_on(docs, 2000, &lo, 2);
  train_on(docs, 2000, &hi, 50);
  EXPECT_LT(hi.merges, lo.merges);
  EXPECT_EQ(hi.merges + hi.reserved, lo.merges + lo.reserved);
}

TEST(BpeTrain, BadInputIsAnError) {
  BpeTrainer empty;
  EXPECT_THROW(empty.train({.vocab_size = 1000}), Error);
  BpeTrainer t;
  t.add_text("some text");
  EXPECT_THROW(t.train({.vocab_size = 258}), Error);
  EXPECT_THROW(t.train({.vocab_size = -1}), Error);
  EXPECT_THROW(t.train({.vocab_size = int64_t{1} << 40}), Error);
  EXPECT_THROW(t.train({.vocab_size = 300, .min_frequency = 0}), Error);
  try {
    t.train({.vocab_size = 100});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("259"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(t.train({.vocab_size = 259}));
}

}  // namespace
}  // namespace bitnet
