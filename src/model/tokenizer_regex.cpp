#include "model/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace bitnet {
namespace {

// Unicode White_Space, as Rust's regex (tiktoken) and Python define `\s` for str: TAB..CR, NEL and
// the separators (Zs, Zl, Zp). PCRE2's UCP `\s` is the same set without U+0085.
constexpr const char* kWhiteSpaceItems = R"(\t\n\x{0B}\f\r\x{85}\p{Z})";

}  // namespace

std::string translate_whitespace_classes(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      ++i;
      if (n == 's') {
        if (in_class)
          out += kWhiteSpaceItems;
        else
          out += std::string("[") + kWhiteSpaceItems + "]";
      } else if (n == 'S') {
        if (in_class) fail("tokenizer regex: \\S inside a character class is not supported: {}", p);
        out += std::string("[^") + kWhiteSpaceItems + "]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  const std::string translated = translate_whitespace_classes(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("tokenizer regex does not compile at offset {}: {} (pattern: {})", err_off,
         reinterpret_cast<const char*>(msg), translated);
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

namespace {

// One JIT stack per thread, shared by every pattern (creating one per call costs an mmap).
struct JitContext {
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  JitContext() {
    mctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
    if (mctx && stack) pcre2_jit_stack_assign(mctx, nullptr, stack);
  }
  ~JitContext() {
    pcre2_match_context_free(mctx);
    pcre2_jit_stack_free(stack);
  }
};

}  // namespace

void Regex::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  auto* code = static_cast<pcre2_code*>(code_);
  thread_local JitContext jit_ctx;
  pcre2_match_context* mctx = jit_ ? jit_ctx.mctx : nullptr;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  struct Cleanup {
    pcre2_match_data* md;
    ~Cleanup() { pcre2_match_data_free(md); }
  } cleanup{md};
  BN_CHECK(md != nullptr, "pcre2_match_data_create failed");

  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t len = text.size();
  size_t pos = 0, covered = 0;
  while (pos < len) {
    int rc = pcre2_match(code, subject, len, pos, 0, md, mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // pathological input: the interpreter has no such limit
      rc = pcre2_match(code, subject, len, pos, PCRE2_NO_JIT, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("tokenizer regex: matching failed at byte {}: {}", pos, reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t s = ov[0], e = ov[1];
    BN_CHECK(s >= pos && e >= s && e <= len);
    if (s > covered) pieces.push_back(text.substr(covered, s - covered));
    if (e == s) {  // empty match (not possible with the patterns used): step over one character
      size_t n = s + 1;
      while (n < len && (static_cast<uint8_t>(text[n]) & 0xC0) == 0x80) ++n;
      pieces.push_back(text.substr(s, n - s));
      covered = pos = n;
      continue;
    }
    pieces.push_back(text.substr(s, e - s));
    covered = pos = e;
  }
  if (covered < len) pieces.push_back(text.substr(covered));
}

}  // namespace bitnet
