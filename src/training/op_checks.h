#pragma once
// The argument checks of the trainer's ops (training/ops.h), shared by the CPU ops and their GPU
// versions (cuda/train_ops.h) so both refuse the same arguments with the same messages. Each
// fails (bitnet::Error) naming `op`, the calling function.
#include <cstdint>
#include <span>

#include "training/ops.h"

namespace bitnet::train {

// BitLinear and the fp32 matmul: T >= 0, in > 0, out > 0.
void check_linear_sizes(const char* op, int64_t T, int64_t in, int64_t out);
// BitLinear's groups: each positive, adding up to the matrix's `out` rows.
void check_linear_groups(const char* op, std::span<const int64_t> groups, int64_t out);
// The quantized product: |int8 x ternary| sums over `in` inputs stay exact in int32.
void check_int32_accumulator(const char* op, int64_t in);

// RMSNorm: T >= 0, n > 0.
void check_rmsnorm_sizes(const char* op, int64_t T, int64_t n);
// RoPE: a positive shape, T a multiple of seq, n_head of n_head_kv, rope_dim even and at most head_dim.
void check_rope(const char* op, int64_t T, const RopeShape& s);
// Attention: a positive shape, n_head a multiple of n_head_kv.
void check_attention(const char* op, const AttnShape& s);
// Gated activation: T >= 0, ff > 0.
void check_gated_sizes(const char* op, int64_t T, int64_t ff);
// Embedding: T >= 0, vocab > 0, d > 0 (the token ids are checked where they are read).
void check_embedding_sizes(const char* op, int64_t T, int64_t vocab, int64_t d);
// Cross-entropy: T >= 0, V > 0 (the target ids are checked where they are read).
void check_cross_entropy_sizes(int64_t T, int64_t V);

}  // namespace bitnet::train
