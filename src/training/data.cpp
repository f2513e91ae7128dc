#include "training/data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace bitnet::train {

namespace fs = std::filesystem;

std::vector<std::string> list_text_files(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(p, ec))
        if (e.is_regular_file()) found.push_back(e.path().string());
      if (ec) fail("{}: cannot list: {}", p, ec.message());
      std::sort(found.begin(), found.end());
      if (found.empty()) fail("{}: the folder holds no files", p);
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p, ec)) {
      out.push_back(p);
    } else {
      fail("{}: no such file or folder", p);
    }
  }
  if (out.empty()) fail("no training data given");
  return out;
}

std::vector<int32_t> tokenize_files(const Tokenizer& tok, const std::vector<std::string>& files) {
  std::vector<int32_t> ids;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) fail("{}: cannot open", f);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::vector<int32_t> t = tok.encode(ss.str(), {.add_bos = tok.add_bos(), .parse_special = false});
    ids.insert(ids.end(), t.begin(), t.end());
    if (tok.eos_id() >= 0) ids.push_back(tok.eos_id());
  }
  return ids;
}

namespace {
constexpr char kMagic[8] = {'B', 'N', 'T', 'O', 'K', 'S', '0', '1'};
constexpr size_t kHeader = 24;
}  // namespace

void write_token_shard(const std::string& path, const std::vector<int32_t>& ids, int32_t n_vocab) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot write", tmp);
    const uint64_t n = ids.size();
    const uint32_t v = static_cast<uint32_t>(n_vocab), zero = 0;
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(reinterpret_cast<const char*>(&v), 4);
    out.write(reinterpret_cast<const char*>(&zero), 4);
    out.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(n * 4));
    if (!out) fail("{}: write failed", tmp);
  }
  fs::rename(tmp, path);
}

TokenShard TokenShard::open(const std::string& path, int32_t n_vocab) {
  TokenShard s;
  s.file_ = MappedFile::open(path);
  const uint8_t* p = s.file_->data();
  const size_t size = s.file_->size();
  if (size < kHeader || std::memcmp(p, kMagic, 8) != 0) fail("{}: not a token shard (bad header)", path);
  uint64_t n;
  uint32_t v;
  std::memcpy(&n, p + 8, 8);
  std::memcpy(&v, p + 16, 4);
  if (n > (size - kHeader) / 4 || kHeader + n * 4 != size)
    fail("{}: the header says {} tokens but the file holds {} bytes", path, n, size);
  if (static_cast<int32_t>(v) != n_vocab)
    fail("{}: tokenized for a vocabulary of {}, the model has {}", path, v, n_vocab);
  s.ids_ = reinterpret_cast<const int32_t*>(p + kHeader);
  s.n_ = static_cast<int64_t>(n);
  for (int64_t i = 0; i < s.n_; ++i)
    if (s.ids_[i] < 0 || s.ids_[i] >= n_vocab)
      fail("{}: token {} has id {} outside the vocabulary", path, i, s.ids_[i]);
  return s;
}

TokenShard TokenShard::from_ids(std::vector<int32_t> ids, int32_t n_vocab) {
  TokenShard s;
  s.owned_ = std::make_shared<const std::vector<int32_t>>(std::move(ids));
  s.ids_ = s.owned_->data();
  s.n_ = static_cast<int64_t>(s.owned_->size());
  for (int64_t i = 0; i < s.n_; ++i)
    if (s.ids_[i] < 0 || s.ids_[i] >= n_vocab)
      fail("tokens: token {} has id {} outside the vocabulary of {}", i, s.ids_[i], n_vocab);
  return s;
}

DataSplit split_shard(const TokenShard& s, double eval_frac, int64_t seq) {
  if (!(eval_frac >= 0 && eval_frac < 1)) fail("held-out fraction {} must be in [0, 1)", eval_frac);
  DataSplit d;
  d.ids = s.ids();
  d.eval_n = static_cast<int64_t>(static_cast<double>(s.size()) * eval_frac);
  d.train_n = s.size() - d.eval_n;
  if (d.train_n < seq + 1)
    fail("the training data holds {} tokens, fewer than one window of {} + 1", d.train_n, seq);
  if (eval_frac > 0 && d.eval_n < seq + 1)
    fail(
        "the held-out part holds {} tokens, fewer than one window of {} + 1 (more data or a larger "
        "--eval-frac)",
        d.eval_n, seq);
  return d;
}

void draw_batch(const DataSplit& d, int64_t batch, int64_t seq, Rng& rng, std::vector<int32_t>& inputs,
                std::vector<int32_t>& targets) {
  inputs.resize(static_cast<size_t>(batch * seq));
  targets.resize(static_cast<size_t>(batch * seq));
  const uint64_t starts = static_cast<uint64_t>(d.train_n - seq);  // offsets 0 .. train_n - seq - 1
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t o = static_cast<int64_t>(rng.below(starts));
    std::copy(d.ids + o, d.ids + o + seq, inputs.begin() + b * seq);
    std::copy(d.ids + o + 1, d.ids + o + seq + 1, targets.begin() + b * seq);
  }
}

int64_t eval_windows(const DataSplit& d, int64_t seq) {
  return d.eval_n > seq ? (d.eval_n - 1) / seq : 0;
}

void eval_window(const DataSplit& d, int64_t seq, int64_t i, int32_t* inputs, int32_t* targets) {
  const int32_t* w = d.eval_ids() + i * seq;
  std::copy(w, w + seq, inputs);
  std::copy(w + 1, w + seq + 1, targets);
}

}  // namespace bitnet::train
