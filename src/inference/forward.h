#pragma once
// The forward pass over a KV cache. A Session owns the cache, the thread pool and the per-step
// arena; forward() runs a batch of consecutive tokens (the prompt at once through the GEMM
// kernels, or one token through the GEMV) and returns logits. A session can hold several
// independent sequences (SessionOptions::n_seq, one KV slot each): forward_batch() runs tokens of
// several sequences in one step, so the weights are read once for all of them (a server's
// continuous batching). A token's logits do not depend on what else is in its batch.
#include <cstdint>
#include <span>
#include <vector>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "inference/engine.h"
#include "model/model.h"
#include "ops/vec.h"
#include "quant/act_quant.h"

namespace bitnet {

struct SessionOptions {
  int64_t n_ctx = 4096;  // KV cache capacity in tokens
  int threads = 2;
  // KV cache in IEEE half (llama.cpp's and bitnet.cpp's default): half the memory and bandwidth,
  // and the same numerics as those tools: keys, values, queries and attention probabilities are
  // rounded to half before their products (accumulated in float). false: float everywhere.
  bool kv_f16 = true;
  // Tokens per forward step of a long prompt: activation memory grows with it (about 0.3 MB per
  // token for the 2B4T shape), while the kernels already run at full speed at 128.
  int64_t n_ubatch = 128;
  // Independent sequences, each with its own KV slot of n_ctx positions.
  int n_seq = 1;
};

// One entry of a batched step: `token` is appended to sequence `seq`; `logits`: return its logits.
struct BatchToken {
  int32_t token = 0;
  int32_t seq = 0;
  bool logits = false;
};

// Where the time of forward() goes, summed over calls while enabled: wall time of the calling
// thread per section (a parallel section includes its join, so waits show up where they happen).
struct StepProfile {
  enum Section {
    kNormQuant,
    kQkv,
    kRopeKv,
    kAttention,
    kSubNormQuant,
    kWo,
    kFfnNormQuant,
    kGateUp,
    kGateAct,
    kDown,  // o and down include the residual add (in the products' epilogue)
    kEmbed,
    kHead,
    kCount
  };
  static const char* name(int s);
  // Weight bytes each ternary/head section reads per token (0 for the others), for GB/s.
  static bool reads_weights(int s) {
    return s == kQkv || s == kWo || s == kGateUp || s == kDown || s == kHead;
  }
  double seconds[kCount] = {};
  int64_t tokens = 0, calls = 0;
};

class Session final : public Engine {
 public:
  Session(const Model& model, const SessionOptions& opts);

  // Appends `tokens` at positions n_past() .. n_past() + n - 1. Returns logits for the last token
  // ([n_vocab]) or, with all_logits, for every token ([n][n_vocab]); valid until the next call.
  // Throws bitnet::Error when the cache would overflow or a token id is out of range.
  // Sequence 0's tokens (forward_batch with seq 0).
  const float* forward(std::span<const int32_t> tokens, bool all_logits = false) override;
  // Appends each entry's token to its sequence, at that sequence's n_past(seq) onwards. A
  // sequence's entries must be consecutive and in order in the batch. Returns logits [k][n_vocab]
  // for the k entries with `logits` set, in batch order; valid until the next call. Throws
  // bitnet::Error, before any work, on an unknown sequence, a token id out of range, a sequence
  // split in two runs, or a sequence's cache overflow.
  const float* forward_batch(std::span<const BatchToken> batch);

  int n_seq() const { return opts_.n_seq; }
  int64_t n_past() const override { return n_past_[0]; }
  int64_t n_past(int seq) const { return n_past_[check_seq(seq)]; }
  int64_t n_ctx() const override { return opts_.n_ctx; }
  // Bytes of the KV cache (allocated whole when the session is made).
  size_t kv_cache_bytes() const {
    return (k16_.size() + v16_.size()) * sizeof(uint16_t) +
           (k_cache_.size() + v_cache_.size()) * sizeof(float);
  }
  // Forgets sequence 0's cached positions >= n (n <= n_past()); truncate(seq, 0) frees a slot.
  void truncate(int64_t n) override { truncate(0, n); }
  void truncate(int seq, int64_t n);
  const Model& model() const override { return model_; }
  // Per-section timing of forward() (off by default: two clock reads per section when on).
  void set_profiling(bool on) { profiling_ = on; }
  const StepProfile& profile() const { return profile_; }
  void reset_profile() { profile_ = {}; }
  ThreadPool& pool() { return pool_; }

