#pragma once
// Every `--json` output goes through nlohmann-json (strings escaped, invalid UTF-8 replaced): one
// compact object per line, keys in the order they were set.
#include <cstdio>
#include <nlohmann/json.hpp>

namespace bitnet::cli {

using ojson = nlohmann::ordered_json;

inline void print_json_line(const ojson& j) {
  const std::string s = j.dump(-1, ' ', false, ojson::error_handler_t::replace);
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

}  // namespace bitnet::cli
