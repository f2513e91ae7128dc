// `bitnet detokenize`: token ids (arguments, or stdin: numbers separated by spaces/commas, or
// {"ids": [...]}) -> text, written exactly as decoded (no newline added).
#include <cstdio>
#include <iostream>
#include <iterator>

#include "cli_tokenizer.h"
#include "commands.h"
#include "core/error.h"

namespace bitnet::cli {
namespace {

struct Opts {
  TokenizerSource src;
  std::vector<std::string> ids;
  bool skip_special = false;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t j = i + 1;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      const std::string num = s.substr(i, j - i);
      if (num == "-" || num.size() > 11) fail("detokenize: invalid token id '{}'", num);
      const long long v = std::stoll(num);
      if (v < INT32_MIN || v > INT32_MAX) fail("detokenize: token id {} is out of range", num);
      ids.push_back(static_cast<int32_t>(v));
      i = j;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']' || c == '{' ||
               c == '}' || c == ':') {
      ++i;
    } else if (s.compare(i, 5, "\"ids\"") == 0) {
      i += 5;
    } else {
      fail("detokenize: unexpected character '{}' at offset {} in the ids", c, i);
    }
  }
  return ids;
}

void run(const Opts& o) {
  const Tokenizer tok = load_tokenizer(o.src);
  std::string input;
  if (o.ids.empty()) {
    input.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    for (const auto& a : o.ids) input += a + " ";
  }
  const std::string text = tok.decode(parse_ids(input), o.skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_detokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("detokenize", "Turn token ids into text");
  auto o = std::make_shared<Opts>();
  add_tokenizer_options(cmd, o->src);
  cmd->add_option("ids", o->ids, "Token ids (default: read from stdin)");
  cmd->add_flag("--skip-special", o->skip_special, "Leave out control tokens such as <|eot_id|>");
  cmd->callback([o] { run(*o); });
}

}  // namespace bitnet::cli
