#pragma once
// Tensor-parallel inference: the model split over R ranks (model/tp_plan.h), one process and one
// host thread issuing every rank's kernels to its own stream. Per layer:
//  - q|k|v and gate|up are split by output rows (a rank's attention heads with their KV heads, and
//    its FFN rows); each rank runs RoPE, the KV cache and attention for its own heads;
//  - the attention output and the gate|up rows are all-gathered (exact copies), and every rank runs
//    the unchanged sub-norm + quantization kernel on the full row, so the activations' per-token
//    scale is the full row's;
//  - o and down are split by input columns: each rank multiplies its columns of the full quantized
//    row into int32 partial sums, the sums are all-reduced (int32: exact in any order) and the float
//    epilogue runs once on the total (quant/shard.h's rule), adding into every rank's copy of the
//    residual stream.
// So the logits equal the single-GPU session's (CudaSession) bit for bit, for prompts and decode,
// whatever the rank count (tested with all ranks on one GPU). The head (and the argmax) runs on
// rank 0 only, unsplit: see docs/MULTI_GPU.md.
//
// The device list picks the collective (tp_collective.h): distinct GPUs, NCCL; one GPU repeated,
// every rank on it with same-device collectives. Decode steps are captured as CUDA graphs (every
// rank's stream, NCCL's calls included), as the single-GPU session's are.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cuda/infer_session.h"
#include "inference/engine.h"
#include "model/model.h"

namespace bitnet::cuda {

struct TpState;  // infer_tp.cpp

// Throws a clear bitnet::Error unless `devices` is a usable device list for tensor parallel: not
// empty, every index a GPU of this machine, and either all the same GPU or all distinct.
void check_tp_devices(const std::vector<int>& devices);

class CudaTpSession final : public Engine {
 public:
  // Rank r runs on GPU devices[r]. opts as for CudaSession (fused_decode is not supported here).
  CudaTpSession(const Model& model, const CudaSessionOptions& opts, const std::vector<int>& devices);
  ~CudaTpSession();
  CudaTpSession(const CudaTpSession&) = delete;
  CudaTpSession& operator=(const CudaTpSession&) = delete;

  const float* forward(std::span<const int32_t> tokens, bool all_logits = false) override {
    return forward_seq(0, tokens, all_logits);
  }
  // As CudaSession's.
  const float* forward_seq(int seq, std::span<const int32_t> tokens, bool all_logits = false);
  const float* decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs);
  void decode_greedy(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int32_t* next);

  int64_t n_past() const override { return n_past_[0]; }
  int64_t n_past(int seq) const { return n_past_[static_cast<size_t>(seq)]; }
  int64_t n_ctx() const override { return opts_.n_ctx; }
  void truncate(int64_t n) override { truncate_seq(0, n); }
  void truncate_seq(int seq, int64_t n);
  const Model& model() const override { return model_; }

  int ranks() const;
  const char* collective() const;  // "NCCL" or "same-device"
  size_t kv_cache_bytes() const;   // all ranks
  size_t device_bytes() const;     // all ranks' GPUs
  // Weight bytes one decode step reads on the busiest rank (its ternary shards + the head on rank 0).
  size_t decode_weight_bytes() const;
  void synchronize();

 private:
  void step(int m, bool decode_graph, int head_rows, int head_from, bool greedy);
  void run_layers(int m, int splits);
  void head(int rows, int from, bool greedy);
  void stage_inputs(int m);
  const Model& model_;
  CudaSessionOptions opts_;
  std::unique_ptr<TpState> st_;
  std::vector<int64_t> n_past_;
  std::vector<float> logits_;
};

}  // namespace bitnet::cuda
