#pragma once
// Dot products of float activations with the rows of a high-precision matrix stored in a ggml
// type: the output head (and any other F32/F16/BF16/Q8_0/Q4_0/Q6_K matrix-vector product).
// Decode reads the whole head once per token, so these kernels must run at memory bandwidth:
// they read the stored rows directly (no dequantized copy) and, for the block types, multiply
// in integers.
//
// Numerics, per weight type (what llama.cpp does, so head-type quality figures are comparable):
//   F32:        sum_i w[i] * x[i] in float.
//   F16, BF16:  x is first rounded to the weight type (ggml converts the activation to the
//               weight's type), then products accumulate in float.
//   Q8_0:       x is quantized per 32-value block: dx = amax/127, xq = nearbyint(x * 127/amax);
//               y = sum_b dw_b * dx_b * isum_b, isum_b = sum of 32 int8 x int8 products (exact).
//   Q6_K:       x is quantized per 256-value block the same way (ggml's Q8_K); per block
//               y_b = dw * dx * sum_j scale_j * sum_{16 i in j} (q6_i - 32) * xq_i,
//               q6 in [0, 63] the stored 6-bit code (value q6 - 32); the sum over j is exact.
//   Q8_0X:      Q8_0 regrouped (q8_0x.h): the same numbers; the reference gives Q8_0's bits.
//   Q6_KX:      Q6_K with 16 rows interleaved (q6_kx.h): Q6_K's integer block sums, combined in
//               block order by one fused multiply-add each, y = fma(isum_b, dw * dx, y), in
//               every variant, so all variants give the same bits (and each token the same bits
//               in a batch of any size: the kernel's 16 lanes are 16 rows, no lane is summed
//               across).
//   Q4_0:       scalar reference only: each row dequantized to float, then a float dot.
// The integer parts are exact in every variant; the float combination order differs between
// variants, so variants agree to float rounding (tests bound it), and each is deterministic and
// independent of the thread count.
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "core/cpu.h"
#include "core/dtype.h"

namespace bitnet {

class ThreadPool;

// Activations prepared once for a weight type: m rows of n values.
struct HeadActs {
  DType wtype = DType::F32;
  int64_t m = 0, n = 0;
  std::vector<float> f;       // [m][n] for F32/F16/BF16/Q4_0 (rounded to the weight type)
  std::vector<int8_t> q;      // [m][n] for Q8_0/Q6_K/Q8_0X (Q8_0X: in its superblock order)
  std::vector<float> d;       // [m][n / block] block scales for Q8_0/Q6_K/Q8_0X/Q6_KX
  // [m][n / 4] for Q8_0/Q6_K, for the AVX-512 kernels: entry g = -off * (q[4g] + .. + q[4g + 3]),
  // off = 128 (Q8_0) or 32 (Q6_K). vpdpbusd multiplies unsigned weight bytes, u = w + off; a lane
  // started at this value ends at exactly the sum of w * q over its 4 values.
  // Q8_0X: [m][n / 32], -128 * (the block's 32 values' sum), one lane per block.
  // Q6_KX: [m][n / 16], -32 * (the sub-block's 16 values' sum), broadcast to 16 rows.
  std::vector<int32_t> qoff;
};

// y[t * ld_y + r] = dot(row r, t) for rows [r0, r1) and every token t < m: the loop of every
// row-at-a-time head kernel (the dot reads the stored row and token t's prepared activations).
template <typename Dot>
inline void for_each_row_token(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t m,
                               float* y, int64_t ld_y, Dot&& dot) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    for (int64_t t = 0; t < m; ++t) y[t * ld_y + r] = dot(row, t);
  }
}

// Whether the head kernels handle weight type t (n must be a whole number of blocks).
bool head_supported(DType t);
void head_prepare(DType wtype, const float* x, int64_t m, int64_t n, HeadActs& a);

// y[t * ld_y + r] = dot(row r, activation t) for rows [r0, r1), every t < a.m, of a matrix of
// `rows` rows, `row_bytes` apart starting at w (Q6_KX: in groups of 16, q6_kx.h).
using HeadFn = void (*)(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0, int64_t r1,
                        const HeadActs& a, float* y, int64_t ld_y);

// The weight types a head variant reads, one bit per DType.
using DTypeSet = uint32_t;
constexpr DTypeSet dtype_set(std::initializer_list<DType> ts) {
  DTypeSet s = 0;
  for (DType t : ts) s |= DTypeSet{1} << static_cast<unsigned>(t);
  return s;
}

// One row of the family's table (dispatch.h).
struct HeadVariant {
  const char* name;
  CpuCaps needs;
  DTypeSet types;  // the weight types it reads
  HeadFn fn;

  bool cpu_ok() const { return cpu_has(needs); }
  bool supports(DType t) const { return (types >> static_cast<unsigned>(t)) & 1; }
};

// Every compiled variant, the scalar reference first.
std::span<const HeadVariant> head_variants();
// The fastest variant that runs here and supports t (BITNET_HEAD_KERNEL forces one by name;
// an error if it cannot run or does not support t).
const HeadVariant& select_head(DType t);

// All rows, split across the pool (may be null). y is [a.m][rows].
void head_matvec(ThreadPool* pool, const uint8_t* w, size_t row_bytes, int64_t rows, const HeadActs& a,
                 float* y);
void head_matvec_with(const HeadVariant& v, ThreadPool* pool, const uint8_t* w, size_t row_bytes,
                      int64_t rows, const HeadActs& a, float* y);

}  // namespace bitnet
