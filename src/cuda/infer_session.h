#pragma once
// The whole model on one NVIDIA GPU: weights uploaded once (infer_weights.h), a KV cache of
// max_seqs sequence slots in half, and the forward pass as kernel launches on one stream, with no
// host round trip inside a forward (the results are copied back at its end). The shape follows the
// CPU Session (inference/forward.h): forward(tokens) appends tokens to sequence 0 and returns
// logits; decode() advances several sequences by one token each in one step (batched decode, for
// a server), and decode_greedy() returns their argmax tokens computed on the device. Decode steps
// run as CUDA graphs (one per batch size, captured on first use) so launches do not dominate.
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "inference/engine.h"
#include "model/model.h"

namespace bitnet::cuda {

struct CudaSessionOptions {
  int64_t n_ctx = 4096;    // KV capacity per sequence
  int max_seqs = 1;        // sequence slots (the largest decode batch)
  int64_t n_ubatch = 256;  // prompt tokens per forward step (activation memory grows with it)
  bool graphs = true;      // decode steps as CUDA graphs
  // Decode steps of up to 8 sequences in one persistent kernel (infer_decode.h) where it supports
  // the model's shape, instead of one kernel per op. Off by default: on the H100 it is slower
  // (docs/PERFORMANCE.md). BITNET_CUDA_FUSED=1 turns it on for every session.
  bool fused_decode = false;
  // Decode steps of up to decode_gemv_max sequences (at most 8) through decode_gemv (each product's
  // kernel normalizes and quantizes its own input and applies the op after it) instead of the
  // separate norm, RoPE and product kernels. One by default: on the H100 it is faster for one
  // sequence and slower for 8, where every block normalizes all 8 rows (docs/PERFORMANCE.md).
  // BITNET_CUDA_DECODE_GEMV=0 turns it off for every session (for comparison).
  int decode_gemv_max = 1;
};

struct CudaState;  // device buffers, stream, graphs (infer_session.cpp)

class CudaSession final : public Engine {
 public:
  CudaSession(const Model& model, const CudaSessionOptions& opts);
  ~CudaSession();
  CudaSession(const CudaSession&) = delete;
  CudaSession& operator=(const CudaSession&) = delete;

  // Sequence 0, like Session::forward: logits of the last token ([n_vocab]) or of every token.
  const float* forward(std::span<const int32_t> tokens, bool all_logits = false) override {
    return forward_seq(0, tokens, all_logits);
  }
  const float* forward_seq(int seq, std::span<const int32_t> tokens, bool all_logits = false);
  // One token for each of seqs[i] (distinct slots), appended at that sequence's n_past. decode():
  // logits [B][n_vocab] on the host; decode_greedy(): the argmax of each, written to next.
  const float* decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs);
  void decode_greedy(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int32_t* next);
  // The same step, returning what sampling needs instead of the logits: each row's k largest
  // logits and their ids, largest first, ties to the lowest id (top_k_logits' list), into
  // val/id [B][k], and where log_z is not null each row's log-sum-exp [B], found on the device.
  // 1 <= k <= kDecodeTopMax.
  static constexpr int kDecodeTopMax = 256;
  void decode_top(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int k, float* val,
                  int32_t* id, float* log_z);

  // One token of sequence 0 through decode_top (its graph).
  int max_top_k() const override { return kDecodeTopMax; }
  void forward_top(int32_t token, int k, float* val, int32_t* id) override;
  int64_t n_past() const override { return n_past_[0]; }
  int64_t n_past(int seq) const { return n_past_[static_cast<size_t>(seq)]; }
  int64_t n_ctx() const override { return opts_.n_ctx; }
  void truncate(int64_t n) override { truncate_seq(0, n); }
  void truncate_seq(int seq, int64_t n);
  const Model& model() const override { return model_; }
  size_t kv_cache_bytes() const;
  // Device bytes this session allocated (weights, cache, scratch).
  size_t device_bytes() const;
  // HBM read bandwidth in GB/s: the best of `reps` timed reads of the weights a decoded token reads.
  double read_probe_gbps(int reps = 5);
  // Weight bytes one decode step reads on the device (ternary layers + head).
  size_t decode_weight_bytes() const;
  // Whether a decode step of m sequences runs as the fused kernel.
  bool fused_decode_ok(int m) const;
  bool decode_gemv_ok(int m) const;
  // Waits for queued work (timing).
  void synchronize();
  // Per-section GPU time (events between the launches; steps run eagerly, not as graphs, while
  // on): section names and milliseconds summed over the profiled steps, in forward order.
  void set_profiling(bool on);
  std::vector<std::pair<const char*, double>> profile() const;
  // The fused decode kernel's part of profile() split by what its blocks spent the time on (block
  // 0's clock between its phases), in milliseconds summed like profile()'s; empty when unused.
  std::vector<std::pair<const char*, double>> fused_profile() const;

 private:
  void step(int m, bool decode_graph, int head_rows, int head_from, bool greedy);
  void run_layers(int m, int splits, bool decode);
  void setup_fused();
  void mark(int section);
  void collect_profile();
  const Model& model_;
  CudaSessionOptions opts_;
  std::unique_ptr<CudaState> st_;
  std::vector<int64_t> n_past_;
  std::vector<float> logits_;
};

}  // namespace bitnet::cuda
