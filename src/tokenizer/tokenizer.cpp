#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <queue>

#include "core/error.h"
#include "tokenizer/tokenizer_regex.h"

namespace bitnet {

const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁"

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

struct Gpt2Alphabet {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 512> from_cp;  // code point -> byte, -1 outside the alphabet
  Gpt2Alphabet() {
    from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      append_utf8(to_unicode[static_cast<size_t>(b)], cp);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const Gpt2Alphabet& alphabet() {
  static const Gpt2Alphabet a;
  return a;
}

// Length of the UTF-8 sequence a lead byte starts, as llama.cpp's utf8_len (1 for stray bytes).
size_t utf8_len(uint8_t c) {
  static constexpr size_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    const size_t j = s.find(from, i);
    if (j == std::string_view::npos) break;
    out.append(s.substr(i, j - i));
    out.append(to);
    i = j + from.size();
  }
  out.append(s.substr(i));
  return out;
}

bool parse_byte_token(std::string_view t, uint8_t& b) {  // "<0xNN>"
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return false;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return false;
  b = static_cast<uint8_t>(hi * 16 + lo);
  return true;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

const std::string& gpt2_byte_to_unicode(uint8_t b) { return alphabet().to_unicode[b]; }

bool gpt2_unicode_to_bytes(std::string_view s, std::string& out) {
  const auto& a = alphabet();
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c, n = 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = (c & 0x1Fu) << 6 | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu), n = 2;
    } else {
      return false;  // every code point of the alphabet is below U+0800
    }
    if (cp >= a.from_cp.size() || a.from_cp[cp] < 0) return false;
    out += static_cast<char>(a.from_cp[cp]);
    i += n;
  }
  return true;
}

Tokenizer::Tokenizer() { std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1); }
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (!valid_id(id)) fail("token id {} is out of range (vocabulary has {} tokens)", id, n_vocab());
  return bytes_[static_cast<size_t>(id)];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (!valid_id(id)) fail("token id {} is out of range (vocabulary has {} tokens)", id, n_vocab());
  return types_[static_cast<size_t>(id)];
}

int32_t Tokenizer::special_id(std::string_view text) const {
  for (const auto& [s, id] : specials_)
    if (s == text) return id;
  return -1;
}

std::vector<int32_t> Tokenizer::stop_ids() const {
  std::vector<int32_t> v;
  if (eos_id_ >= 0) v.push_back(eos_id_);
  if (eot_id_ >= 0 && eot_id_ != eos_id_) v.push_back(eot_id_);
  return v;
}

// ---- construction -------------------------------------------------------------------------------

void Tokenizer::finish() {
  const auto n = static_cast<int32_t>(bytes_.size());
  BN_CHECK(types_.size() == bytes_.size());
  for (int32_t* id : {&bos_id_, &eos_id_, &eot_id_, &unk_id_})
    if (*id >= n) fail("tokenizer: special token id {} is out of range (vocabulary has {} tokens)", *id, n);
  specials_.clear();
  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = types_[static_cast<size_t>(id)];
    if ((t == TokenType::Control || t == TokenType::UserDefined) && !bytes_[static_cast<size_t>(id)].empty())
      specials_.emplace_back(bytes_[static_cast<size_t>(id)], id);
  }
  // Longest first, so that a special that is a prefix of another never wins over it.
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  special_first_.fill(false);
  for (const auto& sp : specials_) special_first_[static_cast<uint8_t>(sp.first[0])] = true;
  for (int b = 0; b < 256; ++b)
    if (byte_ids_[b] < 0 && unk_id_ < 0)
      fail("tokenizer: the vocabulary has no token for byte 0x{:02X} and no unknown token", b);
}

