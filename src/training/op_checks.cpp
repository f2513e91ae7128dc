// The trainer ops' argument checks, one copy for the CPU and GPU ops (training/op_checks.h).
#include "training/op_checks.h"

#include "core/error.h"

namespace bitnet::train {

void check_linear_sizes(const char* op, int64_t T, int64_t in, int64_t out) {
  if (T < 0 || in <= 0 || out <= 0) fail("{}: bad sizes T={} in={} out={}", op, T, in, out);
}

void check_linear_groups(const char* op, std::span<const int64_t> groups, int64_t out) {
  int64_t rows = 0;
  for (const int64_t g : groups) {
    if (g <= 0) fail("{}: a group of {} rows (groups must be positive)", op, g);
    rows += g;
  }
  if (rows != out) fail("{}: the groups add up to {} rows, the matrix has {}", op, rows, out);
}

void check_int32_accumulator(const char* op, int64_t in) {
  if (in > (int64_t{1} << 31) / (128 * 127) - 1)
    fail("{}: in={} is too long for the int32 accumulator", op, in);
}

void check_rmsnorm_sizes(const char* op, int64_t T, int64_t n) {
  if (T < 0 || n <= 0) fail("{}: bad sizes T={} n={}", op, T, n);
}

void check_rope(const char* op, int64_t T, const RopeShape& s) {
  if (T < 0 || s.seq <= 0 || s.n_head <= 0 || s.n_head_kv <= 0 || s.head_dim <= 0)
    fail("{}: bad shape T={} seq={} n_head={} n_head_kv={} head_dim={}", op, T, s.seq, s.n_head, s.n_head_kv,
         s.head_dim);
  if (T % s.seq != 0) fail("{}: T={} is not a multiple of seq={}", op, T, s.seq);
  if (s.n_head % s.n_head_kv != 0)
    fail("{}: n_head={} is not a multiple of n_head_kv={}", op, s.n_head, s.n_head_kv);
  if (s.rope_dim < 0 || s.rope_dim > s.head_dim || s.rope_dim % 2 != 0)
    fail("{}: rope_dim={} must be even and at most head_dim={}", op, s.rope_dim, s.head_dim);
}

void check_attention(const char* op, const AttnShape& s) {
  if (s.batch <= 0 || s.seq <= 0 || s.n_head <= 0 || s.n_head_kv <= 0 || s.head_dim <= 0)
    fail("{}: bad shape batch={} seq={} n_head={} n_head_kv={} head_dim={}", op, s.batch, s.seq, s.n_head,
         s.n_head_kv, s.head_dim);
  if (s.n_head % s.n_head_kv != 0)
    fail("{}: n_head={} is not a multiple of n_head_kv={}", op, s.n_head, s.n_head_kv);
}

void check_gated_sizes(const char* op, int64_t T, int64_t ff) {
  if (T < 0 || ff <= 0) fail("{}: bad sizes T={} ff={}", op, T, ff);
}

void check_embedding_sizes(const char* op, int64_t T, int64_t vocab, int64_t d) {
  if (T < 0 || vocab <= 0 || d <= 0) fail("{}: bad sizes T={} vocab={} d={}", op, T, vocab, d);
}

void check_cross_entropy_sizes(int64_t T, int64_t V) {
  if (T < 0 || V <= 0) fail("cross_entropy: bad sizes T={} V={}", T, V);
}

}  // namespace bitnet::train
