// The project's own model (models/bitnet-en.gguf, the default of `bitnet run`): the README's main
// command prints real English. 200 generated tokens, greedy and at temperature 0.8, must be at
// least 95 % words of Debian's wamerican list (/usr/share/dict/american-english; scripts/setup.sh
// installs it). A word is a run of ASCII letters, with an inner apostrophe; it counts if the list
// has it as written or in lower case.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_set>

#include "inference/forward.h"
#include "inference/sampler.h"
#include "io/gguf.h"
#include "model/load_gguf.h"
#include "tokenizer/tokenizer.h"

namespace bitnet {
namespace {

const std::string kModel = std::string(BITNET_SOURCE_DIR) + "/models/bitnet-en.gguf";
const std::string kWords = "/usr/share/dict/american-english";
const char* kPrompt = "And the king said";  // scripts/run.sh's prompt

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  auto flush = [&] {
    while (!w.empty() && w.back() == '\'') w.pop_back();
    if (!w.empty()) out.push_back(w);
    w.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isalpha(c) && c < 128) w += static_cast<char>(c);
    else if (c == '\'' && !w.empty() && i + 1 < text.size() && std::isalpha(static_cast<unsigned char>(text[i + 1])))
      w += '\'';
    else flush();
  }
  flush();
  return out;
}

std::string generate(const Model& m, const Tokenizer& tok, float temperature, int n) {
  std::vector<int32_t> ids = tok.encode(kPrompt, {.add_bos = tok.add_bos(), .parse_special = false});
  Session s(m, {.n_ctx = static_cast<int64_t>(ids.size()) + n, .threads = 2});
  SamplerOptions so;
  so.temperature = temperature;
  so.seed = 1;
  Sampler sampler(so);
  std::vector<int32_t> gen, history = ids;
  const auto stops = tok.stop_ids();
  const float* logits = s.forward(ids);
  for (int i = 0; i < n; ++i) {
    const int32_t next = sampler.sample(std::span(logits, static_cast<size_t>(m.cfg.n_vocab)), history);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
    gen.push_back(next);
    history.push_back(next);
    if (i + 1 < n) logits = s.forward(std::span(&next, 1));
  }
  return tok.decode(gen, true);
}

TEST(DefaultModel, WritesRealEnglishWords) {
  ASSERT_TRUE(std::filesystem::exists(kModel)) << kModel << " is part of the repository";
  if (!std::filesystem::exists(kWords)) GTEST_SKIP() << kWords << " is missing (Debian package wamerican)";
  std::unordered_set<std::string> dict;
  {
    std::ifstream in(kWords);
    for (std::string l; std::getline(in, l);) dict.insert(l);
  }
  const GgufFile f = GgufFile::open(kModel);
  const auto model = load_gguf_model(f);
  const Tokenizer tok = Tokenizer::from_vocab(tokenizer_vocab_from_gguf(f));
  for (const float temp : {0.0f, 0.8f}) {
    const std::string text = generate(*model, tok, temp, 200);
    const auto words = words_of(text);
    ASSERT_GE(words.size(), 60u) << "temperature " << temp << ": " << text;
    size_t known = 0;
    std::string unknown;
    for (const std::string& w : words) {
      std::string lower = w;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (dict.count(w) || dict.count(lower)) ++known;
      else unknown += " " + w;
    }
    const double share = static_cast<double>(known) / static_cast<double>(words.size());
    EXPECT_GE(share, 0.95) << "temperature " << temp << ": " << known << " of " << words.size()
                           << " words known; unknown:" << unknown << "\n" << text;
    std::printf("temperature %.1f: %zu of %zu words in the list (%.1f %%)\n", temp, known, words.size(), 100 * share);
  }
}

TEST(DefaultModel, WordSplitting) {
  EXPECT_EQ(words_of("Don't stop-now, O'Neil's 3rd sqlite3_open() 'quoted'"),
            (std::vector<std::string>{"Don't", "stop", "now", "O'Neil's", "rd", "sqlite", "open", "quoted"}));
}

}  // namespace
}  // namespace bitnet
