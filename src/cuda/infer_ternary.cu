// W2A8 products on the GPU-native ternary layout (infer_kernels.h): the decode GEMV (dp4a on the
// codes, minus the activation row sum, which it adds up itself from the same loads) and the
// prompt GEMM (int8 tensor cores, mma.m16n8k32 s8 with the codes turned into s8 weights). Both
// give exact int32 accumulators, then the CPU's epilogue: float(acc) * (row_scale * dq), stored or
// added (compiled with -fmad=false, so no product is fused into the residual add).
#include "cuda/check.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

// Four codes of columns 4s .. 4s+3 of a word, as bytes.
__device__ __forceinline__ int codes(uint32_t word, int s) {
  return static_cast<int>((word >> (2 * s)) & 0x03030303u);
}

// Streaming 16-byte load: the weights are read once per step, so they should not evict the
// activations from L1.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// 64 columns: acc += sum code * x, xsum += sum x (the zero-point correction: codes are w + 1).
__device__ __forceinline__ void dot64(const uint4 w, const int4* x, int& acc, int& xsum) {
  const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int4 xv = __ldg(x + j);
    acc = __dp4a(codes(ws[j], 0), xv.x, acc);
    acc = __dp4a(codes(ws[j], 1), xv.y, acc);
    acc = __dp4a(codes(ws[j], 2), xv.z, acc);
    acc = __dp4a(codes(ws[j], 3), xv.w, acc);
    xsum = __dp4a(0x01010101, xv.x, xsum);
    xsum = __dp4a(0x01010101, xv.y, xsum);
    xsum = __dp4a(0x01010101, xv.z, xsum);
    xsum = __dp4a(0x01010101, xv.w, xsum);
  }
}

__device__ __forceinline__ void store_out(float* y, int64_t ldy, int m, int64_t n, int32_t acc,
                                          const DevTernary& w, const DevActs& x, bool add) {
  const float v = static_cast<float>(acc) * (w.row_scale[n] * x.dq[m]);
  float& o = y[m * ldy + n];
  o = add ? o + v : v;
}

constexpr int kGemvWarps = 4;  // rows per block: one warp a row

// One warp per weight row, M tokens (<= MT). Lanes take 64-column steps in turn, so a
// 2560-column row is one coalesced 640-byte read.
template <int MT, bool kRaw>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_kernel(DevTernary w, DevActs x, int m, float* y, int64_t ldy, bool add, int32_t* raw) {
  pdl_launch();
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= w.n) return;
  const int64_t steps = w.k_pad / 64;
  const uint4* wr = reinterpret_cast<const uint4*>(w.w + row * (w.k_pad / 16));
  // Up to four of the lane's 16-byte weight loads (k <= 8192: the whole row) are issued before
  // waiting for the previous kernel (the activations' producer): they overlap its tail.
  uint4 pre[4];
#pragma unroll
  for (int u = 0; u < 4; ++u)
    if (lane + 32 * u < steps) pre[u] = ld_stream(wr + lane + 32 * u);
  pdl_wait();
  int acc[MT], xs[MT];
#pragma unroll
  for (int t = 0; t < MT; ++t) acc[t] = xs[t] = 0;
#pragma unroll
  for (int u = 0; u < 4; ++u)
    if (lane + 32 * u < steps)
#pragma unroll
      for (int t = 0; t < MT; ++t)
        if (t < m)
          dot64(pre[u], reinterpret_cast<const int4*>(x.q + t * x.k_pad) + (lane + 32 * u) * 4, acc[t],
                xs[t]);
  for (int64_t c = lane + 128; c < steps; c += 32) {
    const uint4 wv = ld_stream(wr + c);
#pragma unroll
    for (int t = 0; t < MT; ++t)
      if (t < m) dot64(wv, reinterpret_cast<const int4*>(x.q + t * x.k_pad) + c * 4, acc[t], xs[t]);
  }
