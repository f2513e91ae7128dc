#include "tokenizer/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace bitnet {
namespace {

// Unicode White_Space, as Rust's regex (tiktoken) and Python define `\s` for str: TAB..CR, NEL and
// the separators (Zs, Zl, Zp). PCRE2's UCP `\s` is the same set without U+0085.
constexpr const char* kWhiteSpaceItems = R"(\t\n\x{0B}\f\r\x{85}\p{Z})";

// Letters and numbers assigned in Unicode 15.0-16.0, which tiktoken's Rust regex classifies as
// \p{L} / \p{N} and PCRE2 10.42 (Unicode 14 tables) does not: Kawi, Nag Mundari, Kaktovik
// numerals, CJK extensions H and I, Egyptian hieroglyphs extension A, Garay, Todhri, Sunuwar,
// Kirat Rai, Ol Onal, Tulu-Tigalari, Gurung Khema, and a few Latin/Cyrillic/kana letters. Computed
// as (ICU 78 / Unicode 17 classes) minus (PCRE2 10.42 classes) minus the blocks of Unicode 17,
// whose classification tiktoken 0.14 does not have yet. Duplicates of a newer PCRE2 are harmless.
constexpr const char* kExtraLetters =
    R"(\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85})"
    R"(\x{10EC2}-\x{10EC4}\x{1123F}-\x{11240}\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5})"
    R"(\x{113B7}\x{113D1}\x{113D3}\x{11BC0}-\x{11BE0}\x{11F02}\x{11F04}-\x{11F10}\x{11F12}-\x{11F33})"
    R"(\x{1342F}\x{13441}-\x{13446}\x{13460}-\x{143FA}\x{16100}-\x{1611D}\x{16D40}-\x{16D6C}\x{18CFF})"
    R"(\x{1B132}\x{1B155}\x{1DF25}-\x{1DF2A}\x{1E030}-\x{1E06D}\x{1E4D0}-\x{1E4EB}\x{1E5D0}-\x{1E5ED})"
    R"(\x{1E5F0}\x{2B739}\x{2EBF0}-\x{2EE5D}\x{31350}-\x{323AF})";
constexpr const char* kExtraNumbers =
    R"(\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{11F50}-\x{11F59}\x{16130}-\x{16139})"
    R"(\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1D2C0}-\x{1D2D3}\x{1E4F0}-\x{1E4F9}\x{1E5F1}-\x{1E5FA})";

}  // namespace

std::string translate_pattern(std::string_view p) {
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
      } else if (n == 'p' && (p.substr(i + 1, 3) == "{L}" || p.substr(i + 1, 3) == "{N}")) {
        const std::string items = std::string(p[i + 2] == 'L' ? R"(\p{L})" : R"(\p{N})") +
                                  (p[i + 2] == 'L' ? kExtraLetters : kExtraNumbers);
        out += in_class ? items : "[" + items + "]";
        i += 3;
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
  const std::string translated = translate_pattern(pattern);
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
