// Decode batches of 2 – 64 tokens (infer_kernels.h ternary_gemv_mma): the weight rows are the
// int8 tensor cores' 16-row operand and the tokens their 8-column one, so a warp turns each
// 16-byte code load into products for every token at once. The dp4a GEMV (infer_ternary.cu)
// reads each token's activations once per weight row and multiplies on the CUDA cores, which
// made its time grow with the batch; the tile GEMM (infer_gemm.cu) stages both operands through
// shared memory in 64-column steps and is bound by each step's latency when a product has few
// tokens. Here nothing is staged: the weights go from HBM to registers (a warp's first steps
// issued before the wait for the previous kernel), the activations (m rows of k bytes) are read
// through L1, and K is split over the block's warps, whose exact int32 sums meet in shared
// memory before the CPU's epilogue (float(acc) * (row_scale * dq), stored or added).
//
// Lane (g, t) of a warp (g = lane / 4, t = lane % 4) takes columns 64 t .. 64 t + 63 of each
// 256-column step: one 16-byte load per weight row (rows g and g + 8 of each 16-row group) and
// 64 bytes of token g's activations in each 8-token group. Its 64 columns are eight 32-column
// products; in product c its operand slots hold columns 64 t + 8 c + (0..7), the same columns in
// the weight fragment (a0, a2: row g; a1, a3: row g + 8) and the token fragment (b0, b1), so the
// sum over the quad's slots is the sum over the step's columns in another order. Exact either way.
#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kWarps = 8;   // a block's warps, splitting K
constexpr int kStep = 256;  // columns per warp step
constexpr int kGroups = 8;  // at most 8 groups of 8 tokens

__device__ __forceinline__ int4 ld_acts(const int8_t* p) {
  return __ldg(reinterpret_cast<const int4*>(p));
}

// RG groups of 16 weight rows a block, NT groups of 8 tokens. (A grid of about one wave whose
// blocks loop over row groups, the activations staying in L1, was slower: 3,718 t/s at 8
// sequences against 4,000, no faster at 64.)
template <int RG, int NT, bool kRaw>
__global__ void __launch_bounds__(32 * kWarps)
    gemv_mma_kernel(DevTernary w, DevActs x, int m, float* y, int64_t ldy, bool add, int32_t* raw) {
  pdl_launch();
  // Weight steps in flight a warp: as many as the registers allow next to the accumulators.
  constexpr int kPre = RG * NT >= 8 ? 2 : 4;
  __shared__ int red[RG * NT * 4 * 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * 16 * RG;
  const int64_t words = w.k_pad / 16;
  const int steps = static_cast<int>((w.k_pad + kStep - 1) / kStep);
  // Rows past the end are read clamped (their sums are never stored).
  const uint32_t* wrow[RG][2];
#pragma unroll
  for (int r = 0; r < RG; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = n0 + 16 * r + g + 8 * h;
      wrow[r][h] = w.w + (row < w.n ? row : w.n - 1) * words + 4 * t;
    }
  // A lane's 64 columns of step s exist when 256 s + 64 t < k_pad (k_pad is a multiple of 64).
  auto live = [&](int s) { return s < steps && static_cast<int64_t>(s) * kStep + 64 * t < w.k_pad; };
  uint4 wv[kPre][RG][2];
  auto load_w = [&](int p, int s) {
#pragma unroll
    for (int r = 0; r < RG; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        wv[p][r][h] = live(s) ? ld_stream(wrow[r][h] + s * 16) : make_uint4(0, 0, 0, 0);
  };
#pragma unroll
  for (int p = 0; p < kPre; ++p) load_w(p, warp + p * kWarps);
  for (int i = threadIdx.x; i < RG * NT * 128; i += 32 * kWarps) red[i] = 0;
  pdl_wait();
  // Tokens past m are read clamped (their sums are never stored).
  const int8_t* xrow[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int tok = 8 * j + g;
    xrow[j] = x.q + static_cast<int64_t>(tok < m ? tok : m - 1) * x.k_pad + 64 * t;
  }
  int acc[RG][NT][4];
#pragma unroll
  for (int r = 0; r < RG; ++r)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][j][e] = 0;
  for (int base = warp; base < steps; base += kPre * kWarps) {
#pragma unroll
    for (int p = 0; p < kPre; ++p) {
      const int s = base + p * kWarps;
      // mma.sync takes the whole warp: lanes past K multiply zero activations (their weight
      // words are zero, codes of -1).
      const bool lv = live(s);
      if (s < steps) {
#pragma unroll
        for (int cp = 0; cp < 4; ++cp) {  // 16 columns of codes (one word a row), two products
          int4 xv[NT];
#pragma unroll
          for (int j = 0; j < NT; ++j)
            xv[j] = lv ? ld_acts(xrow[j] + static_cast<int64_t>(s) * kStep + 16 * cp) : make_int4(0, 0, 0, 0);
#pragma unroll
          for (int e = 0; e < 2; ++e) {
#pragma unroll
            for (int r = 0; r < RG; ++r) {
              const uint4& u0 = wv[p][r][0];
              const uint4& u1 = wv[p][r][1];
              const uint32_t w0 = cp == 0 ? u0.x : cp == 1 ? u0.y : cp == 2 ? u0.z : u0.w;
              const uint32_t w1 = cp == 0 ? u1.x : cp == 1 ? u1.y : cp == 2 ? u1.z : u1.w;
              const int a[4] = {weights4(w0, 4 * e), weights4(w1, 4 * e), weights4(w0, 4 * e + 2),
                                weights4(w1, 4 * e + 2)};
#pragma unroll
              for (int j = 0; j < NT; ++j) mma_s8(acc[r][j], a, e ? xv[j].z : xv[j].x, e ? xv[j].w : xv[j].y);
            }
          }
        }
      }
      load_w(p, s + kPre * kWarps);
    }
  }
  __syncthreads();  // red is zero
#pragma unroll
  for (int r = 0; r < RG; ++r)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) atomicAdd(&red[((r * NT + j) * 4 + e) * 32 + lane], acc[r][j][e]);
  __syncthreads();
  // Element (r, j, e) of lane l: weight row 16 r + l / 4 + 8 (e / 2), token 8 j + 2 (l % 4) + e % 2.
  for (int i = threadIdx.x; i < RG * NT * 128; i += 32 * kWarps) {
    const int l = i & 31, e = (i >> 5) & 3, rj = i >> 7, r = rj / NT, j = rj % NT;
    const int64_t row = n0 + 16 * r + (l >> 2) + 8 * (e >> 1);
    const int tok = 8 * j + 2 * (l & 3) + (e & 1);
    if (row >= w.n || tok >= m) continue;
    if constexpr (kRaw) {
      raw[tok * w.n + row] = red[i];
    } else {
      const float v = static_cast<float>(red[i]) * (w.row_scale[row] * x.dq[tok]);
      float& o = y[tok * ldy + row];
      o = add ? o + v : v;
    }
  }
}

