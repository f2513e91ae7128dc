#pragma once
// The CUDA inference kernels (infer_*.cu), as plain launch functions over device pointers. No fmt
// here: nvcc compiles this header. Shapes are checked by the host code that calls these
// (infer_session.cpp), which builds the error messages.
//
// Ternary weights on the device ("GPU-native" layout, built from the CPU's TNAT at upload): row n
// of a [n][k] matrix is k_pad / 16 little-endian 32-bit words (k_pad = round_up(k, 64)); word j
// covers columns 16j .. 16j+15, its byte i bits [2s, 2s+2) holding the code c = w + 1 of column
// 16j + 4s + i. So (word >> 2s) & 0x03030303 is four consecutive codes as bytes: one dp4a
// operand for the GEMV (against the activation word s) and, minus 0x01010101, one s8x4 register
// of an mma.m16n8k32 B fragment. A 16-byte load is 64 columns of one row (one activation K step).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda {
struct TernaryLt;  // infer_gemm_lt.h
}

namespace bitnet::cuda::infer {

struct DevTernary {
  const uint32_t* w = nullptr;       // [n][k_pad / 16] words
  const float* row_scale = nullptr;  // [n]
  int64_t n = 0, k = 0, k_pad = 0;
};

// Per-token int8 activations, rows of k_pad bytes (zero padding), with 1/s. (The CPU's row sums
// are not kept: the GEMV sums the codes it loads, the GEMM multiplies signed weights.)
struct DevActs {
  int8_t* q = nullptr;
  float* dq = nullptr;
  int64_t k = 0, k_pad = 0;
};

// y[m][n] (row stride ldy) = float(acc) * (row_scale[n] * dq[m]), or y += that when add: the CPU
// epilogue (quant/gemm.h gemm_scale) with the same float operations. acc is exact int32.
// m tokens; the dp4a GEMV (m <= 8: the session's single-token products), the tensor-core GEMV
// below (m <= 64: decode batches) and the int8 tensor-core GEMM (any m) give the same bits.
void ternary_gemv(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                  cudaStream_t s);
// Decode batches of up to kGemvMmaMaxTokens tokens on the tensor cores, the weight rows as the
// 16-row operand (infer_gemv_mma.cu); the same bits as ternary_gemv and the GEMM. row_groups:
// 16-row groups a block (1 or 2; 0 picks by m and n).
constexpr int kGemvMmaMaxTokens = 64;
void ternary_gemv_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                      cudaStream_t s, int row_groups = 0);
void ternary_acc_gemv_mma(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s,
                          int row_groups = 0);
// The GEMM's block tiles (tokens x weight rows). kAuto picks by m and the grid's size; the others
// force one (tests run each on every shape; any tile serves any m).
enum class GemmTile { kAuto, k32x32, k64x32, k64x128, k128x128 };
// Split-K scratch: with it, a grid of few blocks splits K into ranges over more blocks (their
// int32 sums added by atomics, exact). sums [sums_len] and counters [counters_len] must be all
// zero; every product leaves them so. splits: 0 automatic, otherwise that many ranges. Products
// that do not fit the scratch (m * n > sums_len, more tiles than counters) run unsplit.
struct GemmSplitK {
  int32_t* sums = nullptr;
  unsigned* counters = nullptr;
  size_t sums_len = 0, counters_len = 0;
  int splits = 0;
};
void ternary_gemm_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                      cudaStream_t s, GemmTile tile = GemmTile::kAuto, const GemmSplitK& sk = {});
// The product's raw accumulators (tests: int32 bit for bit against the CPU reference).
void ternary_acc_gemv(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s);
void ternary_acc_mma(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s,
                     GemmTile tile = GemmTile::kAuto, const GemmSplitK& sk = {});
// w's codes as int8 weights (-1, 0, 1): out [n][k_pad] bytes (infer_gemm_lt.h's operand).
void expand_ternary_s8(const DevTernary& w, int8_t* out, cudaStream_t s);

// The sessions' product of m tokens (infer_product.cpp): the tensor-core GEMV for 2 ..
// gemv_mma_max_tokens(), the dp4a GEMV for the rest up to 8, the GEMM beyond. All give the same
// bits; BITNET_CUDA_GEMV_MMA=N (read once) lowers the tensor-core GEMV's limit, 0 turns it off
// (for comparison). With lt (infer_gemm_lt.h), products of kTernaryLtMinTokens tokens or more
// go through cuBLASLt's int8 GEMM where it has an algorithm for the shape (the same bits).
// ternary_product_acc: the raw int32 sums (tensor parallel's column shards).
int gemv_mma_max_tokens();
void ternary_product(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                     cudaStream_t s, const GemmSplitK& sk = {}, const TernaryLt* lt = nullptr);
void ternary_product_acc(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s);

