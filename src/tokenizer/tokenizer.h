#pragma once
// Tokenizers, exact to their reference implementations:
//  * byte-level BPE (GPT-2 / LLaMA-3): the text is split by a pre-tokenizer regex exactly as
//    tiktoken splits it, each piece's UTF-8 bytes are looked up whole (when the vocabulary says
//    so), else merged pairwise, lowest merge rank first, leftmost on ties (tiktoken / HF BPE);
//  * SentencePiece BPE as GGUF stores it (tokenizer.ggml.model = "llama"): symbols are UTF-8
//    characters, adjacent pairs whose concatenation is a token merge highest score first (llama.cpp's
//    algorithm), characters outside the vocabulary fall back to <0xNN> byte tokens, spaces are "▁".
// Loaders: tiktoken rank files, HF tokenizer.json (model BPE) and TokenizerVocab (what a GGUF
// file's tokenizer.ggml.* keys hold). Decoding gives raw bytes (UTF-8 for any output of encode);
// StreamDecoder holds back an incomplete UTF-8 sequence until a later token completes it.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bitnet {

// GGUF / llama.cpp token types.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,      // special tokens: parsed from text only with parse_special
  UserDefined = 4,  // added tokens: always parsed from text
  Unused = 5,
  Byte = 6,         // SentencePiece byte fallback <0xNN>
};

// A tokenizer as a GGUF file stores it (keys tokenizer.ggml.*). Token strings are as stored:
// GPT-2's byte->unicode alphabet for "gpt2", "▁" for spaces and <0xNN> byte tokens for "llama".
struct TokenizerVocab {
  std::string model;  // "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE)
  std::string pre;    // pre-tokenizer name for "gpt2": "llama-bpe"/"llama3" (LLaMA-3 regex),
                      // "default"/"gpt2"/"" (GPT-2 regex)
  std::vector<std::string> tokens;
  std::vector<float> scores;        // "llama": merge priority (higher first); may be empty for gpt2
  std::vector<int32_t> token_types;  // TokenType values; empty: all Normal
  std::vector<std::string> merges;   // "gpt2": "left right" in the stored alphabet, rank = index
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
  bool add_space_prefix = true;  // "llama": prepend a space to text (and after special tokens)
};

struct EncodeOptions {
  bool add_bos = true;         // prepend BOS (if the tokenizer has one)
  bool parse_special = false;  // control-token strings in the text become their ids
};

// A HF tokenizer.json (byte-level BPE) as a TokenizerVocab (tokens in the stored GPT-2 alphabet,
// added tokens Control when "special", else UserDefined; ids without a token are empty and
// Unused; BOS from a TemplateProcessing post-processor, EOS/EOT by their usual names) plus the
// pre-tokenizer settings it uses. `vocab.pre` is left empty: the caller names the pattern.
struct HfTokenizerJson {
  TokenizerVocab vocab;
  std::string pattern;  // pre-tokenizer regex
  bool ignore_merges = false;
  bool add_prefix_space = false;
};
HfTokenizerJson parse_hf_tokenizer_json(std::string_view json, const std::string& name);

class Regex;     // PCRE2 wrapper (tokenizer_regex.h)
class GgufFile;  // io/gguf.h

// The tokenizer.ggml.* keys of a GGUF file (model, pre, tokens, merges, scores, token_type,
// bos/eos/eot/unknown_token_id, add_bos_token, add_space_prefix). Throws bitnet::Error naming the
// file and key when one is missing or malformed.
TokenizerVocab tokenizer_vocab_from_gguf(const GgufFile& f);
struct GgufWriter;
// The same keys written from a vocabulary (the inverse of tokenizer_vocab_from_gguf).
void write_tokenizer_metadata(GgufWriter& w, const TokenizerVocab& v);
// A byte-level vocabulary of n_vocab ids: the 256 bytes (GPT-2 alphabet, no merges), BOS (256),
// EOS (257), then reserved control tokens; LLaMA-3's pre-tokenizer regex.
TokenizerVocab byte_level_vocab(int64_t n_vocab);
// A byte-level BPE ("gpt2") vocabulary as a Hugging Face tokenizer.json (LLaMA-3 or GPT-2
// pre-tokenizer by vocab.pre; control tokens as special added tokens; BOS added by a
// TemplateProcessing post-processor when add_bos). parse_hf_tokenizer_json reads it back.
std::string hf_tokenizer_json(const TokenizerVocab& v);

class Tokenizer {
 public:
  enum class Kind { BytePairBpe, SentencePiece };

