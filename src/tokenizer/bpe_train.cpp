#include "tokenizer/bpe_train.h"

#include <algorithm>
#include <queue>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/tokenizer_regex.h"

namespace bitnet {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
int32_t key_left(uint64_t k) {
  return static_cast<int32_t>(k >> 32);
}
int32_t key_right(uint64_t k) {
  return static_cast<int32_t>(k & 0xFFFFFFFFu);
}

// A heap entry: the count a pair had when it was pushed. Counts change only together with a push,
// so an entry whose count differs from the pair's current count is stale and skipped.
struct Candidate {
  int64_t count;
  uint64_t key;
  // "less" for std::priority_queue: the top is the highest count, then the smallest (left, right)
  // (the key orders pairs exactly by (left, right)).
  bool operator<(const Candidate& o) const { return count != o.count ? count < o.count : key > o.key; }
};

// The merge state: every distinct piece as its current symbols, with its count.
struct Words {
  std::vector<std::vector<int32_t>> syms;
  std::vector<int64_t> count;
  std::unordered_map<uint64_t, int64_t> pair_count;          // pair -> occurrences (weighted)
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // pair -> words that had it (may be stale)
  std::priority_queue<Candidate> heap;

  void index_pairs(int32_t w) {
    const auto& s = syms[static_cast<size_t>(w)];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += count[static_cast<size_t>(w)];
      auto& list = where[k];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }

  // Replaces every (a, b) in the words that contain it by `id`, left to right (so "a a a" with
  // a = b becomes "aa a", as the encoder does), and updates the counts, the index and the heap.
  void merge(uint64_t k, int32_t id) {
    const int32_t a = key_left(k), b = key_right(k);
    std::vector<int32_t> list = std::move(where[k]);
    where.erase(k);
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    std::unordered_map<uint64_t, int64_t> delta;
    std::vector<int32_t> merged;
    for (int32_t w : list) {
      auto& s = syms[static_cast<size_t>(w)];
      const int64_t c = count[static_cast<size_t>(w)];
      merged.clear();
      bool hit = false;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(id);
          ++i;
          hit = true;
        } else {
          merged.push_back(s[i]);
        }
      }
      if (!hit) continue;  // stale index entry: an earlier merge took the pair away
      // Pieces are short (words), so recounting the whole piece is cheaper than tracking the
      // neighbourhoods of each merge site, and it is obviously right for "a a a".
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= c;
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        const uint64_t nk = pair_key(merged[i], merged[i + 1]);
        delta[nk] += c;
        if (merged[i] == id || merged[i + 1] == id) {  // a new pair for this word: index it
          auto& l = where[nk];
          if (l.empty() || l.back() != w) l.push_back(w);
        }
      }
      s.swap(merged);
    }
    // The heap order depends only on (count, pair), so the order of these pushes does not matter.
    for (const auto& [pk, d] : delta) {
      if (d == 0) continue;
      auto it = pair_count.find(pk);
      const int64_t now = (it == pair_count.end() ? 0 : it->second) + d;
      BN_CHECK(now >= 0, "pair count went negative");
      if (now == 0) {
        if (it != pair_count.end()) pair_count.erase(it);
        where.erase(pk);
        continue;
      }
      if (it == pair_count.end())
        pair_count.emplace(pk, now);
      else
        it->second = now;
      heap.push(Candidate{now, pk});
    }
  }

  // The most frequent pair now (ties: smallest (left, right)), or count 0 when none is left.
  Candidate best() {
    while (!heap.empty()) {
      const Candidate c = heap.top();
      const auto it = pair_count.find(c.key);
      if (it != pair_count.end() && it->second == c.count) return c;
      heap.pop();
    }
    return Candidate{0, 0};
  }
};

}  // namespace

BpeTrainer::BpeTrainer() : regex_(std::make_unique<const Regex>(kLlama3Pattern)) {}
BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_text(std::string_view text) {
  std::vector<std::string_view> pieces;
  regex_->split(text, pieces);
  for (std::string_view p : pieces) {
    const auto it = counts_.find(p);
    if (it != counts_.end())
      ++it->second;
    else
      counts_.emplace(std::string(p), 1);
  }
  bytes_ += static_cast<int64_t>(text.size());
  pieces_ += static_cast<int64_t>(pieces.size());
}