// Per token t < m: h = RMSNorm(in_t) * norm (norm may be null: no norm, h = in_t), then
// h quantized into row t of q (act_quant.h's numerics). With gated, in_t is act(gate) * up from
// gate = in + t * ld_in, up = gate + k (relu^2 when act == 0, SiLU when 1).
void norm_quant(const float* in, int64_t ld_in, int m, const float* norm, float eps, bool gated, int act,
                DevActs q, cudaStream_t s);
// The same with gated from a product's int32 sums (m x ld_acc; gate columns [0, k), up [k, 2k))
// with its row scales and its input's 1/s per token: the floats acc_epilogue would store, read
// directly (the prompt's gate|up through cuBLASLt skips the epilogue pass). acc_dq may be q.dq
// (each block reads its token's before writing it).
void norm_quant_gated_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, int64_t ld_acc,
                          int m, const float* norm, float eps, int act, DevActs q, cudaStream_t s);
// The residual step and the next norm in one: x[t] += the floats acc_epilogue would add from a
// product's sums (m x q.k, the product's rows = x's width), stored back to x, then x[t] normalized
// and quantized as norm_quant does. acc_dq may be q.dq (as above).
void norm_quant_residual_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, float* x, int m,
                             const float* norm, float eps, DevActs q, cudaStream_t s);
// The widest row, in floats, that the norm + quantization kernels and RoPE from sums take on the
// current device (each holds one row in shared memory, up to the block's opt-in limit).
int64_t row_kernels_max_floats();
// out[t][d] = RMSNorm(in_t) * norm (the head's input).
void rms_norm_rows(const float* in, int m, int64_t d, const float* norm, float eps, float* out,
                   cudaStream_t s);

// Row tok[t] of the embedding table as floats into out[t] (d values). Types: see kHead* below.
void embed_rows(const void* table, const void* table_scales, int type, int64_t d, const int32_t* tok, int m,
                float* out, cudaStream_t s);

// KV cache geometry: [slot][layer][kv head][n_ctx][head_dim] halves, keys and values apart.
struct KvGeom {
  __half* k = nullptr;
  __half* v = nullptr;
  int64_t n_layer = 0, n_head_kv = 0, n_ctx = 0, head_dim = 0;
  __host__ __device__ int64_t at(int64_t slot, int64_t il, int64_t kvh, int64_t pos) const {
    return (((slot * n_layer + il) * n_head_kv + kvh) * n_ctx + pos) * head_dim;
  }
};

// RoPE (neox or interleaved) on the queries and keys of qkv [m][q_dim + 2 kv_dim] in place, at
// each token's position pos[t] (angles pos * inv_freq[i] in double, inv_freq = theta^(-2i /
// rope_dim) from the host: the CPU's rope_angles), then its key and value into slot[t]'s cache.
void rope_kv_store(float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                   int64_t rope_dim, const double* inv_freq, bool neox, const KvGeom& kv, int64_t il,
                   cudaStream_t s);
// The same from the qkv product's int32 sums (m x (q_dim + 2 kv_dim)) with its row scales and its
// input's 1/s per token (the floats acc_epilogue would store, then rotated): the prompt's qkv
// through cuBLASLt skips the epilogue pass. Only the queries are written to qkv (the attention
// reads the keys and values from the cache).
void rope_kv_store_acc(const int32_t* acc, const float* row_scale, const float* acc_dq, float* qkv, int m,
                       const int32_t* pos, const int32_t* slot, int64_t n_head, int64_t rope_dim,
                       const double* inv_freq, bool neox, const KvGeom& kv, int64_t il, cudaStream_t s);

// Decode products that normalize and quantize their own input and apply the op after them
// (infer_decode_gemv.cu): m <= kDecodeGemvMaxTokens tokens, each block works out the whole input
// row's codes (the numerics of norm_quant, the sum of squares in a fixed order of its own), then
// its weight rows as ternary_gemv does (the same exact int32 sums and float epilogue).
constexpr int kDecodeGemvMaxTokens = 8;
struct DecodeGemvIn {
  const float* x = nullptr;  // [m][ld] floats; with splits > 1, attention_parts()' partial outputs
  int64_t ld = 0;
  int splits = 1;                    // > 1: value i of token t is the sum over the ranges
  int64_t n_head = 0, head_dim = 0;  // of x's parts ((t * n_head + h) * splits + s) * head_dim + d
  const float* norm = nullptr;       // RMSNorm weights; null: quantize the input as it is
  float eps = 0;
};
enum class DecodeEpilogue : int {
  kStore,   // y[t][n] = out
  kAdd,     // y[t][n] += out (the residual stream)
  kRopeKv,  // qkv rows: RoPE on the queries and keys as rope_kv_store, keys and values into the cache
  kGated,   // gate|up rows (n = 2 ff): y[t][i] = act(gate_i) * up_i, ff values a token
};
struct DecodeGemvOut {
  DecodeEpilogue kind = DecodeEpilogue::kStore;
  float* y = nullptr;
  int64_t ldy = 0;
  // kRopeKv: as rope_kv_store's arguments.
  const int32_t* pos = nullptr;
  const int32_t* slot = nullptr;
  const double* inv_freq = nullptr;
  int64_t n_head = 0, rope_dim = 0, il = 0;
  bool neox = true;
  KvGeom kv;
  // kGated
  int64_t ff = 0;
  int act = 0;  // 0 relu^2, 1 SiLU
  // Lab only (null in the engine): launch i's block 0 writes its globaltimer at entry, after
  // issuing its first loads, after the wait for the previous kernel, after the norm and at its end
  // into trace[1 + 5 i ..], i counted in trace[0].
  unsigned long long* trace = nullptr;
};
// Whether decode_gemv takes m tokens of k inputs on the current device (its shared memory holds
// the m codes rows).
bool decode_gemv_supported(int m, int64_t k);
void decode_gemv(const DevTernary& w, const DecodeGemvIn& in, int m, const DecodeGemvOut& out,
                 cudaStream_t s);

