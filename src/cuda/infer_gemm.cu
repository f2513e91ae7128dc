// The prompt / batch GEMM of the ternary layers (infer_kernels.h) on int8 tensor cores:
// mma.sync m16n8k32 s8 x s8 -> s32, the codes turned into s8 weights in registers. Exact int32
// accumulators, then the CPU's epilogue (float(acc) * (row_scale * dq), stored or added; the
// file is compiled with -fmad=false, so no product is fused into the residual add).
//
// A block computes BM tokens x BN weight rows; its warps form a WM x WN grid of 16 MI tokens x
// 8 NJ rows each. K runs in 64-column steps through a STAGES-deep cp.async ring in shared memory
// (activations: BM rows of 64 bytes, padded to 80 so that ldmatrix's eight row reads hit distinct
// banks; weights: BN rows of 16 bytes of codes): loads run STAGES - 1 steps ahead of the tensor
// cores, which is what hides the memory latency (a step's products take ~200 cycles, a load from
// HBM ~1,000). A warp reads each 16-byte code chunk of its rows once per step (the four threads of
// a quad share a row) and turns it into the B fragments of both 32-column halves; the A fragments
// come from ldmatrix.x4 and feed NJ products each.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kStepK = 64;             // columns per pipeline step
constexpr int kAStride = kStepK + 16;  // bytes per staged activation row (bank skew)

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

__device__ __forceinline__ void ldmatrix_x4(int (&a)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(s));
}

template <int MI, int NJ, int WM, int WN, int STAGES>
struct Tile {
  static constexpr int kM = 16 * MI * WM, kN = 8 * NJ * WN, kThreads = 32 * WM * WN;
  static constexpr int kABytes = kM * kAStride, kWBytes = kN * 16;
  static constexpr int kSmem = STAGES * (kABytes + kWBytes);
};