Tokenizer Tokenizer::build_bpe(const TokenizerVocab& v, std::string_view pattern, bool ignore_merges,
                               bool add_prefix_space, const std::string& source) {
  Tokenizer t;
  t.kind_ = Kind::BytePairBpe;
  const size_t n = v.tokens.size();
  if (n == 0) fail("{}: the tokenizer has no tokens", source);
  if (!v.token_types.empty() && v.token_types.size() != n)
    fail("{}: {} token types for {} tokens", source, v.token_types.size(), n);
  t.bytes_.resize(n);
  t.types_.resize(n);
  StrMap stored;  // token as stored -> id
  stored.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const TokenType type = v.token_types.empty() ? TokenType::Normal : static_cast<TokenType>(v.token_types[i]);
    t.types_[i] = type;
    const std::string& s = v.tokens[i];
    stored[s] = id;
    if (type == TokenType::Control || type == TokenType::UserDefined) {
      t.bytes_[i] = s;  // stored as plain text
      continue;
    }
    std::string b;
    if (!gpt2_unicode_to_bytes(s, b)) {
      t.bytes_[i] = s;  // not in the byte alphabet: no piece can produce it
      continue;
    }
    if (type == TokenType::Unused && b.empty()) continue;
    t.bytes_[i] = b;
    t.lookup_[b] = id;
  }
  t.merges_.reserve(v.merges.size());
  for (size_t k = 0; k < v.merges.size(); ++k) {
    const std::string& m = v.merges[k];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
      fail("{}: merge {} ('{}') is not 'left right'", source, k, m);
    const std::string_view l(m.data(), sp), r(m.data() + sp + 1, m.size() - sp - 1);
    const auto il = stored.find(l), ir = stored.find(r);
    const auto res = stored.find(std::string(l) + std::string(r));
    if (il == stored.end() || ir == stored.end() || res == stored.end())
      fail("{}: merge {} ('{}') names a token that is not in the vocabulary", source, k, m);
    t.merges_.try_emplace(pair_key(il->second, ir->second), Merge{static_cast<int32_t>(k), res->second});
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const auto it = t.lookup_.find(std::string_view(&c, 1));
    t.byte_ids_[b] = it == t.lookup_.end() ? -1 : it->second;
  }
  t.regex_ = std::make_shared<const Regex>(pattern);
  t.ignore_merges_ = ignore_merges;
  t.add_prefix_space_ = add_prefix_space;
  t.bos_id_ = v.bos_id, t.eos_id_ = v.eos_id, t.eot_id_ = v.eot_id, t.unk_id_ = v.unk_id;
  t.add_bos_ = v.add_bos;
  t.finish();
  return t;
}

Tokenizer Tokenizer::build_spm(const TokenizerVocab& v, const std::string& source) {
  Tokenizer t;
  t.kind_ = Kind::SentencePiece;
  const size_t n = v.tokens.size();
  if (n == 0) fail("{}: the tokenizer has no tokens", source);
  if (!v.token_types.empty() && v.token_types.size() != n)
    fail("{}: {} token types for {} tokens", source, v.token_types.size(), n);
  if (!v.scores.empty() && v.scores.size() != n) fail("{}: {} scores for {} tokens", source, v.scores.size(), n);
  t.bytes_.resize(n);
  t.types_.resize(n);
  t.scores_ = v.scores.empty() ? std::vector<float>(n, 0.0f) : v.scores;
  t.unk_id_ = v.unk_id;
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const TokenType type = v.token_types.empty() ? TokenType::Normal : static_cast<TokenType>(v.token_types[i]);
    t.types_[i] = type;
    const std::string& s = v.tokens[i];
    t.lookup_[s] = id;  // as llama.cpp: every token, the last of equal texts wins
    uint8_t b = 0;
    if (type == TokenType::Byte && parse_byte_token(s, b)) {
      t.bytes_[i] = std::string(1, static_cast<char>(b));
      t.byte_ids_[b] = id;
    } else if (type == TokenType::Control || type == TokenType::UserDefined) {
      t.bytes_[i] = s;
    } else {
      t.bytes_[i] = replace_all(s, kSpmSpace, " ");
      if (type == TokenType::Unknown && t.unk_id_ < 0) t.unk_id_ = id;
    }
  }
  t.add_space_prefix_ = v.add_space_prefix;
  t.bos_id_ = v.bos_id, t.eos_id_ = v.eos_id, t.eot_id_ = v.eot_id;
  t.add_bos_ = v.add_bos;
  t.finish();
  return t;
}

