#pragma once
// Training data: text files tokenized once into a token shard (a small header, then int32 ids),
// mapped from disk while training; windows of seq + 1 tokens are drawn from its training part,
// and a held-out tail gives eval loss and perplexity.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "training/rng.h"

namespace bitnet::train {

// The text files named (a folder: every regular file under it, in sorted path order), each
// tokenized with BOS (if the tokenizer has one) and followed by EOS (if it has one).
std::vector<std::string> list_text_files(const std::vector<std::string>& paths);
std::vector<int32_t> tokenize_files(const Tokenizer& tok, const std::vector<std::string>& files);

// Shard file: "BNTOKS01", uint64 count, uint32 vocabulary size, uint32 0, then count int32 ids.
void write_token_shard(const std::string& path, const std::vector<int32_t>& ids, int32_t n_vocab);

class TokenShard {
 public:
  // Throws bitnet::Error on a bad header, a size that does not match, or ids >= n_vocab.
  static TokenShard open(const std::string& path, int32_t n_vocab);
  // Ids held in memory (a data-parallel rank other than 0, which writes no files); the same
  // checks as open.
  static TokenShard from_ids(std::vector<int32_t> ids, int32_t n_vocab);
  int64_t size() const { return n_; }
  const int32_t* ids() const { return ids_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::shared_ptr<const std::vector<int32_t>> owned_;
  const int32_t* ids_ = nullptr;
  int64_t n_ = 0;
};

// The training / held-out split of a shard: held-out = the last eval_frac of the tokens.
struct DataSplit {
  const int32_t* ids = nullptr;
  int64_t train_n = 0, eval_n = 0;
  const int32_t* eval_ids() const { return ids + train_n; }
};
DataSplit split_shard(const TokenShard& s, double eval_frac, int64_t seq);

// batch windows of seq + 1 tokens at random offsets of the training part (drawn from rng, so the
// data order is part of the checkpointed state): inputs[b][t] = w[t], targets[b][t] = w[t + 1].
void draw_batch(const DataSplit& d, int64_t batch, int64_t seq, Rng& rng, std::vector<int32_t>& inputs,
                std::vector<int32_t>& targets);
// Held-out window i (consecutive, non-overlapping windows); there are eval_windows(d, seq).
int64_t eval_windows(const DataSplit& d, int64_t seq);
void eval_window(const DataSplit& d, int64_t seq, int64_t i, int32_t* inputs, int32_t* targets);

}  // namespace bitnet::train
