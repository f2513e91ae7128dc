// `bitnet detokenize`: token ids (arguments, or stdin: numbers separated by spaces/commas, or
// {"ids": [...]}) -> text, written exactly as decoded (no newline added).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

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

int32_t checked_id(long long v, const std::string& text) {
  if (v < INT32_MIN || v > INT32_MAX) fail("detokenize: token id {} is out of range", text);
  return static_cast<int32_t>(v);
}

// `bitnet tokenize --json` output ({"ids": [...]}) or a JSON array, read with nlohmann-json.
std::vector<int32_t> parse_json_ids(const std::string& s) {
  const nlohmann::json j = nlohmann::json::parse(s, nullptr, false);
  if (j.is_discarded()) fail("detokenize: the ids are not valid JSON");
  const nlohmann::json& arr = j.is_object() && j.contains("ids") ? j["ids"] : j;
  if (!arr.is_array()) fail("detokenize: expected {{\"ids\": [...]}} or a JSON array of token ids");
  std::vector<int32_t> ids;
  for (const auto& e : arr) {
    if (!e.is_number_integer()) fail("detokenize: token id {} is not an integer", e.dump());
    ids.push_back(checked_id(e.get<long long>(), e.dump()));
  }
  return ids;
}

// Ids as plain numbers separated by spaces or commas, or JSON.
std::vector<int32_t> parse_ids(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (s[first] == '{' || s[first] == '[')) return parse_json_ids(s);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t j = i + 1;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      const std::string num = s.substr(i, j - i);
      if (num == "-" || num.size() > 11) fail("detokenize: invalid token id '{}'", num);
      ids.push_back(checked_id(std::stoll(num), num));
      i = j;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',') {
      ++i;
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
