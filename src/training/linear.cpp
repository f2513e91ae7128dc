// BitLinear (ternary weights x int8 activations, the engine's numerics) and the fp32 matmul:
// forward and straight-through backward.
#include <algorithm>

#include "core/error.h"
#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/ternary.h"
#include "training/kernels.h"
#include "training/op_checks.h"
#include "training/ops.h"
#include "training/parallel.h"

namespace bitnet::train {

namespace {

constexpr int64_t kTokenGrain = 4;
constexpr int64_t kRowGrain = 8;
// Tokens (or output rows) per block: a weight row (or input row) is used for kBlk of them while it
// is in L1. Each element's accumulation order does not depend on the blocking.
constexpr int64_t kBlk = 4;

// fp32: y = x . W^T, parallel over tokens.
void float_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                   float* y) {
  parallel_ranges(pool, T, kTokenGrain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t += kBlk) {
      const int64_t n = std::min(kBlk, t1 - t);
      for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < n; ++k)
          y[(t + k) * out + o] = kern::dot_f32(x + (t + k) * in, W + o * in, in);
    }
  });
}

// fp32: dx += dy . W (over tokens), dW += dy^T . x (over output rows).
void float_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in, const float* W,
                    int64_t out, float* dx, float* dW) {
  if (dx != nullptr) {
    parallel_ranges(pool, T, kTokenGrain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t += kBlk) {
        const int64_t n = std::min(kBlk, t1 - t);
        for (int64_t o = 0; o < out; ++o)
          for (int64_t k = 0; k < n; ++k)
            kern::axpy(dy[(t + k) * out + o], W + o * in, dx + (t + k) * in, in);
      }
    });
  }
  if (dW != nullptr) {
    parallel_ranges(pool, out, kRowGrain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; o += kBlk) {
        const int64_t n = std::min(kBlk, o1 - o);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t k = 0; k < n; ++k) kern::axpy(dy[t * out + o + k], x + t * in, dW + (o + k) * in, in);
      }
    });
  }
}

}  // namespace

void bitlinear_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                       std::span<const int64_t> groups, bool quantize, float* y, BitLinearCache& cache) {
  check_linear_sizes("bitlinear_forward", T, in, out);
  check_linear_groups("bitlinear_forward", groups, out);

  cache.quantized = quantize;
  if (!quantize) {
    cache.xq.clear();
    cache.dq.clear();
    cache.wq.clear();
    cache.row_scale.clear();
    float_forward(pool, x, T, in, W, out, y);
    return;
  }

  check_int32_accumulator("bitlinear_forward", in);

  // Weights: one absmean scale per logical matrix (group of rows).
  cache.wq.resize(static_cast<size_t>(out * in));
  cache.row_scale.resize(static_cast<size_t>(out));
  int64_t r0 = 0;
  for (const int64_t g : groups) {
    const size_t n = static_cast<size_t>(g * in);
    const float scale = absmean_scale(W + r0 * in, n);
    ternarize(W + r0 * in, n, scale, cache.wq.data() + r0 * in);
    for (int64_t r = r0; r < r0 + g; ++r) cache.row_scale[static_cast<size_t>(r)] = scale;
    r0 += g;
  }

  // Activations per token, then the exact integer product and the engine's epilogue.
  cache.xq.resize(static_cast<size_t>(T * in));
  cache.dq.resize(static_cast<size_t>(T));
  const int8_t* wq = cache.wq.data();
  const float* row_scale = cache.row_scale.data();
  parallel_ranges(pool, T, kTokenGrain, [&](int64_t t0, int64_t t1) {
    const int8_t* xq = cache.xq.data();
    float* dq = cache.dq.data();
    for (int64_t t = t0; t < t1; ++t) {
      float s = 0;
      int32_t sum = 0;
      quantize_act_row_ref(x + t * in, in, in, cache.xq.data() + t * in, &s, &dq[t], &sum);
    }
    for (int64_t t = t0; t < t1; t += kBlk) {
      const int64_t n = std::min(kBlk, t1 - t);
      for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < n; ++k)
          y[(t + k) * out + o] =
              gemm_scale(kern::dot_i8(xq + (t + k) * in, wq + o * in, in), row_scale[o], dq[t + k]);
    }
  });
}

void bitlinear_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in,
                        const float* W, int64_t out, const BitLinearCache& cache, float* dx, float* dW) {
  check_linear_sizes("bitlinear_backward", T, in, out);
  if (!cache.quantized) return float_backward(pool, dy, x, T, in, W, out, dx, dW);
  if (cache.xq.size() != static_cast<size_t>(T * in) || cache.dq.size() != static_cast<size_t>(T) ||
      cache.wq.size() != static_cast<size_t>(out * in) || cache.row_scale.size() != static_cast<size_t>(out))
    fail("bitlinear_backward: the cache does not match T={} in={} out={}", T, in, out);
  const int8_t* wq = cache.wq.data();
  const int8_t* xq = cache.xq.data();
  const float* row_scale = cache.row_scale.data();
  const float* dq = cache.dq.data();
  // dx += dy . (wq * scale): dy * scale * wq is exact in either order, since wq is -1, 0 or 1.
  if (dx != nullptr) {
    parallel_ranges(pool, T, kTokenGrain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t += kBlk) {
        const int64_t n = std::min(kBlk, t1 - t);
        for (int64_t o = 0; o < out; ++o)
          for (int64_t k = 0; k < n; ++k)
            kern::axpy_i8(dy[(t + k) * out + o] * row_scale[o], wq + o * in, dx + (t + k) * in, in);
      }
    });
  }
  // dW += dy^T . (xq * dq), the output row outer so each thread owns its rows of dW.
  if (dW != nullptr) {
    parallel_ranges(pool, out, kRowGrain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; o += kBlk) {
        const int64_t n = std::min(kBlk, o1 - o);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t k = 0; k < n; ++k)
            kern::axpy_i8(dy[t * out + o + k] * dq[t], xq + t * in, dW + (o + k) * in, in);
      }
    });
  }
}

void matmul_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                    float* y) {
  check_linear_sizes("matmul_forward", T, in, out);
  float_forward(pool, x, T, in, W, out, y);
}

void matmul_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in, const float* W,
                     int64_t out, float* dx, float* dW) {
  check_linear_sizes("matmul_backward", T, in, out);
  float_backward(pool, dy, x, T, in, W, out, dx, dW);
}

}  // namespace bitnet::train