// Split-K (sk.splits > 1, grid z): each block takes its range of K steps and adds its sums into
// sk.sums (int32 atomics: exact, in any order); the tile's last block to finish takes the totals
// (zeroing them and the tile's counter for the next product) and applies the epilogue.
template <int MI, int NJ, int WM, int WN, int STAGES, bool kRaw>
__global__ void __launch_bounds__(32 * WM * WN)
    gemm_kernel(DevTernary w, DevActs x, int m, float* y, int64_t ldy, bool add, int32_t* raw, int splits,
                int32_t* sums, unsigned* counters) {
  pdl_launch();
  using T = Tile<MI, NJ, WM, WN, STAGES>;
  extern __shared__ __align__(16) int8_t smem[];
  int8_t* sa = smem;                        // [STAGES][kM][kAStride]
  int8_t* sw = smem + STAGES * T::kABytes;  // [STAGES][kN][16]
  const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31, g = lane / 4, q = lane % 4;
  const int wm = warp / WN, wn = warp % WN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * T::kM, n0 = static_cast<int64_t>(blockIdx.x) * T::kN;
  const int64_t words = w.k_pad / 16;
  const int all_steps = static_cast<int>(w.k_pad / kStepK), per = (all_steps + splits - 1) / splits;
  const int st0 = static_cast<int>(blockIdx.z) * per;
  const int steps = st0 >= all_steps ? 0 : (all_steps - st0 < per ? all_steps - st0 : per);
  // Rows past m or n are loaded clamped (their products are computed, never stored).
  auto load_w = [&](int buf, int st) {
    for (int p = tid; p < T::kN; p += T::kThreads)
      cp_async16(sw + buf * T::kWBytes + p * 16, w.w + min64(n0 + p, w.n - 1) * words + (st0 + st) * 4);
  };
  auto load_a = [&](int buf, int st) {
    for (int p = tid; p < T::kM * 4; p += T::kThreads)
      cp_async16(sa + buf * T::kABytes + (p / 4) * kAStride + (p % 4) * 16,
                 x.q + min64(m0 + p / 4, m - 1) * x.k_pad + (st0 + st) * kStepK + (p % 4) * 16);
  };
  // The weights are no kernel's output: their first steps load before the wait for the previous
  // kernel (infer_launch.cuh), the activations after it. Group s holds step s's activations
  // (and group 0 every prologue weight step), so waiting for group s means step s is complete.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s)
    if (s < steps) load_w(s, s);
  pdl_wait();
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < steps) load_a(s, s);
    cp_async_commit();
  }
  int acc[MI][NJ][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;
  const int shift = 2 * q;
  // ldmatrix.x4 rows: lanes 0-15 rows 0-15 at k 0, lanes 16-31 the same rows at k 16.
  const int a_off = (wm * 16 * MI + (lane & 15)) * kAStride + (lane >> 4) * 16;
  const int w_off = (wn * 8 * NJ + g) * 16;
  for (int st = 0; st < steps; ++st) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // step st is in; every warp is done with the buffer refilled next
    const int nxt = st + STAGES - 1;
    if (nxt < steps) {
      load_w(nxt % STAGES, nxt);
      load_a(nxt % STAGES, nxt);
    }
    cp_async_commit();
    const int buf = st % STAGES;
    const int8_t* a_base = sa + buf * T::kABytes + a_off;
    // Every shared-memory read of the step first, then the products: the asm statements keep
    // their order, and a load between products would stall the warp on its latency each time.
    uint4 wq[NJ];
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      wq[j] = *reinterpret_cast<const uint4*>(sw + buf * T::kWBytes + w_off + j * 128);
    int a[2][MI][4];
#pragma unroll
    for (int kb = 0; kb < 2; ++kb)
#pragma unroll
      for (int i = 0; i < MI; ++i) ldmatrix_x4(a[kb][i], a_base + i * 16 * kAStride + kb * 32);
#pragma unroll
    for (int kb = 0; kb < 2; ++kb) {  // two 32-column products per step
      int b[NJ][2];
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        b[j][0] = weights4(kb ? wq[j].z : wq[j].x, shift);
        b[j][1] = weights4(kb ? wq[j].w : wq[j].y, shift);
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) mma_s8(acc[i][j], a[kb][i], b[j][0], b[j][1]);
    }
  }
  cp_async_wait<0>();
  auto store = [&](int64_t tok, int64_t n, int32_t a) {
    if constexpr (kRaw) {
      raw[tok * w.n + n] = a;
    } else {
      const float v = static_cast<float>(a) * (w.row_scale[n] * x.dq[tok]);
      float& o = y[tok * ldy + n];
      o = add ? o + v : v;
    }
  };
  // Fragment element r of (i, j): its token and weight row.
  auto tok_of = [&](int i, int r) { return m0 + wm * 16 * MI + 16 * i + g + (r >= 2 ? 8 : 0); };
  auto row_of = [&](int j, int r) { return n0 + wn * 8 * NJ + 8 * j + 2 * q + (r & 1); };
  // f(token, row, sum) for every fragment element inside the m x n product.
  auto each = [&](auto&& f) {
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r)
          if (tok_of(i, r) < m && row_of(j, r) < w.n) f(tok_of(i, r), row_of(j, r), acc[i][j][r]);
  };
  if (splits == 1) {
    each(store);
    return;
  }
  each([&](int64_t tok, int64_t n, int32_t a) { atomicAdd(sums + tok * w.n + n, a); });
  __threadfence();
  __syncthreads();
  __shared__ unsigned last;
  unsigned* counter = counters + blockIdx.y * gridDim.x + blockIdx.x;
  if (tid == 0) last = atomicAdd(counter, 1u) == static_cast<unsigned>(splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  each([&](int64_t tok, int64_t n, int32_t) { store(tok, n, atomicExch(sums + tok * w.n + n, 0)); });
  if (tid == 0) *counter = 0;
}

int multiprocessors() {
  static const int sms = [] {
    int dev = 0, n = 0;
    BN_CUDA(cudaGetDevice(&dev));
    BN_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  return sms;
}

// K ranges per tile: sk.splits when set; else (sums given, few blocks) enough to give every SM
// about two blocks, each at least 4 K steps, at most 16 ranges; 1 without scratch.
int split_count(const GemmSplitK& sk, int64_t blocks, int m, const DevTernary& w) {
  if (sk.sums == nullptr || static_cast<size_t>(m) * static_cast<size_t>(w.n) > sk.sums_len ||
      static_cast<size_t>(blocks) > sk.counters_len)
    return 1;
  const int64_t steps = w.k_pad / kStepK;
  if (sk.splits > 0) return static_cast<int>(sk.splits < steps ? sk.splits : steps);
  const int64_t want = (2 * multiprocessors() + blocks - 1) / blocks, most = steps / 4 < 16 ? steps / 4 : 16;
  return static_cast<int>(want < most ? (want > 1 ? want : 1) : (most > 1 ? most : 1));
}

template <int MI, int NJ, int WM, int WN, int STAGES, bool kRaw>
void launch_tile(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add, int32_t* raw,
                 const GemmSplitK& sk, cudaStream_t s) {
  using T = Tile<MI, NJ, WM, WN, STAGES>;
  auto kernel = gemm_kernel<MI, NJ, WM, WN, STAGES, kRaw>;
  static unsigned long long attr_set = 0;  // once per device and instantiation (the opt-in above 48 KB)
  if (first_on_device(attr_set)) {
    BN_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmem));
  }
  const int64_t gx = (w.n + T::kN - 1) / T::kN, gy = (m + T::kM - 1) / T::kM;
  const int splits = split_count(sk, gx * gy, m, w);
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(splits));
  launch(kernel, grid, T::kThreads, T::kSmem, s, w, x, m, y, ldy, add, raw, splits, sk.sums, sk.counters);
  BN_CUDA_LAUNCHED();
}

