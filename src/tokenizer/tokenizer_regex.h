#pragma once
// Pre-tokenizer regex on PCRE2 (UTF + UCP, JIT when available), with tiktoken's semantics:
// `\s` is Unicode White_Space (PCRE2's own \s lacks U+0085), `\p{L}` / `\p{N}` include the
// letters and numbers of Unicode 15-16 (PCRE2 10.42 has Unicode 14 tables), and invalid UTF-8
// never matches.
#include <string>
#include <string_view>
#include <vector>

namespace bitnet {

class Regex {
 public:
  // Throws bitnet::Error with PCRE2's message and offset if the pattern does not compile.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends to `pieces` the matches of the pattern in `text`, scanning left to right like
  // tiktoken's find_iter; bytes no match covers (only invalid UTF-8 with the patterns used here)
  // become pieces of their own, so the pieces always tile the text.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  const std::string& pattern() const { return pattern_; }
  bool jit() const { return jit_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

// Rewrites `\s` / `\S` to explicit Unicode White_Space classes and extends `\p{L}` / `\p{N}`
// (exposed for tests).
std::string translate_pattern(std::string_view pattern);

}  // namespace bitnet