  // Loaders. All throw bitnet::Error naming the file (and line or key) on malformed input.
  static Tokenizer from_vocab(const TokenizerVocab& v);
  // tiktoken rank file (base64 token, rank per line) with the LLaMA-3 pattern and the 256 LLaMA-3
  // special tokens at ids n..n+255 (n = number of ranks: 128000 for LLaMA-3).
  static Tokenizer from_tiktoken_file(const std::string& path);
  static Tokenizer from_tiktoken(std::string_view text, const std::string& name);
  // HF tokenizer.json with model.type "BPE": byte-level (a ByteLevel pre-tokenizer, optionally
  // after a Split regex) or SentencePiece-style (byte_fallback, "▁", Prepend normalizer or
  // Metaspace); added_tokens; BOS from a TemplateProcessing post-processor.
  static Tokenizer from_hf_json_file(const std::string& path);
  static Tokenizer from_hf_json(std::string_view json, const std::string& name);
  // By content: a JSON object -> tokenizer.json, else a tiktoken rank file.
  static Tokenizer from_file(const std::string& path);
  // The tokenizer stored in a GGUF model file.
  static Tokenizer from_gguf_file(const std::string& path);

  Tokenizer();
  ~Tokenizer();
  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opt = {}) const;
  // Raw bytes of the tokens; control tokens are skipped when skip_special. For SentencePiece with
  // add_space_prefix, the space that encode prepended is removed from the first token.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  Kind kind() const { return kind_; }
  int32_t n_vocab() const { return static_cast<int32_t>(bytes_.size()); }
  bool valid_id(int32_t id) const { return id >= 0 && id < n_vocab(); }
  // The bytes a token decodes to (control tokens: their text).
  const std::string& token_bytes(int32_t id) const;
  TokenType token_type(int32_t id) const;
  bool is_control(int32_t id) const { return token_type(id) == TokenType::Control; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t eot_id() const { return eot_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  // id of a control or user-defined token by its text, or -1.
  int32_t special_id(std::string_view text) const;
  // Ids that end generation: eos and eot where present.
  std::vector<int32_t> stop_ids() const;

 private:
  static Tokenizer build_bpe(const TokenizerVocab& v, std::string_view pattern, bool ignore_merges,
                             bool add_prefix_space, const std::string& source);
  static Tokenizer build_spm(const TokenizerVocab& v, const std::string& source);
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using StrMap = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;
  struct Merge {
    int32_t rank;
    int32_t result;
  };

  void finish();  // builds derived tables, checks invariants
  void encode_segment(std::string_view text, bool after_special, std::vector<int32_t>& out,
                      std::unordered_map<std::string_view, std::vector<int32_t>>& cache) const;
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void spm_text(std::string_view text, std::vector<int32_t>& out) const;

  Kind kind_ = Kind::BytePairBpe;
  std::vector<std::string> bytes_;  // id -> decoded bytes
  std::vector<TokenType> types_;
  std::vector<float> scores_;       // SentencePiece
  StrMap lookup_;                   // bytes (BPE) or stored text (SPM) -> id, normal tokens
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, result
  int32_t byte_ids_[256];           // BPE: single-byte token; SPM: <0xNN> token (or -1)
  std::vector<std::pair<std::string, int32_t>> specials_;  // control + user-defined, longest first
  std::array<bool, 256> special_first_{};                   // first bytes of specials_
  std::shared_ptr<const Regex> regex_;  // BPE pre-tokenizer
  bool ignore_merges_ = false;          // BPE: look a whole piece up first
  bool rank_by_bytes_ = false;          // BPE from tiktoken: pair rank = id of the pair's bytes
  bool add_prefix_space_ = false;       // BPE (HF ByteLevel add_prefix_space)
  bool add_space_prefix_ = false;       // SPM
  int32_t bos_id_ = -1, eos_id_ = -1, eot_id_ = -1, unk_id_ = -1;
  bool add_bos_ = false;
};

// Incremental detokenizer: push ids one at a time, get the text that is complete so far. Bytes
// of an incomplete UTF-8 sequence are held back until a later token completes it; flush() returns
// whatever is left (possibly an invalid tail). Concatenating every push() and flush() equals
// Tokenizer::decode of the same ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false)
      : tok_(&tok), skip_special_(skip_special) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;
};

// GPT-2's reversible byte <-> printable-unicode alphabet (UTF-8 of the code point for byte b).
const std::string& gpt2_byte_to_unicode(uint8_t b);
// Decodes a string in that alphabet to bytes; false if a character is outside it.
bool gpt2_unicode_to_bytes(std::string_view s, std::string& out);

// The LLaMA-3 pre-tokenizer regex (tiktoken / HF Split) and GPT-2's.
extern const char* const kLlama3Pattern;
extern const char* const kGpt2Pattern;

}  // namespace bitnet
