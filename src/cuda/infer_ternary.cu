// The decode GEMV on the GPU-native ternary layout (infer_kernels.h): dp4a on the codes, minus the
// activation row sum, which it adds up itself from the same loads. Exact int32 accumulators, then
// the CPU's epilogue: float(acc) * (row_scale * dq), stored or added (compiled with -fmad=false,
// so no product is fused into the residual add). The tensor-core GEMM is infer_gemm.cu.
#include "cuda/check.h"
#include "cuda/infer_device.cuh"
#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"

namespace bitnet::cuda::infer {
namespace {

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

}  // namespace

void ternary_gemv(const DevTernary& w, const DevActs& x, int m, float* y, int64_t ldy, bool add,
                  cudaStream_t s) {
  launch_gemv<false>(w, x, m, y, ldy, add, nullptr, s);
}
void ternary_acc_gemv(const DevTernary& w, const DevActs& x, int m, int32_t* acc, cudaStream_t s) {
  launch_gemv<true>(w, x, m, nullptr, 0, false, acc, s);
}

}  // namespace bitnet::cuda::infer
