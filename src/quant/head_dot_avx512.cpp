// AVX-512 (F, BW, VL, VNNI, F16C) head kernels; numerics in head_dot.h. Each reads its rows once,
// straight from the stored (usually mmap'd) bytes: decode is bound by these reads.
#include <immintrin.h>

#include <cstring>

#include "core/cpu.h"
#include "quant/head_dot.h"
#include "quant/q8_0x.h"
#include "quant/stream_prefetch.h"

namespace bitnet {

namespace {

// Each read stream is prefetched ahead into L2 and L1 (stream_prefetch.h). Decode reads the head
// once per token and the hardware prefetchers alone leave one core's stream short of its
// bandwidth (with 2 KiB T0 alone, measured with 2 threads on Sapphire Rapids: F16 20 -> 24 GB/s,
// Q8_0 13 -> 18, Q6_K 14 -> 21; docs/PERFORMANCE.md).
inline void prefetch(const uint8_t* p) {
  prefetch_stream(p);
}

// Loads 16 stored values starting at p as floats (masked for a tail of fewer than 16).
template <DType T>
inline __m512 load16(const uint8_t* p, __mmask16 k) {
  if constexpr (T == DType::F32) {
    return _mm512_maskz_loadu_ps(k, p);
  } else if constexpr (T == DType::F16) {
    // A full mask is a plain load: the masked form measured 2-5 % slower on the weight stream.
    if (k == 0xFFFF) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
  } else {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
  }
}

// Four rows at a time share each activation load; four independent accumulators hide the FMA
// latency. Rows stream from memory, the activation row stays in L1. The four rows are one
// contiguous block read as four interleaved streams, so the far (L2) prefetch goes to the same
// position in the next block's four rows; a fixed distance ahead of each row would mostly land
// in the rows being read (an F16 row of the 2B4T head is 5 KiB) and leave the first KiBs of each
// next row to demand misses.
//
// Several tokens (batched decode) run TT = 4 at a time over the same four rows: each weight
// vector is loaded and converted once for the four tokens (16 accumulators), so the conversions no
// longer set the pace. Each (row, token) sum is the same chain of fmas in the same order as with
// one token, so a token's logits do not depend on the batch.
template <DType T, int TT>
inline void rows4_tokens(const uint8_t* w0, size_t row_bytes, const float* x, int64_t n, bool prefetch_rows,
                         float* y, int64_t ld_y) {
  constexpr int64_t es = T == DType::F32 ? 4 : 2;
  const int64_t n16 = n / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - n16)) - 1);
  const uint8_t* w1 = w0 + row_bytes;
  const uint8_t* w2 = w1 + row_bytes;
  const uint8_t* w3 = w2 + row_bytes;
  __m512 acc[TT][4];
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[t][j] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n16; i += 16) {
    if (prefetch_rows && (i * es) % 64 == 0) {
      const uint8_t* next = w0 + 4 * row_bytes + i * es;
      for (int j = 0; j < 4; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(w0 + j * row_bytes + i * es + kStreamPrefetchL1),
                     _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(next + j * row_bytes), _MM_HINT_T1);
      }
    }
    const __m512 v0 = load16<T>(w0 + i * es, 0xFFFF), v1 = load16<T>(w1 + i * es, 0xFFFF),
                 v2 = load16<T>(w2 + i * es, 0xFFFF), v3 = load16<T>(w3 + i * es, 0xFFFF);
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * n + i);
      acc[t][0] = _mm512_fmadd_ps(v0, xv, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(v1, xv, acc[t][1]);
      acc[t][2] = _mm512_fmadd_ps(v2, xv, acc[t][2]);
      acc[t][3] = _mm512_fmadd_ps(v3, xv, acc[t][3]);
    }
  }
  if (tail) {
    const __m512 v0 = load16<T>(w0 + n16 * es, tail), v1 = load16<T>(w1 + n16 * es, tail),
                 v2 = load16<T>(w2 + n16 * es, tail), v3 = load16<T>(w3 + n16 * es, tail);
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(tail, x + t * n + n16);
      acc[t][0] = _mm512_fmadd_ps(v0, xv, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(v1, xv, acc[t][1]);
      acc[t][2] = _mm512_fmadd_ps(v2, xv, acc[t][2]);
      acc[t][3] = _mm512_fmadd_ps(v3, xv, acc[t][3]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) y[t * ld_y + j] = _mm512_reduce_add_ps(acc[t][j]);
}

template <DType T>
void rows_float(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const HeadActs& a, float* y,
                int64_t ld_y) {
  constexpr int64_t es = T == DType::F32 ? 4 : 2;
  const int64_t n = a.n, n16 = n / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - n16)) - 1);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint8_t* w0 = w + static_cast<size_t>(r) * row_bytes;
    int64_t t = 0;
    for (; t + 4 <= a.m; t += 4)
      rows4_tokens<T, 4>(w0, row_bytes, a.f.data() + t * n, n, t == 0, y + t * ld_y + r, ld_y);
    for (; t < a.m; ++t)
      rows4_tokens<T, 1>(w0, row_bytes, a.f.data() + t * n, n, t == 0, y + t * ld_y + r, ld_y);
  }
  for (; r < r1; ++r) {
    const uint8_t* w0 = w + static_cast<size_t>(r) * row_bytes;
    for (int64_t t = 0; t < a.m; ++t) {
      const float* x = a.f.data() + t * n;
      __m512 a0 = _mm512_setzero_ps();
      for (int64_t i = 0; i < n16; i += 16)
        a0 = _mm512_fmadd_ps(load16<T>(w0 + i * es, 0xFFFF), _mm512_loadu_ps(x + i), a0);
      if (tail)
        a0 = _mm512_fmadd_ps(load16<T>(w0 + n16 * es, tail), _mm512_maskz_loadu_ps(tail, x + n16), a0);
      y[t * ld_y + r] = _mm512_reduce_add_ps(a0);
    }
  }
}

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Q8_0: two 32-value blocks per 512-bit step. vpdpbusd takes the weights as unsigned bytes:
// w ^ 0x80 is w + 128 for every s8 w, and the sum starts at qoff = -128 * (the 4 activations'
// sum, head_prepare), so each lane ends at the exact sum of w * x over its 4 values (|sum| <
// 2^17); the 16 partial sums are scaled by dw * dx of their block in float. The two blocks' half
// scales sit at bytes 0 and 34 of the pair: one vpermw spreads them to lanes 0-7 / 8-15 straight
// from the loaded bytes. (The sign trick before, |w| x sign(w) * x, took 2 more vector ops per
// pair; the sums are the same integers, so the results are the same bits. On the device's Xeon:
// hot 1 thread 22.7 -> 25.4 GB/s, tg64 with this head 29.1 -> 30.2 and 25.2 -> 27.8 t/s. Loading
// dx already spread, instead of the vpermps below, was slower there.)
float dot_q8_0(const uint8_t* row, const int8_t* xq, const int32_t* qoff, const float* xd, int64_t nb) {
  const __m512i spread = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                          17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i pair_idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
  auto pair = [&](int64_t b, __m512 acc) {
    const uint8_t* b0 = row + b * 34;
    const uint8_t* b1 = b0 + 34;
    const __m512i w = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2)), 1);
    const __m512i isum = _mm512_dpbusd_epi32(_mm512_loadu_si512(qoff + b * 8), _mm512_xor_si512(w, bias),
                                             _mm512_loadu_si512(xq + b * 32));
    const __m256i dw = _mm512_castsi512_si256(_mm512_permutexvar_epi16(spread, _mm512_loadu_si512(b0)));
    const __m512 dx = _mm512_permutexvar_ps(
        pair_idx,
        _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(xd + b)))));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_cvtph_ps(dw), dx), acc);
  };
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    prefetch(row + b * 34);
    prefetch(row + b * 34 + 64);
    prefetch(row + b * 34 + 128);
    acc0 = pair(b, acc0);
    acc1 = pair(b + 2, acc1);
  }
  for (; b + 2 <= nb; b += 2) acc0 = pair(b, acc0);
  float tail = 0;
  if (b < nb) {  // an odd last block
    const uint8_t* b0 = row + b * 34;
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
    const __m256i isum =
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wq), _mm256_sign_epi8(xv, wq));
    const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(half_at(b0) * xd[b]));
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    tail = _mm_cvtss_f32(v);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail;
}

