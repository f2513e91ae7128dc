// `bitnet tokenize`: text -> token ids. `--time` measures encoding speed (best of 5).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>

#include "cli_tokenizer.h"
#include "commands.h"
#include "core/error.h"
#include "core/read_file.h"
#include "json_out.h"

namespace bitnet::cli {
namespace {

struct Opts {
  TokenizerSource src;
  std::string prompt, file;
  bool json = false, no_bos = false, parse_special = false, time = false, pieces = false;
};

std::string read_text(const Opts& o) {
  if (!o.prompt.empty() && !o.file.empty()) fail("give the text with -p or -f, not both");
  if (o.file.empty()) return o.prompt;
  if (o.file == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  return read_file(o.file, "the text");
}

void run(const Opts& o) {
  const Tokenizer tok = load_tokenizer(o.src);
  const std::string text = read_text(o);
  const EncodeOptions eo{.add_bos = !o.no_bos && tok.add_bos(), .parse_special = o.parse_special};
  std::vector<int32_t> ids = tok.encode(text, eo);
  if (o.time) {
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      ids = tok.encode(text, eo);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::fprintf(stderr, "tokenize: %zu bytes -> %zu tokens in %.1f ms (%.1f MB/s, best of 5, 1 thread)\n",
                 text.size(), ids.size(), best * 1e3, static_cast<double>(text.size()) / best / 1e6);
  }
  std::string out;
  if (o.json) {
    print_json_line({{"ids", ids}});
    return;
  } else if (o.pieces) {
    for (int32_t id : ids) {
      std::string piece;
      for (unsigned char c : tok.token_bytes(id)) {
        if (c == '\n') piece += "\\n";
        else if (c == '\t') piece += "\\t";
        else if (c == '\r') piece += "\\r";
        else if (c == '\\') piece += "\\\\";
        else if (c < 0x20) piece += fmt::format("\\x{:02x}", c);
        else piece += static_cast<char>(c);
      }
      out += fmt::format("{:>7} '{}'\n", id, piece);
    }
  } else {
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
    out += "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Turn text into token ids");
  auto o = std::make_shared<Opts>();
  add_tokenizer_options(cmd, o->src);
  cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize");
  cmd->add_option("-f,--file", o->file, "File with the text to tokenize ('-': stdin)");
  cmd->add_flag("--json", o->json, "Print {\"ids\": [...]}");
  cmd->add_flag("--pieces", o->pieces, "Print one token per line with its bytes");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token");
  cmd->add_flag("--parse-special", o->parse_special, "Turn special-token strings in the text into their ids");
  cmd->add_flag("--time", o->time, "Report the encoding speed on stderr");
  cmd->callback([o] { run(*o); });
}

}  // namespace bitnet::cli