#pragma unroll
  for (int t = 0; t < MT; ++t) {
    int v = acc[t] - xs[t];  // exact: sum code * x - sum x = sum w * x
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    acc[t] = v;
  }
  if (lane < MT && lane < m) {
    int32_t mine = acc[0];
#pragma unroll
    for (int t = 1; t < MT; ++t)
      if (lane == t) mine = acc[t];
    if constexpr (kRaw)
      raw[lane * w.n + row] = mine;
    else
      store_out(y, ldy, lane, row, mine, w, x, add);
  }
}

template <bool kRaw>
void launch_gemv(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add, int32_t* raw,
                 cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((w.n + kGemvWarps - 1) / kGemvWarps);
  const int threads = 32 * kGemvWarps;
  if (m <= 1)
    launch(gemv_kernel<1, kRaw>, blocks, threads, 0, s, w, x, m, y, ldy, add, raw);
  else if (m <= 2)
    launch(gemv_kernel<2, kRaw>, blocks, threads, 0, s, w, x, m, y, ldy, add, raw);
  else if (m <= 4)
    launch(gemv_kernel<4, kRaw>, blocks, threads, 0, s, w, x, m, y, ldy, add, raw);
  else
    launch(gemv_kernel<8, kRaw>, blocks, threads, 0, s, w, x, m, y, ldy, add, raw);
  BN_CUDA_LAUNCHED();
}

// ---- int8 tensor-core GEMM ------------------------------------------------------------------
// A warp computes 16 MI tokens x 8 NJ rows (MI x NJ m16n8 tiles) per 32-column K step; NW warps
// side by side over weight rows make a block. The block's activation tile (16 MI tokens x 64
// columns) is staged in shared memory per 64-column step, double-buffered, the next step's bytes
// loaded into registers before this step's products and stored after them; the weights are read
// straight from global memory, also one step ahead: a thread's 16-byte load is its row's whole
// 64-column step (the four threads of a quad share a row and hit the same L1 line).
constexpr int kStepK = 64;
constexpr int kAStride = kStepK + 16;  // bytes per staged activation row: skews the banks

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

