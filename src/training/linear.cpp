// BitLinear (ternary weights x int8 activations, the engine's numerics) and the fp32 matmul:
// forward and straight-through backward.
#include <cstring>

#include "core/error.h"
#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/ternary.h"
#include "training/ops.h"
#include "training/parallel.h"

namespace bitnet::train {

namespace {

constexpr int64_t kTokenGrain = 4;
constexpr int64_t kRowGrain = 8;

void check_sizes(const char* op, int64_t T, int64_t in, int64_t out) {
  if (T < 0 || in <= 0 || out <= 0) fail("{}: bad sizes T={} in={} out={}", op, T, in, out);
}

// Exact: |acc| <= 128 * 127 * in fits int32 for in < 132000.
inline int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return s;
}

// Eight independent partial sums (vectorizable without reassociation), combined in a fixed order.
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

inline void axpy_i8(float alpha, const int8_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * static_cast<float>(x[i]);
}

// fp32: y = x . W^T, parallel over tokens.
void float_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                   float* y) {
  parallel_ranges(pool, T, kTokenGrain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * in;
      float* yr = y + t * out;
      for (int64_t o = 0; o < out; ++o) yr[o] = dot_f32(xr, W + o * in, in);
    }
  });
}

// fp32: dx += dy . W (over tokens), dW += dy^T . x (over output rows).
void float_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in, const float* W,
                    int64_t out, float* dx, float* dW) {
  if (dx != nullptr) {
    parallel_ranges(pool, T, kTokenGrain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t o = 0; o < out; ++o) axpy(dy[t * out + o], W + o * in, dx + t * in, in);
    });
  }
  if (dW != nullptr) {
    parallel_ranges(pool, out, kRowGrain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t t = 0; t < T; ++t) axpy(dy[t * out + o], x + t * in, dW + o * in, in);
    });
  }
}

}  // namespace

void bitlinear_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                       std::span<const int64_t> groups, bool quantize, float* y, BitLinearCache& cache) {
  check_sizes("bitlinear_forward", T, in, out);
  int64_t rows = 0;
  for (const int64_t g : groups) {
    if (g <= 0) fail("bitlinear_forward: a group of {} rows (groups must be positive)", g);
    rows += g;
  }
  if (rows != out) fail("bitlinear_forward: the groups add up to {} rows, the matrix has {}", rows, out);

  cache.quantized = quantize;
  if (!quantize) {
    cache.xq.clear();
    cache.dq.clear();
    cache.wq.clear();
    cache.row_scale.clear();
    float_forward(pool, x, T, in, W, out, y);
    return;
  }

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
    for (int64_t t = t0; t < t1; ++t) {
      int8_t* xq = cache.xq.data() + t * in;
      float s = 0, dq = 0;
      int32_t sum = 0;
      quantize_act_row_ref(x + t * in, in, in, xq, &s, &dq, &sum);
      cache.dq[static_cast<size_t>(t)] = dq;
      float* yr = y + t * out;
      for (int64_t o = 0; o < out; ++o) yr[o] = gemm_scale(dot_i8(xq, wq + o * in, in), row_scale[o], dq);
    }
  });
}

void bitlinear_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in,
                        const float* W, int64_t out, const BitLinearCache& cache, float* dx, float* dW) {
  check_sizes("bitlinear_backward", T, in, out);
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
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t o = 0; o < out; ++o)
          axpy_i8(dy[t * out + o] * row_scale[o], wq + o * in, dx + t * in, in);
    });
  }
  // dW += dy^T . (xq * dq), the output row outer so each thread owns its rows of dW.
  if (dW != nullptr) {
    parallel_ranges(pool, out, kRowGrain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t t = 0; t < T; ++t) axpy_i8(dy[t * out + o] * dq[t], xq + t * in, dW + o * in, in);
    });
  }
}

void matmul_forward(ThreadPool* pool, const float* x, int64_t T, int64_t in, const float* W, int64_t out,
                    float* y) {
  check_sizes("matmul_forward", T, in, out);
  float_forward(pool, x, T, in, W, out, y);
}

void matmul_backward(ThreadPool* pool, const float* dy, const float* x, int64_t T, int64_t in, const float* W,
                     int64_t out, float* dx, float* dW) {
  check_sizes("matmul_backward", T, in, out);
  float_backward(pool, dy, x, T, in, W, out, dx, dW);
}

}  // namespace bitnet::train
