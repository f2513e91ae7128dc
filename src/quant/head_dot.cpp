#include "quant/head_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/dispatch.h"
#include "quant/q6_kx.h"
#include "quant/q8_0x.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86_KERNELS)
void head_rows_avx512(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0, int64_t r1,
                      const HeadActs& a, float* y, int64_t ld_y);
#endif

// Every type rows can be dequantized from: Q8_0/Q6_K have integer kernels, the rest are read
// through the float path (Q4_0 through dequantize_row in the reference); and Q6_KX.
bool head_supported(DType t) {
  return dequant_supported(t) || t == DType::Q6_KX;
}

namespace {

// Symmetric int8 quantization of one block: d = amax/127, q = nearbyint(x * 127/amax).
void quantize_block(const float* x, int64_t n, int8_t* q, float* d) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0) {
    std::memset(q, 0, static_cast<size_t>(n));
    *d = 0;
    return;
  }
  const float inv = 127.0f / amax;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::nearbyint(x[i] * inv);
    q[i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
  }
  *d = amax / 127.0f;
}

// Q8_0: sum over 32-value blocks of dw * dx * (exact int8 x int8 sum).
float dot_q8_0_ref(const uint8_t* row, const int8_t* xq, const float* xd, int64_t nb) {
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * 34;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
    int32_t isum = 0;
    for (int i = 0; i < 32; ++i) isum += qs[i] * xq[b * 32 + i];
    acc += f16_to_f32(dh) * xd[b] * static_cast<float>(isum);
  }
  return acc;
}

// Q6_K: one 256-value block's integer sum, sum_j scale_j * (sum of 16 (q6 - 32) * xq): exact.
int32_t q6_k_block_isum(const uint8_t* blk, const int8_t* xb) {
  const uint8_t* ql = blk;
  const uint8_t* qh = blk + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
  int32_t sub[16] = {};
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = (ql[64 * h + l] & 15) | ((qh[32 * h + l] >> 0 & 3) << 4);
      const int q2 = (ql[64 * h + l + 32] & 15) | ((qh[32 * h + l] >> 2 & 3) << 4);
      const int q3 = (ql[64 * h + l] >> 4) | ((qh[32 * h + l] >> 4 & 3) << 4);
      const int q4 = (ql[64 * h + l + 32] >> 4) | ((qh[32 * h + l] >> 6 & 3) << 4);
      const int8_t* x = xb + 128 * h;
      sub[8 * h + (l + 0) / 16] += (q1 - 32) * x[l];
      sub[8 * h + (l + 32) / 16] += (q2 - 32) * x[l + 32];
      sub[8 * h + (l + 64) / 16] += (q3 - 32) * x[l + 64];
      sub[8 * h + (l + 96) / 16] += (q4 - 32) * x[l + 96];
    }
  }
  int32_t bsum = 0;
  for (int j = 0; j < 16; ++j) bsum += sc[j] * sub[j];
  return bsum;
}

float q6_k_block_scale(const uint8_t* blk) {
  uint16_t dh;
  std::memcpy(&dh, blk + 208, 2);
  return f16_to_f32(dh);
}

// Q6_K: per 256-value block, dw * dx * (the block's integer sum).
float dot_q6_k_ref(const uint8_t* row, const int8_t* xq, const float* xd, int64_t nb) {
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * 210;
    acc += q6_k_block_scale(blk) * xd[b] * static_cast<float>(q6_k_block_isum(blk, xq + b * 256));
  }
  return acc;
}

// Q6_KX (head_dot.h): the same integer sums, combined block after block by one fused
// multiply-add each, acc = fma(isum, dw * dx, acc): the AVX-512 kernel's order in each lane, so
// the two give the same bits. The row is read back into Q6_K's bytes first.
float dot_q6_kx_ref(const uint8_t* row, const int8_t* xq, const float* xd, int64_t nb) {
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * 210;
    const float s = q6_k_block_scale(blk) * xd[b];
    acc = std::fma(static_cast<float>(q6_k_block_isum(blk, xq + b * 256)), s, acc);
  }
  return acc;
}