Tokenizer Tokenizer::from_vocab(const TokenizerVocab& v) {
  const std::string source = fmt::format("tokenizer (model '{}')", v.model);
  if (v.model == "llama") return build_spm(v, source);
  if (v.model == "gpt2") {
    const std::string& p = v.pre;
    if (p == "llama-bpe" || p == "llama3" || p == "llama-v3")
      return build_bpe(v, kLlama3Pattern, /*ignore_merges=*/true, false, source);
    if (p.empty() || p == "default" || p == "gpt2" || p == "gpt-2")
      return build_bpe(v, kGpt2Pattern, /*ignore_merges=*/false, false, source);
    fail("{}: unsupported pre-tokenizer '{}' (supported: llama-bpe, llama3, default, gpt2)", source, p);
  }
  fail("tokenizer: unsupported model '{}' (supported: gpt2, llama)", v.model);
}

// ---- encoding -----------------------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opt) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (opt.add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;
  bool after_special = true;  // SentencePiece: a space prefix goes at the start and after specials
  size_t seg = 0;
  if (!specials_.empty()) {
    for (size_t i = 0; i < text.size();) {
      if (!special_first_[static_cast<uint8_t>(text[i])]) {
        ++i;
        continue;
      }
      int32_t hit = -1;
      size_t hit_len = 0;
      for (const auto& [s, id] : specials_) {
        if (s.size() > text.size() - i) continue;
        if (!opt.parse_special && types_[static_cast<size_t>(id)] == TokenType::Control) continue;
        if (text[i] == s[0] && std::memcmp(text.data() + i, s.data(), s.size()) == 0) {
          hit = id, hit_len = s.size();
          break;
        }
      }
      if (hit < 0) {
        ++i;
        continue;
      }
      if (i > seg) encode_segment(text.substr(seg, i - seg), after_special, out, cache);
      out.push_back(hit);
      after_special = true;
      i += hit_len;
      seg = i;
    }
  }
  if (seg < text.size()) encode_segment(text.substr(seg), after_special, out, cache);
  return out;
}

