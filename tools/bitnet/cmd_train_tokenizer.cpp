// `bitnet train-tokenizer`: learns a byte-level BPE tokenizer (LLaMA-3 pre-tokenizer, byte
// fallback, BOS/EOS/EOT control tokens) from text files and writes it as a HF tokenizer.json.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "core/read_file.h"
#include "tokenizer/bpe_train.h"

namespace bitnet::cli {
namespace {

namespace fs = std::filesystem;

struct Opts {
  std::vector<std::string> data;
  std::string out;
  int64_t vocab = 8192;
  int64_t max_bytes = 0;  // 0: everything
  int64_t min_frequency = 2;
};

// The files named, and the regular files under the folders named (recursively, hidden ones
// skipped), each folder's in path order so that the same data trains the same tokenizer.
std::vector<fs::path> collect_files(const std::vector<std::string>& args) {
  std::vector<fs::path> files;
  for (const std::string& a : args) {
    std::error_code ec;
    const fs::file_status st = fs::status(a, ec);
    if (ec || !fs::exists(st)) fail("{}: no such file or folder", a);
    if (fs::is_regular_file(st)) {
      files.emplace_back(a);
      continue;
    }
    if (!fs::is_directory(st)) fail("{}: not a file or folder", a);
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(a); it != fs::recursive_directory_iterator(); ++it) {
      if (it->path().filename().string().starts_with(".")) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) found.push_back(it->path());
    }
    if (found.empty()) fail("{}: the folder has no files", a);
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

void run(const Opts& o) {
  if (o.max_bytes < 0) fail("--max-bytes must not be negative");
  // Fail on bad options before reading gigabytes.
  if (o.vocab < kBpeMinVocab)
    fail("--vocab must be at least {} (256 bytes, BOS, EOS, EOT), not {}", kBpeMinVocab, o.vocab);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<fs::path> files = collect_files(o.data);
  BpeTrainer trainer;
  size_t used = 0;
  for (const fs::path& p : files) {
    std::string text = read_file(p.string(), "training text");
    if (o.max_bytes > 0) {
      const auto left = static_cast<size_t>(o.max_bytes - trainer.bytes());
      if (text.size() > left) {
        // Cut at a line end, so that no word or UTF-8 character is split by the limit.
        const size_t nl = text.rfind('\n', left == 0 ? 0 : left - 1);
        text.resize(nl == std::string::npos ? left : nl + 1);
      }
    }
    trainer.add_text(text);
    ++used;
    if (o.max_bytes > 0 && trainer.bytes() >= o.max_bytes) break;
  }
  const auto t1 = std::chrono::steady_clock::now();
  BpeTrainStats st;
  const TokenizerVocab v = trainer.train({.vocab_size = o.vocab, .min_frequency = o.min_frequency}, &st);
  const auto t2 = std::chrono::steady_clock::now();
  std::ofstream f(o.out, std::ios::binary);
  if (!f) fail("{}: cannot create the output file", o.out);
  const std::string json = hf_tokenizer_json(v);
  f.write(json.data(), static_cast<std::streamsize>(json.size()));
  f.close();
  if (!f) fail("{}: write failed", o.out);
  const double read_s = std::chrono::duration<double>(t1 - t0).count();
  const double train_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf("read %lld bytes from %zu of %zu files: %lld pieces, %lld distinct (%.1f s)\n",
              static_cast<long long>(st.bytes), used, files.size(), static_cast<long long>(st.pieces),
              static_cast<long long>(st.unique_pieces), read_s);
  std::printf("vocabulary: %zu tokens = 256 bytes + %lld merges + 3 control (BOS %d, EOS %d, EOT %d)",
              v.tokens.size(), static_cast<long long>(st.merges), v.bos_id, v.eos_id, v.eot_id);
  if (st.reserved > 0)
    std::printf(" + %lld reserved (no pair is seen %lld times any more)", static_cast<long long>(st.reserved),
                static_cast<long long>(o.min_frequency));
  std::printf("\ntrained in %.1f s; compression on the training text: %.3f bytes per token (%lld tokens)\n",
              train_s, static_cast<double>(st.bytes) / static_cast<double>(std::max<int64_t>(st.tokens, 1)),
              static_cast<long long>(st.tokens));
  std::printf("wrote %s\n", o.out.c_str());
}

}  // namespace

void register_train_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("train-tokenizer",
                                 "Train a byte-level BPE tokenizer (tokenizer.json) on text files");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--data", o->data, "Text files, or folders of them (read recursively)")->required();
  cmd->add_option("--vocab", o->vocab, "Vocabulary size, including the 256 bytes and BOS/EOS/EOT")
      ->capture_default_str();
  cmd->add_option("-o,--output", o->out, "tokenizer.json to write")->required();
  cmd->add_option("--max-bytes", o->max_bytes, "Read at most this many bytes of text (0: all)")
      ->capture_default_str();
  cmd->add_option("--min-frequency", o->min_frequency, "Merge only pairs seen at least this often")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 62));
  cmd->callback([o] { run(*o); });
}

}  // namespace bitnet::cli