void rows_q8_0(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const HeadActs& a, float* y,
               int64_t ld_y) {
  const int64_t n = a.n, nb = n / 32, lanes = n / 4;
  for_each_row_token(w, row_bytes, r0, r1, a.m, y, ld_y, [&](const uint8_t* row, int64_t t) {
    return dot_q8_0(row, a.q.data() + t * n, a.qoff.data() + t * lanes, a.d.data() + t * nb, nb);
  });
}

// Q6_K: one 128-value half of a block at a time. The 64 low-nibble values (ql & 15 with qh bits
// 0-1 / 2-3) and the 64 high-nibble values (ql >> 4 with qh bits 4-5 / 6-7) are each one 64-byte
// vector of u8 codes in [0, 63], in the order of the values (see dequant.h), so each meets a
// contiguous 64-byte run of xq in one vpdpbusd, started at qoff = -32 * (the 4 activations' sum):
// lane l then holds the exact sum of (code - 32) * x over values 4l..4l+3 (|sum| <= 4 * 32 * 127 <
// 2^15). The two vectors' lanes are packed to 16 bits (no saturation) and multiplied by their
// sub-block scales in one vpdpwssd into the block's int32 sums, which are converted and scaled by
// dw * dx once per block: the block's integer part is exact, as in the reference. (Before: each
// lane converted to float and multiplied by its own float scale, and a separate -32 * scale *
// bsum correction: 36 -> 26 vector ops per block.)
//
// Unpacking, 6 vector ops per 128 values: qh is broadcast to both halves of a register straight
// from memory and its upper half shifted by 2 (qhz: bits 0-1 / 4-5 of byte i are the high bits of
// the low / high vector's value i), masked to 0x33 once; each code is then one ternary-logic
// select, (a & 0x0F) | (b & 0xF0), of the nibble and the high bits moved to bits 4-5 (the
// 16-bit shifts' spill from the neighbouring byte lands in bits the select discards or the mask
// cleared).
//
// Scale lanes: packs_epi32(s_lo, s_hi) puts, in each 128-bit chunk c, lo lanes 4c..4c+3 (values
// 128h + 16c .. + 15: sub-block 8h + c) then hi lanes 4c..4c+3 (sub-block 8h + 4 + c); the
// 16-bit scale vector is permuted to match.
inline __m512i q6k_scale_index(int h) {
  alignas(64) int16_t idx[32];
  for (int k = 0; k < 32; ++k) idx[k] = static_cast<int16_t>(8 * h + (k % 8 < 4 ? 0 : 4) + k / 8);
  return _mm512_load_si512(idx);
}

