#pragma once
// The fused decode step: every layer of a decode step (1 - 8 tokens) in one persistent kernel,
// one block per SM, with grid-wide barriers between the phases that need a whole row of the
// previous phase (qkv | attention scores | attention values | o | gate|up | down).
//
// Why: a decode step of the 2B4T shape reads 17 MB of ternary weights per layer, about 6 us at
// the HBM's rate, but as separate kernels (norm + quantize, GEMV, RoPE, attention ...) each
// layer costs 11 launches whose latencies add up to several times that. Here each block owns a
// fixed slice of rows of every matrix and streams its slices into a ring of shared-memory slots
// with bulk asynchronous copies (cp.async.bulk, completion on an mbarrier) as soon as a slot is
// free, so the next matrices' weights arrive while the block waits at a barrier or computes
// attention. Each block quantizes the whole input row itself (the same numbers in every block)
// instead of waiting for a separate normalization pass.
//
// Numerics: the CPU's, as in the per-op kernels: exact int32 products (signed codes dp4a with
// int8 activations), then float(acc) * (row_scale * dq); RMSNorm with its sum of squares in
// double; RoPE angles in double; attention over the half KV cache with the split-range softmax
// of attention() (the probabilities of the one-range softmax, the partial outputs summed in
// range order). Compiled with -fmad=false like the other inference kernels.
#include <cstddef>
#include <cstdint>

#include "cuda/infer_kernels.h"

namespace bitnet::cuda::infer {

// One layer's weights on the device (a device array of these is the kernel's input).
struct DecodeLayer {
  DevTernary qkv, o, gate_up, down;  // gate_up: gate rows [0, ff), up rows [ff, 2 ff)
  const float* attn_norm = nullptr;
  const float* attn_sub_norm = nullptr;  // null: no sub-norm
  const float* ffn_norm = nullptr;
  const float* ffn_sub_norm = nullptr;  // null: no sub-norm
};

struct DecodeShape {
  int64_t n_layer = 0, d = 0, n_head = 0, n_head_kv = 0, head_dim = 0, ff = 0, rope_dim = 0, n_ctx = 0;
};

// How a step of m tokens runs: whether the fused kernel takes it (else `why` says what it does
// not support), its grid, shared memory and ring, and the attention split.
struct DecodePlan {
  bool ok = false;
  const char* why = "";
  int m = 0, blocks = 0, slots = 0, splits = 0;
  int64_t slot_bytes = 0, work_bytes = 0;
  size_t smem = 0;
  int pieces[4] = {0, 0, 0, 0};  // ring items per block of qkv, o, gate|up, down
};
DecodePlan plan_fused_decode(const DecodeShape& s, int m, int sms, size_t smem_optin);
constexpr int kFusedMaxTokens = 8;

// Device scratch of a plan: scores [m][n_head][n_ctx], partial outputs [m][n_head][splits][head_dim],
// and counters [m][n_head_kv] (zero between steps: the kernel leaves them zero).
size_t fused_scores_floats(const DecodeShape& s, const DecodePlan& p);
size_t fused_parts_floats(const DecodeShape& s, const DecodePlan& p);

struct DecodeArgs {
  const DecodeLayer* layers = nullptr;  // device array [n_layer]
  DecodeShape shape;
  float eps = 0;
  int act = 0;  // 0 relu^2, 1 SiLU
  bool neox = true;
  const double* inv_freq = nullptr;  // [rope_dim / 2]
  KvGeom kv;
  const int32_t* pos = nullptr;   // [m]
  const int32_t* slot = nullptr;  // [m]
  float* x = nullptr;             // [m][d]: the residual stream, in and out
  float* qkv = nullptr;           // [m][q_dim + 2 kv_dim]
  float* attn = nullptr;          // [m][q_dim]
  float* h = nullptr;             // [m][ff]: act(gate) * up
  float* scores = nullptr;
  float* parts = nullptr;
  unsigned* counters = nullptr;
  unsigned* barrier = nullptr;  // [2], zero before the first step
  // Profiling (null: off): SM cycles of block 0 per part of the step, added up (kDecodeTimers).
  unsigned long long* timing = nullptr;
};

// The parts `timing` splits a step into: quantization of the rows, waiting for a slot's weights,
// the products, grid barriers (waiting for the slowest block), attention (all of it with one key
// range; its scores with more), attention values (more than one key range).
constexpr int kDecodeTimers = 6;
extern const char* const kDecodeTimerNames[kDecodeTimers];

// Every layer of one decode step, as planned (p.ok). Reads x (the embedded tokens) and leaves the
// last layer's residual stream in it.
void fused_decode(const DecodeArgs& a, const DecodePlan& p, cudaStream_t s);

}  // namespace bitnet::cuda::infer