template <bool kRaw>
void launch_gemm(GemmTile tile, const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                 int32_t* raw, const GemmSplitK& sk, cudaStream_t s) {
  switch (tile) {
    case GemmTile::k32x32:
      return launch_tile<2, 2, 1, 2, 6, kRaw>(w, x, m, y, ldy, add, raw, sk, s);
    case GemmTile::k64x32:
      return launch_tile<4, 2, 1, 2, 6, kRaw>(w, x, m, y, ldy, add, raw, sk, s);
    case GemmTile::k64x128:
      return launch_tile<4, 4, 1, 4, 5, kRaw>(w, x, m, y, ldy, add, raw, sk, s);
    case GemmTile::k128x128:
      return launch_tile<4, 4, 2, 4, 4, kRaw>(w, x, m, y, ldy, add, raw, sk, s);
    default:
      break;
  }
  // The largest tile whose grid still has about a block per SM: big tiles read the fewest bytes
  // per product, but a grid of too few blocks leaves SMs idle (a 2560-row matrix is 80 blocks of
  // 128 x 128 at 512 tokens). Timed on the 2B4T shapes (CudaGemmTiming).
  const int64_t enough = multiprocessors() * 3 / 4;
  const GemmTile order[] = {GemmTile::k128x128, GemmTile::k64x128, GemmTile::k64x32};
  const int64_t dims[][2] = {{128, 128}, {64, 128}, {64, 32}};
  // A tile at least twice m's tokens is skipped: its blocks would multiply mostly clamped rows
  // (at m = 64 the 128-token tile took 97 us for gate|up where 64 x 128 took 34).
  for (int i = 0; i < 3; ++i)
    if (dims[i][0] < 2 * m &&
        (m + dims[i][0] - 1) / dims[i][0] * ((w.n + dims[i][1] - 1) / dims[i][1]) >= enough)
      return launch_gemm<kRaw>(order[i], w, x, m, y, ldy, add, raw, sk, s);
  return launch_gemm<kRaw>(GemmTile::k32x32, w, x, m, y, ldy, add, raw, sk, s);
}

// One 16-column word of codes a thread: 16 int8 weights in column order (byte b of
// weights4(word, 2p) is column 4p + b of the word's 16).
__global__ void expand_kernel(const uint32_t* w, int64_t words, uint4* out) {
  pdl_launch();
  pdl_wait();  // the scratch may still be read by the kernel before the last one
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint32_t v = w[i];
    out[i] = make_uint4(static_cast<uint32_t>(weights4(v, 0)), static_cast<uint32_t>(weights4(v, 2)),
                        static_cast<uint32_t>(weights4(v, 4)), static_cast<uint32_t>(weights4(v, 6)));
  }
}

}  // namespace

void expand_ternary_s8(const DevTernary& w, int8_t* out, cudaStream_t s) {
  const int64_t words = w.n * (w.k_pad / 16);
  const int64_t blocks = std::min<int64_t>((words + 255) / 256, 8 * multiprocessors());
  launch(expand_kernel, static_cast<unsigned>(blocks), 256, 0, s, w.w, words, reinterpret_cast<uint4*>(out));
  BN_CUDA_LAUNCHED();
}

void ternary_gemm_mma(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                      cudaStream_t s, GemmTile tile, const GemmSplitK& sk) {
  launch_gemm<false>(tile, w, x, m, y, ldy, add, nullptr, sk, s);
}
void ternary_acc_mma(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s,
                     GemmTile tile, const GemmSplitK& sk) {
  launch_gemm<true>(tile, w, x, m, nullptr, 0, false, acc, sk, s);
}

}  // namespace bitnet::cuda::infer
