#pragma once
// A whole file's bytes (a prompt, a text to score, a tokenizer's JSON): one place that refuses a
// directory, a missing file and a failed read with the path in the message (an ifstream opens a
// directory and reads it as empty).
#include <string>

namespace bitnet {

// Throws bitnet::Error naming `path` (and `what` the file is for, when given).
std::string read_file(const std::string& path, const char* what = nullptr);

}  // namespace bitnet