// TT tokens over one row: each block's codes are unpacked once for all of them (the unpacking
// is most of the per-token work). Each token's sums follow the one-token order exactly.
template <int TT>
void dot_q6_k(const uint8_t* row, const int8_t* xq, const int32_t* qoff, const float* xd, int64_t nb,
              int64_t n, float* y, int64_t ld_y) {
  const __m512i m0f = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33);
  const __m512i qh_shift = _mm512_set_epi64(2 * 0x0001000100010001, 2 * 0x0001000100010001,
                                            2 * 0x0001000100010001, 2 * 0x0001000100010001, 0, 0, 0, 0);
  const __m512i sidx[2] = {q6k_scale_index(0), q6k_scale_index(1)};
  constexpr int kSelect = 0xE4;  // (a & c) | (b & ~c), a/b/c = first/second/third operand
  __m512 acc[TT];
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * 210;
    for (int l = 0; l < 4; ++l) prefetch(blk + 64 * l);
    const __m512i sc16 = _mm512_castsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192))));
    __m512i lo[2], hi[2], sc[2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
      const __m512i qh =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h)));
      const __m512i qhz = _mm512_and_si512(_mm512_srlv_epi16(qh, qh_shift), m33);
      lo[h] = _mm512_ternarylogic_epi32(ql, _mm512_slli_epi16(qhz, 4), m0f, kSelect);
      hi[h] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), qhz, m0f, kSelect);
      sc[h] = _mm512_permutexvar_epi16(sidx[h], sc16);
    }
    const float dw = half_at(blk + 208);
#pragma GCC unroll 8
    for (int t = 0; t < TT; ++t) {
      const int8_t* xb = xq + t * n + b * 256;
      const int32_t* ob = qoff + t * (n / 4) + b * 64;
      __m512i isum = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h) {
        const __m512i s0 =
            _mm512_dpbusd_epi32(_mm512_loadu_si512(ob + 32 * h), lo[h], _mm512_loadu_si512(xb + 128 * h));
        const __m512i s1 = _mm512_dpbusd_epi32(_mm512_loadu_si512(ob + 32 * h + 16), hi[h],
                                               _mm512_loadu_si512(xb + 128 * h + 64));
        isum = _mm512_dpwssd_epi32(isum, _mm512_packs_epi32(s0, s1), sc[h]);
      }
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(dw * xd[t * nb + b]), acc[t]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) y[t * ld_y] = _mm512_reduce_add_ps(acc[t]);
}