template <int RG, int NT, bool kRaw>
void launch_nt(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add, int32_t* raw,
               cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((w.n + 16 * RG - 1) / (16 * RG));
  launch(gemv_mma_kernel<RG, NT, kRaw>, blocks, 32 * kWarps, 0, s, w, x, m, y, ldy, add, raw);
  BN_CUDA_LAUNCHED();
}

template <int RG, bool kRaw>
void launch_rg(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add, int32_t* raw,
               cudaStream_t s) {
  const int groups = (m + 7) / 8;
  if (groups <= 1)
    launch_nt<RG, 1, kRaw>(w, x, m, y, ldy, add, raw, s);
  else if (groups <= 2)
    launch_nt<RG, 2, kRaw>(w, x, m, y, ldy, add, raw, s);
  else if (groups <= 4)
    launch_nt<RG, 4, kRaw>(w, x, m, y, ldy, add, raw, s);
  else
    launch_nt<RG, kGroups, kRaw>(w, x, m, y, ldy, add, raw, s);
}

template <bool kRaw>
void launch_gemv_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                     int32_t* raw, int row_groups, cudaStream_t s) {
  // Two row groups a block halve the activation reads per weight byte, which pays from 16 tokens
  // (H100, 2B4T shapes: 32 and 64 tokens 1.4 - 1.8 x faster); at 4 and 8 one row group was as
  // fast or faster on three of the four shapes (CudaGemmTiming).
  const int rg = row_groups > 0 ? row_groups : (m > 8 ? 2 : 1);
  if (rg == 1)
    launch_rg<1, kRaw>(w, x, m, y, ldy, add, raw, s);
  else
    launch_rg<2, kRaw>(w, x, m, y, ldy, add, raw, s);
}

}  // namespace

void ternary_gemv_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                      cudaStream_t s, int row_groups) {
  launch_gemv_mma<false>(w, x, m, y, ldy, add, nullptr, row_groups, s);
}
void ternary_acc_gemv_mma(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s,
                          int row_groups) {
  launch_gemv_mma<true>(w, x, m, nullptr, 0, false, acc, row_groups, s);
}

}  // namespace bitnet::cuda::infer