__device__ __forceinline__ void mma_s8(int (&c)[4], const int (&a)[4], const int (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int MI, int NJ, int NW, bool kRaw>
__global__ void __launch_bounds__(32 * NW)
    mma_kernel(DevTernary w, DevActs x, int m, float* y, int64_t ldy, bool add, int32_t* raw) {
  pdl_launch();
  constexpr int kRows = 16 * MI, kPieces = kRows * 4, kThreads = 32 * NW;
  constexpr int kPer = (kPieces + kThreads - 1) / kThreads;  // staged 16-byte pieces per thread
  __shared__ __align__(16) int8_t sa[2][kRows * kAStride];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane / 4, q = lane % 4;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * NW + warp) * 8 * NJ;
  const int64_t words = w.k_pad / 16, steps = w.k_pad / kStepK;
  // This thread's weight rows (one per n8 tile), clamped: rows past n are computed, not stored.
  const uint4* wrow[NJ];
#pragma unroll
  for (int j = 0; j < NJ; ++j)
    wrow[j] = reinterpret_cast<const uint4*>(w.w + min64(n0 + 8 * j + g, w.n - 1) * words);
  const int4* arow[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int p = threadIdx.x + u * kThreads;
    arow[u] =
        reinterpret_cast<const int4*>(x.q + min64(m0 + (p < kPieces ? p / 4 : 0), m - 1) * x.k_pad) + p % 4;
  }
  auto store_a = [&](int buf, const int4(&v)[kPer]) {
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int p = threadIdx.x + u * kThreads;
      if (p < kPieces) *reinterpret_cast<int4*>(&sa[buf][(p / 4) * kAStride + (p % 4) * 16]) = v[u];
    }
  };
  int acc[MI][NJ][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;
  uint4 wv[NJ];
  int4 av[kPer];
#pragma unroll
  for (int j = 0; j < NJ; ++j) wv[j] = ld_stream(wrow[j]);  // weights: before the wait (infer_launch.cuh)
  pdl_wait();
#pragma unroll
  for (int u = 0; u < kPer; ++u) av[u] = __ldg(arow[u]);
  store_a(0, av);
  __syncthreads();
  for (int64_t st = 0; st < steps; ++st) {
    const int buf = st & 1;
    const bool more = st + 1 < steps;
    uint4 wn[NJ];
    if (more) {
#pragma unroll
      for (int j = 0; j < NJ; ++j) wn[j] = ld_stream(wrow[j] + st + 1);
#pragma unroll
      for (int u = 0; u < kPer; ++u) av[u] = __ldg(arow[u] + (st + 1) * (kStepK / 16));
    }
#pragma unroll
    for (int kb = 0; kb < 2; ++kb) {  // two 32-column mma steps per 64 columns
      int b[NJ][2];
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const uint32_t lo = kb ? wv[j].z : wv[j].x, hi = kb ? wv[j].w : wv[j].y;
        b[j][0] = static_cast<int>(__vsub4(static_cast<uint32_t>(codes(lo, q)), 0x01010101u));
        b[j][1] = static_cast<int>(__vsub4(static_cast<uint32_t>(codes(hi, q)), 0x01010101u));
      }
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int8_t* base = &sa[buf][(16 * i + g) * kAStride + 32 * kb + 4 * q];
        const int a[4] = {*reinterpret_cast<const int*>(base),
                          *reinterpret_cast<const int*>(base + 8 * kAStride),
                          *reinterpret_cast<const int*>(base + 16),
                          *reinterpret_cast<const int*>(base + 8 * kAStride + 16)};
#pragma unroll
        for (int j = 0; j < NJ; ++j) mma_s8(acc[i][j], a, b[j]);
      }
    }
    if (more) {
      store_a(buf ^ 1, av);
#pragma unroll
      for (int j = 0; j < NJ; ++j) wv[j] = wn[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t tok = m0 + 16 * i + g + (r >= 2 ? 8 : 0);
        const int64_t n = n0 + 8 * j + 2 * q + (r & 1);
        if (tok >= m || n >= w.n) continue;
        if constexpr (kRaw)
          raw[tok * w.n + n] = acc[i][j][r];
        else
          store_out(y, ldy, static_cast<int>(tok), n, acc[i][j][r], w, x, add);
      }
}

template <int MI, int NJ, int NW, bool kRaw>
void launch_mma_tile(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                     int32_t* raw, cudaStream_t s) {
  constexpr int kN = 8 * NJ * NW, kM = 16 * MI;
  const dim3 grid(static_cast<unsigned>((w.n + kN - 1) / kN), static_cast<unsigned>((m + kM - 1) / kM));
  launch(mma_kernel<MI, NJ, NW, kRaw>, grid, 32 * NW, 0, s, w, x, m, y, ldy, add, raw);
  BN_CUDA_LAUNCHED();
}

// Tiles by batch: prompts take 64 x 128 tiles (each weight step feeds 16 mma per warp); decode
// batches up to 64 take 64 x 32 (four times the blocks: a 2560-row matrix is 80 of them, where
// 128-row tiles left most SMs idle); up to 32 tokens, 32 x 32.
template <bool kRaw>
void launch_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add, int32_t* raw,
                cudaStream_t s) {
  if (m <= 32)
    launch_mma_tile<2, 4, 1, kRaw>(w, x, m, y, ldy, add, raw, s);
  else if (m <= 64)
    launch_mma_tile<4, 4, 1, kRaw>(w, x, m, y, ldy, add, raw, s);
  else
    launch_mma_tile<4, 4, 4, kRaw>(w, x, m, y, ldy, add, raw, s);
}

}  // namespace

void ternary_gemv(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                  cudaStream_t s) {
  launch_gemv<false>(w, x, m, y, ldy, add, nullptr, s);
}
void ternary_gemm_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                      cudaStream_t s) {
  launch_mma<false>(w, x, m, y, ldy, add, nullptr, s);
}
void ternary_acc_gemv(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s) {
  launch_gemv<true>(w, x, m, nullptr, 0, false, acc, s);
}
void ternary_acc_mma(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s) {
  launch_mma<true>(w, x, m, nullptr, 0, false, acc, s);
}

}  // namespace bitnet::cuda::infer