// Q8_0X: the same sum as dot_q8_0_ref in the same order (block by block), reading the regrouped
// weights and the activations in the superblock order (head_prepare): the same bits.
float dot_q8_0x_ref(const uint8_t* row, const int8_t* xq, const float* xd, int64_t nsb) {
  float acc = 0;
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* sb = row + s * kQ8xBytes;
    const int8_t* xs = xq + s * kQ8xValues;
    for (int64_t L = 0; L < kQ8xBlocks; ++L) {
      uint16_t dh;
      std::memcpy(&dh, sb + 2 * L, 2);
      int32_t isum = 0;
      for (int64_t i = 0; i < 32; ++i) {
        const int64_t o = q8x_quant_offset(32 * L + i);
        isum += (sb[kQ8xScaleBytes + o] - 128) * xs[o];
      }
      acc += f16_to_f32(dh) * xd[s * kQ8xBlocks + L] * static_cast<float>(isum);
    }
  }
  return acc;
}

void rows_ref(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0, int64_t r1, const HeadActs& a,
              float* y, int64_t ld_y) {
  const int64_t n = a.n;
  switch (a.wtype) {
    case DType::Q8_0:
      return for_each_row_token(w, row_bytes, r0, r1, a.m, y, ld_y, [&](const uint8_t* row, int64_t t) {
        return dot_q8_0_ref(row, a.q.data() + t * n, a.d.data() + t * (n / 32), n / 32);
      });
    case DType::Q6_K:
      return for_each_row_token(w, row_bytes, r0, r1, a.m, y, ld_y, [&](const uint8_t* row, int64_t t) {
        return dot_q6_k_ref(row, a.q.data() + t * n, a.d.data() + t * (n / 256), n / 256);
      });
    case DType::Q8_0X:
      return for_each_row_token(w, row_bytes, r0, r1, a.m, y, ld_y, [&](const uint8_t* row, int64_t t) {
        return dot_q8_0x_ref(row, a.q.data() + t * n, a.d.data() + t * (n / 32), n / kQ8xValues);
      });
    case DType::Q6_KX: {
      std::vector<uint8_t> row(row_bytes);
      for (int64_t r = r0; r < r1; ++r) {
        q6_kx_row_to_q6_k(w, rows, n, r, row.data());
        for (int64_t t = 0; t < a.m; ++t)
          y[t * ld_y + r] =
              dot_q6_kx_ref(row.data(), a.q.data() + t * n, a.d.data() + t * (n / 256), n / 256);
      }
      return;
    }
    default: {
      std::vector<float> row(static_cast<size_t>(n));
      for (int64_t r = r0; r < r1; ++r) {
        dequantize_row(a.wtype, w + static_cast<size_t>(r) * row_bytes, n, row.data());
        for (int64_t t = 0; t < a.m; ++t) {
          const float* x = a.f.data() + t * n;
          float acc = 0;
          for (int64_t i = 0; i < n; ++i) acc += row[static_cast<size_t>(i)] * x[i];
          y[t * ld_y + r] = acc;
        }
      }
      return;
    }
  }
}

// The reference reads every type rows can be dequantized from (head_supported).
constexpr DTypeSet kRefTypes = dtype_set(
    {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q6_K, DType::Q8_0X, DType::Q6_KX});

const HeadVariant kVariants[] = {
    {"scalar", 0, kRefTypes, rows_ref},
#if defined(BITNET_HAVE_X86_KERNELS)
    {"avx512", kCapAvx512F | kCapAvx512Bw | kCapAvx512Vl | kCapAvx512Vnni | kCapF16c,
     dtype_set({DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q6_K, DType::Q8_0X, DType::Q6_KX}),
     head_rows_avx512},
#endif
};

}  // namespace