void Tokenizer::encode_segment(std::string_view text, bool after_special, std::vector<int32_t>& out,
                               std::unordered_map<std::string_view, std::vector<int32_t>>& cache) const {
  if (kind_ == Kind::SentencePiece) {
    std::string s;
    if (add_space_prefix_ && after_special) s += ' ';
    s += text;
    spm_text(replace_all(s, " ", kSpmSpace), out);
    return;
  }
  std::string prefixed;
  if (add_prefix_space_ && text[0] != ' ') {
    // The pieces of `prefixed` cannot be cached: they do not outlive this call.
    prefixed = " " + std::string(text);
    std::vector<std::string_view> pieces;
    regex_->split(prefixed, pieces);
    for (auto p : pieces) bpe_piece(p, out);
    return;
  }
  std::vector<std::string_view> pieces;
  regex_->split(text, pieces);
  for (auto p : pieces) {
    if (p.size() == 1 && byte_ids_[static_cast<uint8_t>(p[0])] >= 0) {
      out.push_back(byte_ids_[static_cast<uint8_t>(p[0])]);
      continue;
    }
    if (ignore_merges_) {
      const auto it = lookup_.find(p);
      if (it != lookup_.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    const auto c = cache.find(p);
    if (c != cache.end()) {
      out.insert(out.end(), c->second.begin(), c->second.end());
      continue;
    }
    const size_t before = out.size();
    bpe_piece(p, out);
    cache.emplace(p, std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
  }
}

// Byte-level BPE of one piece: start from single bytes, repeatedly merge the adjacent pair of
// lowest rank (leftmost on ties) until no adjacent pair has a merge. With a tiktoken table (rank of
// a pair = rank of its concatenated bytes) this is tiktoken's _byte_pair_merge; with merges from
// tokenizer.json / GGUF (rank = index in the merge list) it is HF's BPE. A heap with lazy invalidation keeps long pieces O(n log n).
void Tokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const auto it = lookup_.find(piece);
    if (it != lookup_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<int32_t> id(piece.size()), prev(piece.size()), next(piece.size());
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = byte_ids_[static_cast<uint8_t>(piece[static_cast<size_t>(i)])];
    id[static_cast<size_t>(i)] = b >= 0 ? b : unk_id_;
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank, left, right, left_id, right_id, result;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto consider = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = next[static_cast<size_t>(l)];
    if (r < 0) return;
    const int32_t a = id[static_cast<size_t>(l)], b = id[static_cast<size_t>(r)];
    if (rank_by_bytes_) {  // tiktoken: the rank of the pair is the rank (= id) of its bytes
      const int32_t end = next[static_cast<size_t>(r)] >= 0 ? next[static_cast<size_t>(r)] : n;
      const auto it = lookup_.find(piece.substr(static_cast<size_t>(l), static_cast<size_t>(end - l)));
      if (it != lookup_.end()) heap.push(Cand{it->second, l, r, a, b, it->second});
      return;
    }
    const auto it = merges_.find(pair_key(a, b));
    if (it != merges_.end()) heap.push(Cand{it->second.rank, l, r, a, b, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const auto l = static_cast<size_t>(c.left), r = static_cast<size_t>(c.right);
    if (id[l] != c.left_id || next[l] != c.right || id[r] != c.right_id) continue;  // stale
    id[l] = c.result;
    id[r] = -2;  // dead
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = c.left;
    consider(prev[l]);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) out.push_back(id[static_cast<size_t>(i)]);
}

// llama.cpp's SentencePiece BPE (llm_tokenizer_spm): symbols are UTF-8 characters; the adjacent
// pair whose concatenation is a token of highest score merges first (leftmost on ties); a final
// symbol that is no token falls back to its <0xNN> byte tokens.
void Tokenizer::spm_text(std::string_view text, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t prev, next;
    uint32_t start, len;
  };
  std::vector<Sym> sym;
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min(utf8_len(static_cast<uint8_t>(text[off])), text.size() - off);
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back(Sym{i - 1, i + 1, static_cast<uint32_t>(off), static_cast<uint32_t>(len)});
    off += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  std::priority_queue<Bigram> queue;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Sym& a = sym[static_cast<size_t>(l)];
    const Sym& b = sym[static_cast<size_t>(r)];
    const std::string_view s = text.substr(a.start, a.len + b.len);
    const auto it = lookup_.find(s);
    if (it == lookup_.end()) return;
    queue.push(Bigram{scores_[static_cast<size_t>(it->second)], l, r, a.len + b.len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& l = sym[static_cast<size_t>(bg.left)];
    Sym& r = sym[static_cast<size_t>(bg.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;  // outdated
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
    const Sym& s = sym[static_cast<size_t>(i)];
    const std::string_view piece = text.substr(s.start, s.len);
    const auto it = lookup_.find(piece);
    if (it != lookup_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (char c : piece) {
      const int32_t b = byte_ids_[static_cast<uint8_t>(c)];
      out.push_back(b >= 0 ? b : unk_id_);
    }
  }
}

// ---- decoding -----------------------------------------------------------------------------------

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  StreamDecoder d(*this, skip_special);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  out += d.flush();
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_->is_control(id)) return {};
  const std::string& b = tok_->token_bytes(id);
  if (first_) {
    first_ = false;
    // SentencePiece: drop the space encode prepended (llama.cpp strips the first token's).
    if (tok_->kind() == Tokenizer::Kind::SentencePiece && tok_->add_space_prefix() && !b.empty() && b[0] == ' ' &&
        tok_->token_type(id) != TokenType::Byte) {
      pending_.append(b, 1);
    } else {
      pending_ += b;
    }
  } else {
    pending_ += b;
  }
  // Hold back the tail if it is the start of a UTF-8 sequence that is not complete yet.
  const size_t n = pending_.size();
  size_t cut = n;
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const auto c = static_cast<uint8_t>(pending_[n - k]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = c >= 0xF8 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (need > k) cut = n - k;
    break;
  }
  std::string ready = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return ready;
}

std::string StreamDecoder::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace bitnet
