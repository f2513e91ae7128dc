#pragma once
// Byte-level BPE training (the GPT-2 / LLaMA-3 kind of tokenizer that Tokenizer encodes):
//  1. the text is split by the LLaMA-3 pre-tokenizer regex, exactly as the encoder splits it, and
//     the pieces are counted as byte strings;
//  2. starting from the 256 single bytes, the most frequent adjacent pair of symbols over all
//     pieces (weighted by piece count) is merged into a new token, again and again; ties go to the
//     smallest (left id, right id), so the result never depends on hash-map order.
// Pair counts are updated incrementally, with an index pair -> pieces that contain it, so a merge
// costs time in the pieces it touches, not in the whole corpus.
//
// Training and encoding agree: within a piece, the encoder applies the merges by rank (leftmost
// first), which is the order training applied them in, so it reproduces training's segmentation;
// and a piece whose bytes are a token (the encoder's ignore_merges shortcut) merges to that token
// anyway, since the symbols inside a token's span evolve the same with or without context.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace bitnet {

struct BpeTrainOptions {
  int64_t vocab_size = 8192;  // every id: 256 bytes + merges + BOS, EOS, EOT (+ reserved padding)
  int64_t min_frequency = 2;  // a pair seen fewer times is not merged
};

struct BpeTrainStats {
  int64_t bytes = 0;          // bytes of training text
  int64_t pieces = 0;         // pre-tokenized pieces, with repetition
  int64_t unique_pieces = 0;  // distinct pieces
  int64_t merges = 0;         // merges learned
  int64_t reserved = 0;       // reserved control tokens that pad the vocabulary (too few merges)
  int64_t tokens = 0;         // tokens the training text encodes to (no BOS)
};

class BpeTrainer {
 public:
  BpeTrainer();
  ~BpeTrainer();
  BpeTrainer(const BpeTrainer&) = delete;
  BpeTrainer& operator=(const BpeTrainer&) = delete;

  // Pre-tokenizes `text` and counts its pieces. Text given in several calls is trained on as if the
  // pieces came from one text, but no piece spans two calls (give whole documents or files).
  void add_text(std::string_view text);
  int64_t bytes() const { return bytes_; }

  // Learns vocab_size - 259 merges (fewer when no pair is frequent enough: the rest are reserved
  // control tokens) and returns the vocabulary: the 256 bytes in byte order (every byte encodes),
  // the merged tokens in merge order, then <|begin_of_text|> (BOS, added), <|end_of_text|> (EOS)
  // and <|eot_id|> (EOT, the chat turn separator) as control tokens. Model "gpt2", pre
  // "llama-bpe". Throws bitnet::Error on a vocabulary size out of range or when there is no text.
  TokenizerVocab train(const BpeTrainOptions& opt, BpeTrainStats* stats = nullptr) const;

 private:
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int64_t, StrHash, std::equal_to<>> counts_;  // piece -> count
  int64_t bytes_ = 0;
  int64_t pieces_ = 0;
  std::unique_ptr<const Regex> regex_;  // the encoder's pre-tokenizer
};

// Smallest vocabulary train() accepts: the 256 bytes and the three control tokens.
inline constexpr int64_t kBpeMinVocab = 259;

}  // namespace bitnet