void rows_q6_k(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const HeadActs& a, float* y,
               int64_t ld_y) {
  const int64_t n = a.n, nb = n / 256;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    int64_t t = 0;
    for (; t + 8 <= a.m; t += 8)
      dot_q6_k<8>(row, a.q.data() + t * n, a.qoff.data() + t * (n / 4), a.d.data() + t * nb, nb, n,
                  y + t * ld_y + r, ld_y);
    for (; t + 4 <= a.m; t += 4)
      dot_q6_k<4>(row, a.q.data() + t * n, a.qoff.data() + t * (n / 4), a.d.data() + t * nb, nb, n,
                  y + t * ld_y + r, ld_y);
    for (; t < a.m; ++t)
      dot_q6_k<1>(row, a.q.data() + t * n, a.qoff.data() + t * (n / 4), a.d.data() + t * nb, nb, n,
                  y + t * ld_y + r, ld_y);
  }
}

// Q8_0X (q8_0x.h): per superblock of 16 blocks, eight vpdpbusd of the unsigned quants (w + 128)
// with the activations in the same order, started at qoff = -128 x each block's activation sum,
// leave lane L with block L's exact integer sum; one conversion and one fma by dw * dx scale all
// 16 blocks. About 14 vector ops per 512 values (Q8_0 above: about 88). Sapphire Rapids
// (bench/lab/head_lab.cpp, 2B4T head): hot 1 thread 24 - 26 -> 56 - 68 GB/s, cold 2 threads
// +10 - 17 %, at or above the lab's read probe. The rows stream as in prefetch_stream<L1>: on
// AMD the near L1 prefetch is left out (it cost 9 % there, as in the ternary GEMV).
template <bool L1>
float dot_q8_0x(const uint8_t* row, const int8_t* xq, const int32_t* qoff, const float* xd, int64_t nsb) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* sb = row + s * kQ8xBytes;
    const uint8_t* q = sb + kQ8xScaleBytes;
    const int8_t* x = xq + s * kQ8xValues;
#pragma GCC unroll 9
    for (int l = 0; l < 9; ++l) prefetch_stream<L1>(sb + 64 * l);  // 544 bytes: 9 lines
    __m512i isum = _mm512_loadu_si512(qoff + s * kQ8xBlocks);
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v)
      isum = _mm512_dpbusd_epi32(isum, _mm512_loadu_si512(q + 64 * v), _mm512_loadu_si512(x + 64 * v));
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_loadu_ps(xd + s * kQ8xBlocks)),
                          acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void rows_q8_0x(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, const HeadActs& a, float* y,
                int64_t ld_y) {
  const int64_t n = a.n, nb = n / 32, nsb = n / kQ8xValues;
  const bool l1 = !cpu_features().amd;
  for_each_row_token(w, row_bytes, r0, r1, a.m, y, ld_y, [&](const uint8_t* row, int64_t t) {
    const int8_t* xq = a.q.data() + t * n;
    const int32_t* qoff = a.qoff.data() + t * nb;
    const float* xd = a.d.data() + t * nb;
    return l1 ? dot_q8_0x<true>(row, xq, qoff, xd, nsb) : dot_q8_0x<false>(row, xq, qoff, xd, nsb);
  });
}

}  // namespace

void head_rows_q6_kx_avx512(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0, int64_t r1,
                            const HeadActs& a, float* y, int64_t ld_y);

void head_rows_avx512(const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0, int64_t r1,
                      const HeadActs& a, float* y, int64_t ld_y) {
  switch (a.wtype) {
    case DType::F32:
      return rows_float<DType::F32>(w, row_bytes, r0, r1, a, y, ld_y);
    case DType::F16:
      return rows_float<DType::F16>(w, row_bytes, r0, r1, a, y, ld_y);
    case DType::BF16:
      return rows_float<DType::BF16>(w, row_bytes, r0, r1, a, y, ld_y);
    case DType::Q8_0:
      return rows_q8_0(w, row_bytes, r0, r1, a, y, ld_y);
    case DType::Q6_K:
      return rows_q6_k(w, row_bytes, r0, r1, a, y, ld_y);
    case DType::Q8_0X:
      return rows_q8_0x(w, row_bytes, r0, r1, a, y, ld_y);
    case DType::Q6_KX:  // head_q6_kx_avx512.cpp
      return head_rows_q6_kx_avx512(w, row_bytes, rows, r0, r1, a, y, ld_y);
    default:
      return;  // its table entry (head_dot.cpp) excludes the rest; head_matvec_with checks it
  }
}

}  // namespace bitnet