// Causal attention of m tokens (queries in qkv, token t at pos[t] of slot[t], keys 0..pos[t]) into
// out [m][q_dim]. Keys are split into `splits` ranges per (token, KV head): 1 computes each
// (token, KV head) in one block; more (decode) spread the keys over more blocks, with the same
// probabilities, through scratch (attention_scratch_floats). A range holds at most
// attention_max_chunk() keys.
void attention(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
               const KvGeom& kv, int64_t il, int splits, float* scratch, float* out, cudaStream_t s);
int attention_max_chunk();
// Decode with splits > 1: attention() without its last kernel, which adds the ranges' partial
// outputs; they are left in scratch for decode_gemv to add as it reads them (its DecodeGemvIn).
// Returns where they are.
const float* attention_parts(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                             const KvGeom& kv, int64_t il, int splits, float* scratch, cudaStream_t s);

// The same for a prompt chunk on tensor cores: m tokens of one sequence (slot[0]) at consecutive
// positions pos[0], pos[0] + 1, ... (the softmax's probabilities as attention()'s; head_dim as
// attention_supported says).
void attention_prompt(const float* qkv, int m, const int32_t* pos, const int32_t* slot, int64_t n_head,
                      const KvGeom& kv, int64_t il, float* out, cudaStream_t s);
size_t attention_scratch_floats(int64_t m, int64_t n_head, int64_t head_dim, int64_t n_ctx, int splits);
// 1 when head_dim and the group size are ones the kernel is built for.
bool attention_supported(int64_t head_dim, int64_t group);

// Head and embedding types on the device.
enum : int { kHeadF32 = 0, kHeadF16 = 1, kHeadBF16 = 2, kHeadQ8 = 3, kHeadQ6K = 4 };
// The head's activations prepared for its type (head_dot.h): floats rounded to the weight type,
// or int8 blocks (32 values for Q8, 256 for Q6_K) with their scales amax / 127.
struct HeadActsDev {
  float* f = nullptr;     // [m][n]
  uint16_t* h = nullptr;  // [m][n]: F16/BF16, the same values in the weight type (for cuBLASLt)
  int8_t* q = nullptr;    // [m][n]
  float* d = nullptr;     // [m][n / 32]
};
void head_prepare(int type, const float* x, int m, int64_t n, HeadActsDev a, cudaStream_t s);
// logits[t][r] = dot(W row r, activations t), t < m, r < rows (8 tokens a pass over the head;
// Q8 and Q6_K take 32 a pass when m > 8). Q8: w = int8 [rows][n] codes,
// scales = half [rows][n / 32]; Q6_K: ggml's blocks as stored (scales unused).
void head_matmul(int type, const void* w, const void* scales, int64_t rows, int64_t n, const HeadActsDev& a,
                 int m, float* logits, int64_t ld, cudaStream_t s);
// out[t] = the first index of the largest logit of row t.
void argmax_rows(const float* logits, int m, int64_t n, int64_t ld, int32_t* out, cudaStream_t s);

// The k largest logits of each of m rows (n values, row stride ld), largest first, ties to the
// lowest id (inference/sampler.h top_k_logits' list exactly): val/id [m][k]; and, where log_z is
// not null, each row's log-sum-exp in float. 1 <= k <= kTopKMax <= n; scratch of
// topk_scratch_bytes(m, n, k) bytes (infer_topk.cu).
constexpr int kTopKMax = 256;
size_t topk_scratch_bytes(int m, int64_t n, int k);
void topk_rows(const float* logits, int m, int64_t n, int64_t ld, int k, void* scratch, float* val,
               int32_t* id, float* log_z, cudaStream_t s);

// Sums `bytes` (a multiple of 16) at p with 16-byte loads into *sink: the HBM read probe.
void read_probe(const void* p, size_t bytes, unsigned long long* sink, cudaStream_t s);

}  // namespace bitnet::cuda::infer