 private:
  // rope_cs: [n][rope_dim] per token, cosines then sines of its RoPE angles (rope_angles).
  void layer(int64_t il, int64_t n, float* x, const float* rope_cs);
  // Steps of layer() over the new tokens' rows (per token; the thread count changes no result):
  // rows of `width` RMS-normed with `norm` into scratch and quantized (x is kept);
  QuantizedActs norm_quant(const float* x, int64_t n, int64_t width, const std::vector<float>& norm);
  // the same in place, the norm skipped where the model has none (the sub-norms);
  QuantizedActs sub_norm_quant(float* x, int64_t n, int64_t width, const std::vector<float>& norm);
  // RoPE on queries and keys, then keys and values into the cache.
  void rope_kv_store(int64_t il, int64_t n, float* qkv, const float* rope_cs);
  void attention(int64_t il, int64_t n, const float* qkv, float* attn);
  void attention_decode_split(int64_t il, const float* qkv, float* attn);
  // One micro-batch of forward_batch (entries already checked), logits rows from `out_row` on.
  void step(std::span<const BatchToken> batch, int64_t out_row);
  size_t check_seq(int seq) const;
  // Index of (layer, KV head, position) in the cache, which is head-major: one attention job's
  // keys and values are one contiguous run (position-major interleaved the heads' 256-byte rows,
  // and long-context decode crawled over the strided reads). Each head holds ctx_pad() positions.
  // Sequences' slots are outermost: (seq, layer, KV head, position).
  size_t kv_at(int64_t seq, int64_t il, int64_t kvh, int64_t pos) const {
    const ModelConfig& c = model_.cfg;
    return static_cast<size_t>((((seq * c.n_layer + il) * c.n_head_kv + kvh) * ctx_pad() + pos) * c.head_dim);
  }
  // Half keys are stored in tiles of kKeyTile positions, transposed (vec.h, dot_f16_tiles): value i
  // of a position is at k_at(...) + i * kKeyTile.
  size_t k_at(int64_t seq, int64_t il, int64_t kvh, int64_t pos) const {
    return kv_at(seq, il, kvh, pos - pos % kKeyTile) + static_cast<size_t>(pos % kKeyTile);
  }
  int64_t ctx_pad() const { return (opts_.n_ctx + kKeyTile - 1) / kKeyTile * kKeyTile; }

  const Model& model_;
  SessionOptions opts_;
  ThreadPool pool_;
  Arena arena_;                           // per micro-batch: the residual stream, head input
  Arena layer_arena_;                     // per layer: everything else
  std::vector<float> k_cache_, v_cache_;  // [n_seq][n_layer][n_head_kv][ctx_pad][head_dim] when !kv_f16
  std::vector<uint16_t> k16_, v16_;       // the same in half when kv_f16 (keys in tiles: k_at)
  std::vector<float> logits_;
  std::vector<int64_t> n_past_;  // per sequence
  // The micro-batch being run: its rows' sequences and positions, and its runs (a sequence's
  // consecutive rows). Set by step(), read by the layer's per-token and attention steps.
  struct Run {
    int64_t seq, pos0, row0, n;
  };
  std::span<const Run> runs_;
  const int64_t* row_seq_ = nullptr;
  const int64_t* row_pos_ = nullptr;
  bool profiling_ = false;
  StepProfile profile_;
  // Ends section s (started at *t0) and starts the next at now.
  void mark(StepProfile::Section s, int64_t& t0);
};

}  // namespace bitnet