TokenizerVocab BpeTrainer::train(const BpeTrainOptions& opt, BpeTrainStats* stats) const {
  if (opt.vocab_size < kBpeMinVocab)
    fail("a byte-level BPE vocabulary needs at least {} tokens (256 bytes, BOS, EOS, EOT), not {}",
         kBpeMinVocab, opt.vocab_size);
  if (opt.vocab_size > (int64_t{1} << 24))
    fail("vocabulary size {} is too large (at most 2^24)", opt.vocab_size);
  if (opt.min_frequency < 1) fail("the minimum pair frequency must be at least 1, not {}", opt.min_frequency);
  if (bytes_ == 0) fail("no training text: give at least one non-empty file");

  // Distinct pieces in byte order, so that word ids (and everything after) are deterministic.
  std::vector<std::pair<std::string_view, int64_t>> sorted;
  sorted.reserve(counts_.size());
  for (const auto& [s, c] : counts_) sorted.emplace_back(s, c);
  std::sort(sorted.begin(), sorted.end());

  Words w;
  w.syms.resize(sorted.size());
  w.count.resize(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    auto& s = w.syms[i];
    for (char ch : sorted[i].first) s.push_back(static_cast<uint8_t>(ch));
    w.count[i] = sorted[i].second;
    w.index_pairs(static_cast<int32_t>(i));
  }
  for (const auto& [k, c] : w.pair_count) w.heap.push(Candidate{c, k});

  // Token bytes by id; the merged ones are appended as they are learned.
  std::vector<std::string> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[static_cast<size_t>(b)] = std::string(1, static_cast<char>(b));
  std::unordered_set<std::string> seen(bytes.begin(), bytes.end());
  std::vector<std::pair<int32_t, int32_t>> merges;
  const int64_t max_merges = opt.vocab_size - kBpeMinVocab;
  while (static_cast<int64_t>(merges.size()) < max_merges) {
    const Candidate c = w.best();
    if (c.count < opt.min_frequency) break;
    const int32_t a = key_left(c.key), b = key_right(c.key);
    const auto id = static_cast<int32_t>(bytes.size());
    bytes.push_back(bytes[static_cast<size_t>(a)] + bytes[static_cast<size_t>(b)]);
    // Two merges can never make the same bytes (see the header): the encoder relies on it.
    BN_CHECK(seen.insert(bytes.back()).second, "BPE training made a token twice");
    merges.emplace_back(a, b);
    w.merge(c.key, id);
  }

  TokenizerVocab v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  auto stored = [](const std::string& raw) {
    std::string s;
    for (char ch : raw) s += gpt2_byte_to_unicode(static_cast<uint8_t>(ch));
    return s;
  };
  for (const std::string& raw : bytes) v.tokens.push_back(stored(raw));
  v.token_types.assign(v.tokens.size(), static_cast<int32_t>(TokenType::Normal));
  for (const auto& [a, b] : merges)
    v.merges.push_back(v.tokens[static_cast<size_t>(a)] + " " + v.tokens[static_cast<size_t>(b)]);
  auto add_control = [&](const std::string& s) {
    v.tokens.push_back(s);
    v.token_types.push_back(static_cast<int32_t>(TokenType::Control));
    return static_cast<int32_t>(v.tokens.size() - 1);
  };
  v.bos_id = add_control("<|begin_of_text|>");
  v.eos_id = add_control("<|end_of_text|>");
  v.eot_id = add_control("<|eot_id|>");
  v.add_bos = true;
  int64_t reserved = 0;
  while (static_cast<int64_t>(v.tokens.size()) < opt.vocab_size)
    add_control("<|reserved_special_token_" + std::to_string(reserved++) + "|>");

  if (stats) {
    *stats = BpeTrainStats{};
    stats->bytes = bytes_;
    stats->pieces = pieces_;
    stats->unique_pieces = static_cast<int64_t>(sorted.size());
    stats->merges = static_cast<int64_t>(merges.size());
    stats->reserved = reserved;
    for (size_t i = 0; i < w.syms.size(); ++i)
      stats->tokens += w.count[i] * static_cast<int64_t>(w.syms[i].size());
  }
  return v;
}

}  // namespace bitnet