void head_prepare(DType wtype, const float* x, int64_t m, int64_t n, HeadActs& a) {
  if (!head_supported(wtype)) fail("output head: weight type {} is not supported", dtype_name(wtype));
  const int64_t blk = dtype_info(wtype).block_elems;
  if (n % blk)
    fail("output head: row length {} is not a multiple of {}'s block of {}", n, dtype_name(wtype), blk);
  a.wtype = wtype;
  a.m = m;
  a.n = n;
  const size_t mn = static_cast<size_t>(m * n);
  const bool q6 = wtype == DType::Q6_K || wtype == DType::Q6_KX;
  if (wtype == DType::Q8_0 || q6 || wtype == DType::Q8_0X) {
    const int64_t qb = q6 ? 256 : 32;
    a.q.resize(mn);
    a.d.resize(static_cast<size_t>(m * (n / qb)));
    for (int64_t t = 0; t < m; ++t)
      for (int64_t b = 0; b < n / qb; ++b)
        quantize_block(x + t * n + b * qb, qb, a.q.data() + t * n + b * qb,
                       &a.d[static_cast<size_t>(t * (n / qb) + b)]);
    if (wtype == DType::Q8_0X) {
      // Activations in the superblock order of the weights; qoff per 32-value block.
      std::vector<int8_t> plain(a.q);
      a.qoff.resize(mn / 32);
      for (size_t s = 0; s < mn / kQ8xValues; ++s)
        for (int64_t i = 0; i < kQ8xValues; ++i)
          a.q[s * kQ8xValues + static_cast<size_t>(q8x_quant_offset(i))] =
              plain[s * kQ8xValues + static_cast<size_t>(i)];
      for (size_t b = 0; b < mn / 32; ++b) {
        int32_t sum = 0;
        for (size_t i = 0; i < 32; ++i) sum += plain[32 * b + i];
        a.qoff[b] = -128 * sum;
      }
      return;
    }
    if (wtype == DType::Q6_KX) {  // qoff per 16-value sub-block: one broadcast for 16 rows
      a.qoff.resize(mn / 16);
      for (size_t g = 0; g < mn / 16; ++g) {
        int32_t sum = 0;
        for (size_t i = 0; i < 16; ++i) sum += a.q[16 * g + i];
        a.qoff[g] = -32 * sum;
      }
      return;
    }
    const int32_t off = wtype == DType::Q8_0 ? 128 : 32;  // the weights' unsigned offset
    a.qoff.resize(mn / 4);
    for (size_t g = 0; g < mn / 4; ++g) {
      const int8_t* q = a.q.data() + 4 * g;
      a.qoff[g] = -off * (q[0] + q[1] + q[2] + q[3]);
    }
    return;
  }
  a.f.resize(mn);
  for (size_t i = 0; i < mn; ++i) {
    if (wtype == DType::F16)
      a.f[i] = f16_to_f32(f32_to_f16(x[i]));
    else if (wtype == DType::BF16)
      a.f[i] = bf16_to_f32(f32_to_bf16(x[i]));
    else
      a.f[i] = x[i];
  }
}

std::span<const HeadVariant> head_variants() {
  return kVariants;
}

const HeadVariant& select_head(DType t) {
  return select_variant(
      head_variants(), {"head dot", "BITNET_HEAD_KERNEL", forced_kernels().head, cpu_caps()},
      [&](const HeadVariant& v) { return v.supports(t); }, [](const HeadVariant&) { return true; },
      [&] { return fmt::format("weight type {}", dtype_name(t)); });
}

void head_matvec_with(const HeadVariant& v, ThreadPool* pool, const uint8_t* w, size_t row_bytes,
                      int64_t rows, const HeadActs& a, float* y) {
  BN_CHECK(v.supports(a.wtype), "head kernel {} does not support {}", v.name, dtype_name(a.wtype));
  auto work = [&](int64_t r0, int64_t r1) { v.fn(w, row_bytes, rows, r0, r1, a, y, rows); };
  // Chunks of 1,024 rows (>= 680 KB of weights) claimed dynamically (parallel_for_dynamic): the
  // head is one long memory-bound stream. (Whole Q6_KX groups of 16 rows.)
  if (pool)
    pool->parallel_for_dynamic(rows, 1024, work);
  else
    work(0, rows);
}

void head_matvec(ThreadPool* pool, const uint8_t* w, size_t row_bytes, int64_t rows, const HeadActs& a,
                 float* y) {
  head_matvec_with(select_head(a.wtype), pool, w, row_bytes, rows, a, y);
}

}  // namespace bitnet
