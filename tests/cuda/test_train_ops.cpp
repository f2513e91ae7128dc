// The GPU training ops against the CPU ones (training/ops.h) on random data: the quantized
// BitLinear forward bit for bit (codes, scales, integer products, y), the embedding exactly, the rest
// to a relative error below 1e-5, except the ops whose products run in bf16 on the tensor cores
// (attention, the quantized BitLinear backward: 1e-2, kBf16Tol says why); gradients start random so that +=
// is checked, outputs start as NaN so that an element the GPU does not write fails. Each test skips without a
// GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/device.h"
#include "cuda/train_ops.h"
#include "training/adamw.h"
#include "training/ops.h"
#include "training/test_util.h"

namespace bitnet::cuda {
namespace {

using test_util::random_vec;
using test_util::Vec;

template <typename T>
Buffer<T> on_device(const std::vector<T>& v) {
  Buffer<T> b;
  b.upload(v);
  return b;
}

// All bits set: NaN as a float, so an element left unwritten fails every comparison.
template <typename T>
Buffer<T> poisoned(size_t n) {
  Buffer<T> b(n);
  b.fill_bytes(0xFF);
  return b;
}

// ||got - want|| / ||want|| in double (NaN anywhere makes it NaN, which fails EXPECT_LT).
double rel_err(const Vec& got, const Vec& want) {
  if (got.size() != want.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

constexpr double kTol = 1e-5;

#define EXPECT_CLOSE(got, want, what)                                             \
  do {                                                                            \
    const double e_ = rel_err(got, want);                                         \
    EXPECT_LT(e_, kTol) << (what) << ": relative error of the GPU result " << e_; \
  } while (0)

// Ops whose products run in bf16 on the tensor cores (each test says why this bound).
constexpr double kBf16Tol = 1e-2;

// bf16 bits as floats, and floats rounded to bf16 (to nearest, ties to even; finite inputs).
Vec from_bf16(const std::vector<kern::bf16_t>& bits) {
  Vec v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    const uint32_t u = static_cast<uint32_t>(bits[i]) << 16;
    std::memcpy(&v[i], &u, sizeof(float));
  }
  return v;
}
std::vector<kern::bf16_t> to_bf16_bits(const Vec& v) {
  std::vector<kern::bf16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u = 0;
    std::memcpy(&u, &v[i], sizeof(float));
    bits[i] = static_cast<kern::bf16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
  return bits;
}

// rel_err of the increments got - start against want - start: what an accumulating backward added.
double grad_err(Vec got, Vec want, const Vec& start) {
  if (got.size() != start.size() || want.size() != start.size()) return INFINITY;
  for (size_t i = 0; i < start.size(); ++i) {
    got[i] -= start[i];
    want[i] -= start[i];
  }
  return rel_err(got, want);
}

// Bit-for-bit equality, naming the first difference.
template <typename T>
void expect_same(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  if (bad > 0)
    ADD_FAILURE() << what << ": " << bad << " of " << got.size() << " elements differ, the first at " << first
                  << " (GPU " << +got[first] << ", CPU " << +want[first] << ")";
}

// The [rows][cols] part of a [rows][ld] matrix; the padding columns must be zero.
template <typename T>
std::vector<T> unpad(const std::vector<T>& m, int64_t rows, int64_t ld, int64_t cols, int64_t pad_rows,
                     const std::string& what) {
  std::vector<T> out(static_cast<size_t>(rows * cols));
  size_t nonzero = 0;
  for (int64_t r = 0; r < pad_rows; ++r)
    for (int64_t c = 0; c < ld; ++c) {
      const T v = m[static_cast<size_t>(r * ld + c)];
      if (r < rows && c < cols)
        out[static_cast<size_t>(r * cols + c)] = v;
      else if (v != T{0})
        ++nonzero;
    }
  EXPECT_EQ(nonzero, 0u) << what << ": the padding must be zero";
  return out;
}

// ---- BitLinear ---------------------------------------------------------------------------------

struct LinearCase {
  int64_t T, in, out;
  std::vector<int64_t> groups;
};

const LinearCase kLinearCases[] = {
    {6, 37, 29, {13, 16}},             // odd sizes: in and out padded, two groups
    {5, 64, 8, {8}},                   // aligned, one group
    {256, 512, 768, {256, 256, 256}},  // q|k|v-like
};

// Inputs with varied row magnitudes, and an all-zero row (the 1e-5 floor of the scale).
Vec linear_input(const LinearCase& c, uint32_t seed) {
  Vec x = random_vec(static_cast<size_t>(c.T * c.in), seed, -2.0f, 2.0f);
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t i = 0; i < c.in; ++i) x[static_cast<size_t>(t * c.in + i)] *= (t % 3 == 1) ? 40.0f : 1.0f;
  if (c.T > 2)
    for (int64_t i = 0; i < c.in; ++i) x[static_cast<size_t>(2 * c.in + i)] = 0.0f;
  return x;
}

TEST(CudaTrainOps, BitLinearQuantizedForwardIsExact) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 1;
  for (const LinearCase& c : kLinearCases) {
    for (const bool dp4a : {false, true}) {
      const std::string name = "T=" + std::to_string(c.T) + " in=" + std::to_string(c.in) +
                               " out=" + std::to_string(c.out) + (dp4a ? " dp4a" : " cuBLASLt");
      const Vec x = linear_input(c, seed++);
      const Vec W = random_vec(static_cast<size_t>(c.out * c.in), seed++, -0.05f, 0.05f);
      Vec y_cpu(static_cast<size_t>(c.T * c.out));
      train::BitLinearCache cc;
      train::bitlinear_forward(nullptr, x.data(), c.T, c.in, W.data(), c.out, c.groups, true, y_cpu.data(),
                               cc);

      Buffer<float> dx = on_device(x), dW = on_device(W);
      Buffer<float> dy = poisoned<float>(y_cpu.size());
      BitLinearCache gc;
      ctx.force_dp4a = dp4a;
      bitlinear_forward(ctx, dx.data(), c.T, c.in, dW.data(), c.out, c.groups, true, dy.data(), gc, nullptr);
      ctx.force_dp4a = false;
      if (!dp4a)
        std::printf("[   info   ] %s: cuBLASLt int8 %s\n", name.c_str(),
                    gc.used_cublaslt ? "used" : "refused");
      ASSERT_TRUE(gc.quantized);
      ASSERT_EQ(gc.in_pad % 4, 0);
      ASSERT_EQ(gc.out_pad % 4, 0);

      expect_same(unpad(gc.xq.download(), c.T, gc.in_pad, c.in, c.T, name + " xq"), cc.xq, name + " xq");
      expect_same(gc.dq.download(), cc.dq, name + " dq");
      expect_same(unpad(gc.wq.download(), c.out, gc.in_pad, c.in, gc.out_pad, name + " wq"), cc.wq,
                  name + " wq");
      expect_same(gc.row_scale.download(), cc.row_scale, name + " row_scale");

      // The integer products against the CPU's codes.
      std::vector<int32_t> acc_cpu(static_cast<size_t>(c.T * c.out));
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t o = 0; o < c.out; ++o) {
          int32_t s = 0;
          for (int64_t i = 0; i < c.in; ++i)
            s += int32_t{cc.xq[static_cast<size_t>(t * c.in + i)]} *
                 int32_t{cc.wq[static_cast<size_t>(o * c.in + i)]};
          acc_cpu[static_cast<size_t>(t * c.out + o)] = s;
        }
      expect_same(unpad(gc.acc.download(), c.T, gc.out_pad, c.out, c.T, name + " acc"), acc_cpu,
                  name + " acc");
      expect_same(dy.download(), y_cpu, name + " y");
    }
  }
}

TEST(CudaTrainOps, BitLinearFloatForward) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 100;
  for (const LinearCase& c : kLinearCases) {
    const Vec x = linear_input(c, seed++);
    const Vec W = random_vec(static_cast<size_t>(c.out * c.in), seed++, -0.05f, 0.05f);
    Vec y_cpu(static_cast<size_t>(c.T * c.out));
    train::BitLinearCache cc;
    train::bitlinear_forward(nullptr, x.data(), c.T, c.in, W.data(), c.out, c.groups, false, y_cpu.data(),
                             cc);
    Buffer<float> dx = on_device(x), dW = on_device(W);
    Buffer<float> dy = poisoned<float>(y_cpu.size());
    BitLinearCache gc;
    bitlinear_forward(ctx, dx.data(), c.T, c.in, dW.data(), c.out, c.groups, false, dy.data(), gc, nullptr);
    EXPECT_FALSE(gc.quantized);
    EXPECT_CLOSE(dy.download(), y_cpu, "fp32 y, T=" + std::to_string(c.T));
  }
}

TEST(CudaTrainOps, BitLinearBackwardAccumulates) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 200;
  for (const LinearCase& c : kLinearCases) {
    for (const bool quantize : {true, false}) {
      const std::string name = std::string(quantize ? "quantized" : "fp32") + " T=" + std::to_string(c.T) +
                               " in=" + std::to_string(c.in) + " out=" + std::to_string(c.out);
      const Vec x = linear_input(c, seed++);
      const Vec W = random_vec(static_cast<size_t>(c.out * c.in), seed++, -0.05f, 0.05f);
      const Vec gy = random_vec(static_cast<size_t>(c.T * c.out), seed++);
      const Vec dx0 = random_vec(x.size(), seed++), dW0 = random_vec(W.size(), seed++);
      Vec y(gy.size()), dx_cpu = dx0, dW_cpu = dW0;
      train::BitLinearCache cc;
      train::bitlinear_forward(nullptr, x.data(), c.T, c.in, W.data(), c.out, c.groups, quantize, y.data(),
                               cc);
      train::bitlinear_backward(nullptr, gy.data(), x.data(), c.T, c.in, W.data(), c.out, cc, dx_cpu.data(),
                                dW_cpu.data());

      Buffer<float> d_x = on_device(x), d_W = on_device(W), d_gy = on_device(gy), d_y(y.size());
      Buffer<float> d_dx = on_device(dx0), d_dW = on_device(dW0);
      BitLinearCache gc;
      bitlinear_forward(ctx, d_x.data(), c.T, c.in, d_W.data(), c.out, c.groups, quantize, d_y.data(), gc,
                        nullptr);
      bitlinear_backward(ctx, d_gy.data(), d_x.data(), c.T, c.in, d_W.data(), c.out, gc, d_dx.data(),
                         d_dW.data(), nullptr);
      if (quantize) {
        // The quantized backward's products run in bf16 (train_linear.cpp): the codes are exact, dy
        // times a scale is rounded to bf16 (2^-9 relative), so the gradients agree to about 1e-3.
        // 1e-2 still catches a wrong scale, code or transpose (errors of order 1). Compared without
        // the random start, which would otherwise dilute the error.
        const double e_dx = grad_err(d_dx.download(), dx_cpu, dx0),
                     e_dW = grad_err(d_dW.download(), dW_cpu, dW0);
        std::printf("[   info ] bitlinear backward %s: relative error dx %.2e dW %.2e\n", name.c_str(), e_dx,
                    e_dW);
        EXPECT_LT(e_dx, kBf16Tol) << name << " dx";
        EXPECT_LT(e_dW, kBf16Tol) << name << " dW";
      } else {
        EXPECT_CLOSE(d_dx.download(), dx_cpu, name + " dx");
        EXPECT_CLOSE(d_dW.download(), dW_cpu, name + " dW");
      }

      // dx null: dW alone, the same result.
      Buffer<float> d_dW2 = on_device(dW0);
      bitlinear_backward(ctx, d_gy.data(), d_x.data(), c.T, c.in, d_W.data(), c.out, gc, nullptr,
                         d_dW2.data(), nullptr);
      expect_same(d_dW2.download(), d_dW.download(), name + " dW without dx");

      // accumulate_dx false: dx overwritten (a poisoned buffer holds the gradient alone afterwards),
      // dW still accumulated.
      Buffer<float> d_dx3 = poisoned<float>(x.size()), d_dW3 = on_device(dW0);
      bitlinear_backward(ctx, d_gy.data(), d_x.data(), c.T, c.in, d_W.data(), c.out, gc, d_dx3.data(),
                         d_dW3.data(), nullptr, /*accumulate_dx=*/false);
      Vec dx_alone = dx_cpu;
      for (size_t i = 0; i < dx_alone.size(); ++i) dx_alone[i] -= dx0[i];
      EXPECT_LT(rel_err(d_dx3.download(), dx_alone), quantize ? kBf16Tol : 1e-4) << name << " dx overwritten";
      expect_same(d_dW3.download(), d_dW.download(), name + " dW with dx overwritten");
    }
  }
}

TEST(CudaTrainOps, MatmulForwardBackward) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 300;
  for (const LinearCase& c : kLinearCases) {
    const std::string name = "T=" + std::to_string(c.T) + " in=" + std::to_string(c.in);
    const Vec x = random_vec(static_cast<size_t>(c.T * c.in), seed++);
    const Vec W = random_vec(static_cast<size_t>(c.out * c.in), seed++);
    const Vec gy = random_vec(static_cast<size_t>(c.T * c.out), seed++);
    const Vec dx0 = random_vec(x.size(), seed++), dW0 = random_vec(W.size(), seed++);
    Vec y_cpu(gy.size()), dx_cpu = dx0, dW_cpu = dW0;
    train::matmul_forward(nullptr, x.data(), c.T, c.in, W.data(), c.out, y_cpu.data());
    train::matmul_backward(nullptr, gy.data(), x.data(), c.T, c.in, W.data(), c.out, dx_cpu.data(),
                           dW_cpu.data());

    Buffer<float> d_x = on_device(x), d_W = on_device(W), d_gy = on_device(gy);
    Buffer<float> d_y = poisoned<float>(y_cpu.size()), d_dx = on_device(dx0), d_dW = on_device(dW0);
    matmul_forward(ctx, d_x.data(), c.T, c.in, d_W.data(), c.out, d_y.data(), nullptr);
    matmul_backward(ctx, d_gy.data(), d_x.data(), c.T, c.in, d_W.data(), c.out, d_dx.data(), d_dW.data(),
                    nullptr);
    EXPECT_CLOSE(d_y.download(), y_cpu, name + " y");
    EXPECT_CLOSE(d_dx.download(), dx_cpu, name + " dx");
    EXPECT_CLOSE(d_dW.download(), dW_cpu, name + " dW");

    // The bf16 head: x, W and dy rounded to bf16 (relative 2^-9 each), fp32 sums, y rounded to bf16:
    // kBf16Tol. dx is written, dW added to.
    MatmulBf16Cache cache;
    Buffer<kern::bf16_t> d_gy16(gy.size());
    kern::to_bf16(d_gy.data(), static_cast<int64_t>(gy.size()), d_gy16.data(), nullptr);
    Buffer<kern::bf16_t> d_y16 = poisoned<kern::bf16_t>(y_cpu.size());
    Buffer<float> d_dx16 = poisoned<float>(x.size()), d_dW16 = on_device(dW0);
    matmul_bf16_forward(ctx, d_x.data(), c.T, c.in, d_W.data(), c.out, d_y16.data(), cache, nullptr);
    matmul_bf16_backward(ctx, d_gy16.data(), c.T, c.in, c.out, cache, d_dx16.data(), d_dW16.data(), nullptr);
    Vec dx_alone = dx_cpu;
    for (size_t i = 0; i < dx_alone.size(); ++i) dx_alone[i] -= dx0[i];
    const double e_y = rel_err(from_bf16(d_y16.download()), y_cpu),
                 e_dx = rel_err(d_dx16.download(), dx_alone), e_dW = grad_err(d_dW16.download(), dW_cpu, dW0);
    std::printf("[   info ] bf16 matmul %s: relative error y %.2e dx %.2e dW %.2e\n", name.c_str(), e_y, e_dx,
                e_dW);
    EXPECT_LT(e_y, kBf16Tol) << name << " bf16 y";
    EXPECT_LT(e_dx, kBf16Tol) << name << " bf16 dx";
    EXPECT_LT(e_dW, kBf16Tol) << name << " bf16 dW";
  }
}

TEST(CudaTrainOps, LinearBadShapesFail) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  Buffer<float> x(64), W(64), y(64);
  x.fill_bytes(0);
  W.fill_bytes(0);
  BitLinearCache gc;
  const std::vector<int64_t> bad_groups{3, 3}, zero_group{8, 0};
  EXPECT_THROW(bitlinear_forward(ctx, x.data(), 1, 8, W.data(), 8, bad_groups, true, y.data(), gc, nullptr),
               Error);
  EXPECT_THROW(bitlinear_forward(ctx, x.data(), 1, 8, W.data(), 8, zero_group, true, y.data(), gc, nullptr),
               Error);
  EXPECT_THROW(matmul_forward(ctx, x.data(), 1, 0, W.data(), 8, y.data(), nullptr), Error);
  const std::vector<int64_t> one{8};
  bitlinear_forward(ctx, x.data(), 1, 8, W.data(), 8, one, true, y.data(), gc, nullptr);
  EXPECT_THROW(
      bitlinear_backward(ctx, y.data(), x.data(), 2, 8, W.data(), 8, gc, x.data(), W.data(), nullptr),
      Error);  // the cache is for T=1
}

// ---- RMSNorm -----------------------------------------------------------------------------------

TEST(CudaTrainOps, RmsNormForwardBackward) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 400;
  // The warp-per-row kernel: 512, 768 (the trainer's d, over two chunks) and 2048; n 37 (not whole
  // float4s), 3000 and 5000 (past a warp's registers): the two kernels instead.
  for (const auto& [T, n] :
       {std::pair<int64_t, int64_t>{6, 37}, {200, 512}, {130, 768}, {1, 3000}, {40, 2048}, {3, 5000}}) {
    const std::string name = "T=" + std::to_string(T) + " n=" + std::to_string(n);
    const float eps = 1e-5f;
    const Vec x = random_vec(static_cast<size_t>(T * n), seed++, -3.0f, 3.0f);
    const Vec w = random_vec(static_cast<size_t>(n), seed++, 0.5f, 1.5f);
    const Vec gy = random_vec(x.size(), seed++);
    const Vec dx0 = random_vec(x.size(), seed++), dw0 = random_vec(w.size(), seed++);
    Vec y_cpu(x.size()), rstd_cpu(static_cast<size_t>(T)), dx_cpu = dx0, dw_cpu = dw0;
    train::rmsnorm_forward(x.data(), w.data(), T, n, eps, y_cpu.data(), rstd_cpu.data());
    train::rmsnorm_backward(gy.data(), x.data(), w.data(), rstd_cpu.data(), T, n, dx_cpu.data(),
                            dw_cpu.data());

    Buffer<float> d_x = on_device(x), d_w = on_device(w), d_gy = on_device(gy);
    Buffer<float> d_y = poisoned<float>(y_cpu.size()), d_rstd = poisoned<float>(rstd_cpu.size());
    Buffer<float> d_dx = on_device(dx0), d_dw = on_device(dw0);
    rmsnorm_forward(d_x.data(), d_w.data(), T, n, eps, d_y.data(), d_rstd.data(), nullptr);
    rmsnorm_backward(ctx, d_gy.data(), d_x.data(), d_w.data(), d_rstd.data(), T, n, d_dx.data(), d_dw.data(),
                     nullptr);
    EXPECT_CLOSE(d_y.download(), y_cpu, name + " y");
    EXPECT_CLOSE(d_rstd.download(), rstd_cpu, name + " rstd");
    EXPECT_CLOSE(d_dx.download(), dx_cpu, name + " dx");
    EXPECT_CLOSE(d_dw.download(), dw_cpu, name + " dw");

    // Deterministic: the same bits again.
    Buffer<float> d_dw2 = on_device(dw0);
    rmsnorm_backward(ctx, d_gy.data(), d_x.data(), d_w.data(), d_rstd.data(), T, n, nullptr, d_dw2.data(),
                     nullptr);
    expect_same(d_dw2.download(), d_dw.download(), name + " dw run twice");

    // accumulate_dx false: dx written into a poisoned buffer, dw null.
    Vec dx_alone(x.size(), 0.0f), dw_unused(w.size(), 0.0f);
    train::rmsnorm_backward(gy.data(), x.data(), w.data(), rstd_cpu.data(), T, n, dx_alone.data(),
                            dw_unused.data());
    Buffer<float> d_dx3 = poisoned<float>(x.size());
    rmsnorm_backward(ctx, d_gy.data(), d_x.data(), d_w.data(), d_rstd.data(), T, n, d_dx3.data(), nullptr,
                     nullptr,
                     /*accumulate_dx=*/false);
    EXPECT_CLOSE(d_dx3.download(), dx_alone, name + " dx overwritten");
  }
  EXPECT_THROW(rmsnorm_forward(nullptr, nullptr, 1, 0, 1e-5f, nullptr, nullptr, nullptr), Error);
}

// The one-pass norm + quantization against rmsnorm_forward then bitlinear_forward's own
// quantization on the GPU: the same codes, scales, rstd and product, bit for bit. n 37 and 5000:
// the rows the one-pass kernel does not take (the two kernels through scratch).
TEST(CudaTrainOps, RmsNormQuantizeIsTheUnfusedPair) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 450;
  for (const auto& [T, n] :
       {std::pair<int64_t, int64_t>{6, 37}, {130, 768}, {40, 2048}, {9, 100}, {3, 5000}}) {
    const std::string name = "T=" + std::to_string(T) + " n=" + std::to_string(n);
    const int64_t out = 24;
    const std::vector<int64_t> groups{16, 8};
    Vec x = random_vec(static_cast<size_t>(T * n), seed++, -3.0f, 3.0f);
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = 0.0f;  // an all-zero row: amax's floor
    const Vec w = random_vec(static_cast<size_t>(n), seed++, 0.5f, 1.5f);
    const Vec W = random_vec(static_cast<size_t>(out * n), seed++);
    Buffer<float> d_x = on_device(x), d_w = on_device(w), d_W = on_device(W);
    Buffer<float> d_h = poisoned<float>(x.size()), d_rstd = poisoned<float>(static_cast<size_t>(T));
    Buffer<float> d_y = poisoned<float>(static_cast<size_t>(T * out));
    BitLinearCache a, b;
    rmsnorm_forward(d_x.data(), d_w.data(), T, n, 1e-5f, d_h.data(), d_rstd.data(), nullptr);
    bitlinear_forward(ctx, d_h.data(), T, n, d_W.data(), out, groups, true, d_y.data(), a, nullptr);
    Buffer<float> d_rstd2 = poisoned<float>(static_cast<size_t>(T)), d_y2 = poisoned<float>(d_y.size());
    rmsnorm_quantize(ctx, d_x.data(), d_w.data(), T, n, 1e-5f, d_rstd2.data(), b, nullptr);
    bitlinear_forward_codes(ctx, T, n, d_W.data(), out, groups, d_y2.data(), b, nullptr);
    expect_same(b.xq.download(), a.xq.download(), name + " codes");
    expect_same(b.dq.download(), a.dq.download(), name + " 1/s");
    expect_same(d_rstd2.download(), d_rstd.download(), name + " rstd");
    expect_same(b.acc.download(), a.acc.download(), name + " integer products");
    expect_same(d_y2.download(), d_y.download(), name + " y");
  }
  BitLinearCache empty;
  Buffer<float> W(64), y(64);
  const std::vector<int64_t> one{8};
  EXPECT_THROW(bitlinear_forward_codes(ctx, 1, 8, W.data(), 8, one, y.data(), empty, nullptr), Error);
}

// ---- RoPE --------------------------------------------------------------------------------------

TEST(CudaTrainOps, RopeForwardBackward) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  uint32_t seed = 500;
  struct Case {
    int64_t T, seq, nh, nkv, hd, rope_dim;
  };
  for (const Case c : {Case{6, 3, 4, 2, 6, 6}, Case{6, 3, 4, 2, 6, 4}, Case{128, 64, 8, 2, 64, 64}}) {
    for (const RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
      const train::RopeShape s{c.seq, c.nh, c.nkv, c.hd, c.rope_dim, 10000.0f, style};
      const std::string name = "T=" + std::to_string(c.T) + " hd=" + std::to_string(c.hd) +
                               " rope_dim=" + std::to_string(c.rope_dim) +
                               (style == RopeStyle::kNeox ? " neox" : " norm");
      const int64_t C = (c.nh + 2 * c.nkv) * c.hd;
      const Vec qkv = random_vec(static_cast<size_t>(c.T * C), seed++);
      RopeTable table;
      make_rope_table(s, table);
      Vec f_cpu = qkv, b_cpu = qkv;
      train::rope_forward(f_cpu.data(), c.T, s);
      train::rope_backward(b_cpu.data(), c.T, s);
      Buffer<float> f = on_device(qkv), b = on_device(qkv);
      rope_forward(f.data(), c.T, s, table, nullptr);
      rope_backward(b.data(), c.T, s, table, nullptr);
      EXPECT_CLOSE(f.download(), f_cpu, name + " forward");
      EXPECT_CLOSE(b.download(), b_cpu, name + " backward");
    }
  }
  const train::RopeShape s{3, 4, 2, 6, 6, 10000.0f, RopeStyle::kNeox};
  RopeTable table;
  make_rope_table(s, table);
  Buffer<float> q(100);
  EXPECT_THROW(rope_forward(q.data(), 4, s, table, nullptr), Error);  // T not a multiple of seq
  train::RopeShape other = s;
  other.seq = 6;
  EXPECT_THROW(rope_forward(q.data(), 6, other, table, nullptr), Error);  // the table is for seq 3
}

// ---- attention ---------------------------------------------------------------------------------

// The log-sum-exp of each row's scaled causal scores, in double: what the GPU keeps instead of the
// probabilities.
Vec reference_lse(const Vec& qkv, const train::AttnShape& s) {
  const int64_t hd = s.head_dim, q_dim = s.n_head * hd, kv_dim = s.n_head_kv * hd, C = q_dim + 2 * kv_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  Vec lse(static_cast<size_t>(s.batch * s.n_head * s.seq));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.n_head; ++h)
      for (int64_t i = 0; i < s.seq; ++i) {
        const float* q = &qkv[static_cast<size_t>((b * s.seq + i) * C + h * hd)];
        std::vector<double> sc;
        for (int64_t j = 0; j <= i; ++j) {
          const float* k =
              &qkv[static_cast<size_t>((b * s.seq + j) * C + q_dim + h / (s.n_head / s.n_head_kv) * hd)];
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += static_cast<double>(q[c]) * k[c];
          sc.push_back(d * scale);
        }
        double mx = -INFINITY, sum = 0;
        for (const double v : sc) mx = std::max(mx, v);
        for (const double v : sc) sum += std::exp(v - mx);
        lse[static_cast<size_t>((b * s.n_head + h) * s.seq + i)] = static_cast<float>(mx + std::log(sum));
      }
  return lse;
}

// The GPU's attention rounds Q, K, V, dO and the probabilities to bf16 before each tensor-core
// product (fp32 accumulation; train_attention.cu). A bf16 operand carries a relative error up to
// 2^-9; over the sums of a row that averages out to a few 1e-3 relative: kBf16Tol still catches a
// wrong mask, a missing rescale or a dropped tile (each an error of order 1).

TEST(CudaTrainOps, AttentionForwardBackward) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 600;
  // Shapes: head_dim padded (6, 8 -> 16), one partial tile, GQA, several tiles with a partial last
  // one (130 = 2 x 64 + 2), and the trainer's head_dim 64.
  for (const train::AttnShape s :
       {train::AttnShape{2, 3, 4, 2, 6}, train::AttnShape{1, 17, 3, 3, 8}, train::AttnShape{2, 64, 8, 2, 32},
        train::AttnShape{2, 130, 4, 2, 64}, train::AttnShape{1, 200, 2, 1, 128}}) {
    const std::string name = "batch=" + std::to_string(s.batch) + " seq=" + std::to_string(s.seq) +
                             " heads=" + std::to_string(s.n_head) + "/" + std::to_string(s.n_head_kv) +
                             " hd=" + std::to_string(s.head_dim);
    const int64_t T = s.batch * s.seq, C = (s.n_head + 2 * s.n_head_kv) * s.head_dim,
                  q_dim = s.n_head * s.head_dim;
    const Vec qkv = random_vec(static_cast<size_t>(T * C), seed++, -2.0f, 2.0f);
    const Vec gout = random_vec(static_cast<size_t>(T * q_dim), seed++);
    const Vec dqkv0 = random_vec(qkv.size(), seed++);
    Vec out_cpu(gout.size()), att_cpu(static_cast<size_t>(s.batch * s.n_head * s.seq * s.seq)),
        dqkv_cpu = dqkv0;
    train::attention_forward(nullptr, qkv.data(), s, out_cpu.data(), att_cpu.data());
    train::attention_backward(nullptr, gout.data(), qkv.data(), att_cpu.data(), s, dqkv_cpu.data());

    Buffer<float> d_qkv = on_device(qkv), d_gout = on_device(gout), d_dqkv = on_device(dqkv0);
    Buffer<float> d_out = poisoned<float>(out_cpu.size());
    Buffer<float> d_lse = poisoned<float>(static_cast<size_t>(s.batch * s.n_head * s.seq));
    attention_forward(ctx, d_qkv.data(), s, d_out.data(), d_lse.data(), nullptr);
    attention_backward(ctx, d_gout.data(), d_qkv.data(), d_out.data(), d_lse.data(), s, d_dqkv.data(),
                       nullptr);
    const double e_out = rel_err(d_out.download(), out_cpu),
                 e_lse = rel_err(d_lse.download(), reference_lse(qkv, s));
    const double e_d = grad_err(d_dqkv.download(), dqkv_cpu, dqkv0);
    std::printf("[   info ] attention %s: relative error out %.2e lse %.2e dqkv %.2e\n", name.c_str(), e_out,
                e_lse, e_d);
    EXPECT_LT(e_out, kBf16Tol) << name << " out";
    EXPECT_LT(e_lse, kBf16Tol) << name << " lse";
    EXPECT_LT(e_d, kBf16Tol) << name << " dqkv";

    Buffer<float> d_dqkv2 = on_device(dqkv0);
    attention_backward(ctx, d_gout.data(), d_qkv.data(), d_out.data(), d_lse.data(), s, d_dqkv2.data(),
                       nullptr);
    expect_same(d_dqkv2.download(), d_dqkv.download(), name + " dqkv run twice");

    // accumulate false into a poisoned buffer: every element written, the gradient alone.
    Buffer<float> d_dqkv3 = poisoned<float>(qkv.size());
    attention_backward(ctx, d_gout.data(), d_qkv.data(), d_out.data(), d_lse.data(), s, d_dqkv3.data(),
                       nullptr,
                       /*accumulate=*/false);
    Vec g_cpu = dqkv_cpu;
    for (size_t i = 0; i < g_cpu.size(); ++i) g_cpu[i] -= dqkv0[i];
    EXPECT_LT(rel_err(d_dqkv3.download(), g_cpu), kBf16Tol) << name << " dqkv overwritten";
  }
  EXPECT_THROW(attention_forward(ctx, nullptr, train::AttnShape{1, 4, 3, 2, 8}, nullptr, nullptr, nullptr),
               Error);
  EXPECT_THROW(attention_forward(ctx, nullptr, train::AttnShape{1, 4, 1, 1, 160}, nullptr, nullptr, nullptr),
               Error);
}

// The attention on operands made with RoPE on the way (rope_attention_operands) against
// rope_forward then the attention on the rotated qkv: the same bf16 operands, so the same out, lse
// and dqkv bit for bit; qkv itself is left unrotated.
TEST(CudaTrainOps, AttentionOperandsWithRopeAreTheUnfusedPath) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 650;
  struct Case {
    train::AttnShape s;
    int64_t rope_dim;
  };
  // hd 6 and rope_dim 4 (half 2): the kernel a column at a time; the others four columns at a time,
  // hd 16 with rope_dim 8 rotating half of each head.
  for (const Case c : {Case{{2, 3, 4, 2, 6}, 6}, Case{{1, 17, 3, 3, 8}, 4}, Case{{2, 130, 4, 2, 64}, 64},
                       Case{{1, 40, 2, 1, 128}, 128}, Case{{2, 33, 4, 2, 16}, 8}}) {
    for (const RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
      const train::AttnShape& s = c.s;
      const train::RopeShape rs{s.seq, s.n_head, s.n_head_kv, s.head_dim, c.rope_dim, 10000.0f, style};
      const std::string name = "seq=" + std::to_string(s.seq) + " hd=" + std::to_string(s.head_dim) +
                               " rope_dim=" + std::to_string(c.rope_dim) +
                               (style == RopeStyle::kNeox ? " neox" : " norm");
      const int64_t T = s.batch * s.seq, C = (s.n_head + 2 * s.n_head_kv) * s.head_dim,
                    q_dim = s.n_head * s.head_dim;
      const Vec qkv = random_vec(static_cast<size_t>(T * C), seed++, -2.0f, 2.0f);
      const Vec gout = random_vec(static_cast<size_t>(T * q_dim), seed++);
      RopeTable table;
      make_rope_table(rs, table);
      Buffer<float> d_qkv = on_device(qkv), d_rot = on_device(qkv), d_gout = on_device(gout);
      rope_forward(d_rot.data(), T, rs, table, nullptr);
      Buffer<float> out_a(gout.size()), lse_a(static_cast<size_t>(s.batch * s.n_head * s.seq)),
          dqkv_a(qkv.size());
      attention_forward(ctx, d_rot.data(), s, out_a.data(), lse_a.data(), nullptr);
      attention_backward(ctx, d_gout.data(), d_rot.data(), out_a.data(), lse_a.data(), s, dqkv_a.data(),
                         nullptr, false);
      AttnOperands ops;
      rope_attention_operands(d_qkv.data(), T, rs, table, s, ops, nullptr);
      Buffer<float> out_b = poisoned<float>(gout.size()), lse_b = poisoned<float>(lse_a.size()),
                    dqkv_b = poisoned<float>(qkv.size());
      attention_forward(ctx, ops, s, out_b.data(), lse_b.data(), nullptr);
      attention_backward(ctx, d_gout.data(), ops, out_b.data(), lse_b.data(), s, dqkv_b.data(), nullptr,
                         false);
      expect_same(out_b.download(), out_a.download(), name + " out");
      expect_same(lse_b.download(), lse_a.download(), name + " lse");
      expect_same(dqkv_b.download(), dqkv_a.download(), name + " dqkv");
      expect_same(d_qkv.download(), qkv, name + " qkv untouched");
    }
  }
}

// The qkv product's backward from rope_backward_scaled's operands against rope_backward then
// bitlinear_backward: dx and dW bit for bit, and dqkv left as it was.
TEST(CudaTrainOps, RopeBackwardScaledIsTheUnfusedPair) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 680;
  // rope_dim 12 (half 6): the kernel a column at a time; 8 and 16: four columns at a time.
  for (const int64_t rope_dim : {12, 8, 16})
    for (const RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
      const train::RopeShape rs{16, 4, 2, 16, rope_dim, 10000.0f, style};
      const int64_t T = 32, in = 48, C = (rs.n_head + 2 * rs.n_head_kv) * rs.head_dim;
      const std::vector<int64_t> groups{rs.n_head * rs.head_dim, rs.n_head_kv * rs.head_dim,
                                        rs.n_head_kv * rs.head_dim};
      const std::string name =
          std::string(style == RopeStyle::kNeox ? "neox" : "norm") + " rope_dim=" + std::to_string(rope_dim);
      const Vec h = random_vec(static_cast<size_t>(T * in), seed++),
                W = random_vec(static_cast<size_t>(C * in), seed++);
      const Vec g = random_vec(static_cast<size_t>(T * C), seed++);
      RopeTable table;
      make_rope_table(rs, table);
      Buffer<float> d_h = on_device(h), d_W = on_device(W), d_g = on_device(g), d_g2 = on_device(g);
      Buffer<float> d_y(static_cast<size_t>(T * C));
      BitLinearCache cache;
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), C, groups, true, d_y.data(), cache, nullptr);
      Buffer<float> dx_a = poisoned<float>(h.size()), dx_b = poisoned<float>(h.size()), dW_a(W.size()),
                    dW_b(W.size());
      dW_a.fill_bytes(0);
      dW_b.fill_bytes(0);
      rope_backward(d_g.data(), T, rs, table, nullptr);
      bitlinear_backward(ctx, d_g.data(), d_h.data(), T, in, d_W.data(), C, cache, dx_a.data(), dW_a.data(),
                         nullptr, false);
      Buffer<kern::bf16_t> dy_w(g.size()), dy_x(g.size());
      rope_backward_scaled(d_g2.data(), T, rs, table, cache, dy_w.data(), dy_x.data(), nullptr);
      bitlinear_backward_scaled(ctx, dy_w.data(), dy_x.data(), T, in, C, cache, dx_b.data(), dW_b.data(),
                                nullptr, false);
      expect_same(dx_b.download(), dx_a.download(), name + " dx");
      expect_same(dW_b.download(), dW_a.download(), name + " dW");
      expect_same(d_g2.download(), g, name + " dqkv untouched");
    }
}

// ---- gated activation ----------------------------------------------------------------------------

TEST(CudaTrainOps, GatedForwardBackward) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  uint32_t seed = 700;
  for (const auto& [T, ff] : {std::pair<int64_t, int64_t>{6, 11}, {256, 1000}}) {
    for (const FfnAct act : {FfnAct::kRelu2, FfnAct::kSilu}) {
      const std::string name = "T=" + std::to_string(T) + " ff=" + std::to_string(ff) +
                               (act == FfnAct::kRelu2 ? " relu2" : " silu");
      const Vec gu = random_vec(static_cast<size_t>(T * 2 * ff), seed++, -3.0f, 3.0f);
      const Vec gout = random_vec(static_cast<size_t>(T * ff), seed++);
      const Vec dgu0 = random_vec(gu.size(), seed++);
      Vec out_cpu(gout.size()), dgu_cpu = dgu0;
      train::gated_forward(gu.data(), T, ff, act, out_cpu.data());
      train::gated_backward(gout.data(), gu.data(), T, ff, act, dgu_cpu.data());
      Buffer<float> d_gu = on_device(gu), d_gout = on_device(gout), d_dgu = on_device(dgu0);
      Buffer<float> d_out = poisoned<float>(out_cpu.size());
      gated_forward(d_gu.data(), T, ff, act, d_out.data(), nullptr);
      gated_backward(d_gout.data(), d_gu.data(), T, ff, act, d_dgu.data(), nullptr);
      EXPECT_CLOSE(d_out.download(), out_cpu, name + " out");
      EXPECT_CLOSE(d_dgu.download(), dgu_cpu, name + " dgu");

      // Overwriting (no accumulation) into a poisoned buffer: the gradient alone.
      Vec dgu_only(gu.size(), 0.0f);
      train::gated_backward(gout.data(), gu.data(), T, ff, act, dgu_only.data());
      Buffer<float> d_set = poisoned<float>(gu.size());
      gated_backward(d_gout.data(), d_gu.data(), T, ff, act, d_set.data(), nullptr, false);
      EXPECT_CLOSE(d_set.download(), dgu_only, name + " dgu overwritten");
    }
  }
}

// ---- embedding ---------------------------------------------------------------------------------

std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = u(rng);
  return v;
}

// The gate|up product's backward from gated_backward_scaled's operands: the same bf16 operands as
// bitlinear_backward makes from gated_backward's dgu, so the same dx and dW bit for bit.
TEST(CudaTrainOps, GatedBackwardScaledIsTheUnfusedPair) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 750;
  for (const auto& [T, ff] : {std::pair<int64_t, int64_t>{6, 11}, {64, 256}}) {
    for (const FfnAct act : {FfnAct::kRelu2, FfnAct::kSilu}) {
      const std::string name = "T=" + std::to_string(T) + " ff=" + std::to_string(ff) +
                               (act == FfnAct::kRelu2 ? " relu2" : " silu");
      const int64_t in = 40;
      const std::vector<int64_t> groups{ff, ff};
      const Vec h = random_vec(static_cast<size_t>(T * in), seed++);
      const Vec W = random_vec(static_cast<size_t>(2 * ff * in), seed++);
      const Vec gu = random_vec(static_cast<size_t>(T * 2 * ff), seed++, -3.0f, 3.0f);
      const Vec dout = random_vec(static_cast<size_t>(T * ff), seed++);
      Buffer<float> d_h = on_device(h), d_W = on_device(W), d_gu = on_device(gu), d_dout = on_device(dout);
      Buffer<float> d_y(static_cast<size_t>(T * 2 * ff));
      BitLinearCache cache;
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), 2 * ff, groups, true, d_y.data(), cache, nullptr);
      Buffer<float> d_dgu(gu.size()), dx_a = poisoned<float>(h.size()), dx_b = poisoned<float>(h.size());
      Buffer<float> dW_a(W.size()), dW_b(W.size());
      dW_a.fill_bytes(0);
      dW_b.fill_bytes(0);
      gated_backward(d_dout.data(), d_gu.data(), T, ff, act, d_dgu.data(), nullptr, false);
      bitlinear_backward(ctx, d_dgu.data(), d_h.data(), T, in, d_W.data(), 2 * ff, cache, dx_a.data(),
                         dW_a.data(), nullptr, false);
      Buffer<kern::bf16_t> dy_w(gu.size()), dy_x(gu.size());
      gated_backward_scaled(d_dout.data(), d_gu.data(), T, ff, act, cache, dy_w.data(), dy_x.data(), nullptr);
      bitlinear_backward_scaled(ctx, dy_w.data(), dy_x.data(), T, in, 2 * ff, cache, dx_b.data(), dW_b.data(),
                                nullptr, false);
      expect_same(dx_b.download(), dx_a.download(), name + " dx");
      expect_same(dW_b.download(), dW_a.download(), name + " dW");
    }
  }
}

// The ops that read a product from its cache (the epilogue applied on read, the float output never
// written) give bit for bit what they give from the epilogue's output: the activation and its
// scaled backward from the gate|up product, the residual add from a product. Odd sizes: out = 2 ff
// not a multiple of 4 (ff odd), so the cache's rows are padded (out_pad > out).
TEST(CudaTrainOps, OpsReadingTheProductAreTheEpiloguePath) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 770;
  for (const auto& [T, ff] : {std::pair<int64_t, int64_t>{7, 13}, {65, 257}}) {
    for (const FfnAct act : {FfnAct::kRelu2, FfnAct::kSilu}) {
      const std::string name = "T=" + std::to_string(T) + " ff=" + std::to_string(ff) +
                               (act == FfnAct::kRelu2 ? " relu2" : " silu");
      const int64_t in = 37;
      const std::vector<int64_t> groups{ff, ff};
      const Vec h = random_vec(static_cast<size_t>(T * in), seed++, -4.0f, 4.0f);
      const Vec W = random_vec(static_cast<size_t>(2 * ff * in), seed++);
      const Vec dout = random_vec(static_cast<size_t>(T * ff), seed++);
      Buffer<float> d_h = on_device(h), d_W = on_device(W), d_dout = on_device(dout);
      Buffer<float> d_gu(static_cast<size_t>(T * 2 * ff));
      BitLinearCache with_y, without_y;
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), 2 * ff, groups, true, d_gu.data(), with_y,
                        nullptr);
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), 2 * ff, groups, true, nullptr, without_y,
                        nullptr);
      ASSERT_GT(without_y.out_pad, without_y.out) << name;  // the padded rows are skipped on read

      Buffer<float> act_a = poisoned<float>(dout.size()), act_b = poisoned<float>(dout.size());
      gated_forward(d_gu.data(), T, ff, act, act_a.data(), nullptr);
      gated_forward(without_y, T, ff, act, act_b.data(), nullptr);
      expect_same(act_b.download(), act_a.download(), name + " activation");

      Buffer<kern::bf16_t> w_a(static_cast<size_t>(T * 2 * ff)), x_a(w_a.size()), w_b(w_a.size()),
          x_b(w_a.size());
      gated_backward_scaled(d_dout.data(), d_gu.data(), T, ff, act, with_y, w_a.data(), x_a.data(), nullptr);
      gated_backward_scaled(d_dout.data(), nullptr, T, ff, act, without_y, w_b.data(), x_b.data(), nullptr);
      expect_same(w_b.download(), w_a.download(), name + " dy_w");
      expect_same(x_b.download(), x_a.download(), name + " dy_x");

      // The residual add of the whole product (out = 2 ff rows).
      const Vec res = random_vec(static_cast<size_t>(T * 2 * ff), seed++);
      Buffer<float> d_res = on_device(res), sum_a = poisoned<float>(res.size()),
                    sum_b = poisoned<float>(res.size());
      kern::add(d_res.data(), d_gu.data(), T * 2 * ff, sum_a.data(), nullptr);
      add_product(d_res.data(), without_y, T, 2 * ff, sum_b.data(), nullptr);
      expect_same(sum_b.download(), sum_a.download(), name + " residual");
    }
  }
  // RoPE and the attention's operands from the qkv product (odd head counts: out = 5 * 6 = 30, padded
  // to 32 in the cache, read a column at a time; hd 16: 80 columns read four at a time).
  for (const auto& [hd, rope_dim] : {std::pair<int64_t, int64_t>{6, 4}, {16, 8}})
    for (const RopeStyle style : {RopeStyle::kNeox, RopeStyle::kNorm}) {
      const train::AttnShape as{2, 9, 3, 1, hd};
      const train::RopeShape rs{as.seq, as.n_head, as.n_head_kv, as.head_dim, rope_dim, 10000.0f, style};
      const int64_t T = as.batch * as.seq, in = 21, C = (as.n_head + 2 * as.n_head_kv) * as.head_dim;
      const std::vector<int64_t> groups{as.n_head * as.head_dim, as.n_head_kv * as.head_dim,
                                        as.n_head_kv * as.head_dim};
      Buffer<float> d_h = on_device(random_vec(static_cast<size_t>(T * in), seed++, -3.0f, 3.0f));
      Buffer<float> d_W = on_device(random_vec(static_cast<size_t>(C * in), seed++));
      Buffer<float> d_qkv(static_cast<size_t>(T * C));
      BitLinearCache with_y, without_y;
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), C, groups, true, d_qkv.data(), with_y, nullptr);
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), C, groups, true, nullptr, without_y, nullptr);
      RopeTable table;
      make_rope_table(rs, table);
      AttnOperands a, b;
      rope_attention_operands(d_qkv.data(), T, rs, table, as, a, nullptr);
      rope_attention_operands(without_y, T, rs, table, as, b, nullptr);
      // The buffer's tail past the last head row (its size is rounded up to 256 bytes) is written by
      // neither path: compare the rows, each head padded to 16 columns.
      const size_t rows = static_cast<size_t>(T * (as.n_head + 2 * as.n_head_kv) * 16);
      ASSERT_GE(a.qh.size(), rows);
      std::vector<kern::bf16_t> qa = a.qh.download(), qb = b.qh.download();
      qa.resize(rows);
      qb.resize(rows);
      expect_same(qb, qa, style == RopeStyle::kNeox ? "operands neox" : "operands norm");
      EXPECT_THROW(rope_attention_operands(without_y, T - 1, rs, table, as, b, nullptr), Error);
    }

  // A cache of another shape, or of an fp32 product, is refused.
  BitLinearCache cache;
  Buffer<float> x = on_device(random_vec(4 * 8, 1)), w = on_device(random_vec(8 * 8, 2)), out(4 * 8);
  const std::vector<int64_t> one{8};
  bitlinear_forward(ctx, x.data(), 4, 8, w.data(), 8, one, true, nullptr, cache, nullptr);
  EXPECT_THROW(add_product(x.data(), cache, 5, 8, out.data(), nullptr), Error);
  EXPECT_THROW(gated_forward(cache, 4, 8, FfnAct::kRelu2, out.data(), nullptr), Error);
  EXPECT_THROW(bitlinear_forward(ctx, x.data(), 4, 8, w.data(), 8, one, false, nullptr, cache, nullptr),
               Error);
}

// The fused norm ops give bit for bit what the separate ops give: the residual add then the norm's
// codes, and the activation then the sub-norm's codes. ff 13 (and n 37): rows the one-pass kernels
// do not take (the separate kernels inside the fused op); 2048: the trainer's rows. Large products
// and an all-zero row as extremes.
TEST(CudaTrainOps, FusedNormOpsAreTheSeparateOps) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 790;
  struct Case {
    int64_t T, n, ff;
  };
  for (const Case& k : {Case{7, 36, 12}, Case{65, 768, 2048}, Case{9, 37, 13}, Case{130, 64, 256}}) {
    for (const FfnAct act : {FfnAct::kRelu2, FfnAct::kSilu}) {
      const std::string name = "T=" + std::to_string(k.T) + " n=" + std::to_string(k.n) +
                               " ff=" + std::to_string(k.ff) + (act == FfnAct::kRelu2 ? " relu2" : " silu");
      const int64_t T = k.T, n = k.n, ff = k.ff, in = 40;
      Vec h = random_vec(static_cast<size_t>(T * in), seed++, -30.0f, 30.0f);
      for (int64_t i = 0; i < in; ++i) h[static_cast<size_t>(i)] = 0.0f;  // row 0: a zero product
      Buffer<float> d_h = on_device(h);
      Buffer<float> d_Wo = on_device(random_vec(static_cast<size_t>(n * in), seed++));
      Buffer<float> d_Wgu = on_device(random_vec(static_cast<size_t>(2 * ff * in), seed++));
      const std::vector<int64_t> o_groups{n}, gu_groups{ff, ff};
      BitLinearCache c_o, c_gu;
      bitlinear_forward(ctx, d_h.data(), T, in, d_Wo.data(), n, o_groups, true, nullptr, c_o, nullptr);
      bitlinear_forward(ctx, d_h.data(), T, in, d_Wgu.data(), 2 * ff, gu_groups, true, nullptr, c_gu,
                        nullptr);

      // The residual add and the norm.
      Buffer<float> d_a = on_device(random_vec(static_cast<size_t>(T * n), seed++, -2.0f, 2.0f));
      Buffer<float> d_w = on_device(random_vec(static_cast<size_t>(n), seed++, 0.5f, 1.5f));
      Buffer<float> sum_a = poisoned<float>(static_cast<size_t>(T * n)),
                    sum_b = poisoned<float>(sum_a.size());
      Buffer<float> rstd_a = poisoned<float>(static_cast<size_t>(T)), rstd_b = poisoned<float>(rstd_a.size());
      BitLinearCache q_a, q_b;
      add_product(d_a.data(), c_o, T, n, sum_a.data(), nullptr);
      rmsnorm_quantize(ctx, sum_a.data(), d_w.data(), T, n, 1e-5f, rstd_a.data(), q_a, nullptr);
      add_rmsnorm_quantize(ctx, d_a.data(), c_o, T, n, sum_b.data(), d_w.data(), 1e-5f, rstd_b.data(), q_b,
                           nullptr);
      expect_same(sum_b.download(), sum_a.download(), name + " residual sum");
      expect_same(rstd_b.download(), rstd_a.download(), name + " residual norm's rstd");
      expect_same(q_b.xq.download(), q_a.xq.download(), name + " residual norm's codes");
      expect_same(q_b.dq.download(), q_a.dq.download(), name + " residual norm's 1/s");

      // The activation and the sub-norm.
      Buffer<float> d_wf = on_device(random_vec(static_cast<size_t>(ff), seed++, 0.5f, 1.5f));
      Buffer<float> act_a = poisoned<float>(static_cast<size_t>(T * ff)),
                    act_b = poisoned<float>(act_a.size());
      Buffer<float> rf_a = poisoned<float>(static_cast<size_t>(T)), rf_b = poisoned<float>(rf_a.size());
      BitLinearCache f_a, f_b;
      gated_forward(c_gu, T, ff, act, act_a.data(), nullptr);
      rmsnorm_quantize(ctx, act_a.data(), d_wf.data(), T, ff, 1e-5f, rf_a.data(), f_a, nullptr);
      gated_rmsnorm_quantize(ctx, c_gu, T, ff, act, act_b.data(), d_wf.data(), 1e-5f, rf_b.data(), f_b,
                             nullptr);
      expect_same(act_b.download(), act_a.download(), name + " activation");
      expect_same(rf_b.download(), rf_a.download(), name + " sub-norm's rstd");
      expect_same(f_b.xq.download(), f_a.xq.download(), name + " sub-norm's codes");
      expect_same(f_b.dq.download(), f_a.dq.download(), name + " sub-norm's 1/s");

      // A product of another shape, or the product's own cache for the codes, is refused.
      EXPECT_THROW(add_rmsnorm_quantize(ctx, d_a.data(), c_o, T - 1, n, sum_b.data(), d_w.data(), 1e-5f,
                                        rstd_b.data(), q_b, nullptr),
                   Error)
          << name;
      EXPECT_THROW(gated_rmsnorm_quantize(ctx, c_gu, T, ff, act, act_b.data(), d_wf.data(), 1e-5f,
                                          rf_b.data(), c_gu, nullptr),
                   Error)
          << name;
    }
  }
}

// A norm backward that also scales the dx it leaves into the next product's bf16 operands gives
// dx and dw bit for bit, and operands from which that product's backward gives what
// bitlinear_backward gives from dx. n 36 (T 70): the warp pass; 37: the separate kernels.
TEST(CudaTrainOps, RmsNormBackwardScaledIsTheSeparatePair) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 870;
  for (const auto& [T, n] : {std::pair<int64_t, int64_t>{70, 36}, {9, 37}, {33, 768}}) {
    for (const bool accumulate : {false, true}) {
      const std::string name =
          "T=" + std::to_string(T) + " n=" + std::to_string(n) + (accumulate ? " accumulate" : " write");
      const int64_t in = 24;  // the next product: n outputs from `in` inputs
      Buffer<float> d_h = on_device(random_vec(static_cast<size_t>(T * in), seed++, -3.0f, 3.0f));
      Buffer<float> d_W = on_device(random_vec(static_cast<size_t>(n * in), seed++));
      const std::vector<int64_t> groups{n};
      BitLinearCache next;
      bitlinear_forward(ctx, d_h.data(), T, in, d_W.data(), n, groups, true, nullptr, next, nullptr);
      Buffer<float> d_dy = on_device(random_vec(static_cast<size_t>(T * n), seed++));
      Buffer<float> d_x = on_device(random_vec(static_cast<size_t>(T * n), seed++, -2.0f, 2.0f));
      Buffer<float> d_w = on_device(random_vec(static_cast<size_t>(n), seed++, 0.5f, 1.5f));
      Buffer<float> d_rstd = on_device(random_vec(static_cast<size_t>(T), seed++, 0.5f, 2.0f));
      const Vec dx0 = random_vec(static_cast<size_t>(T * n), seed++),
                dw0 = random_vec(static_cast<size_t>(n), seed++);
      Buffer<float> dx_a = on_device(dx0), dx_b = on_device(dx0), dw_a = on_device(dw0),
                    dw_b = on_device(dw0);
      rmsnorm_backward(ctx, d_dy.data(), d_x.data(), d_w.data(), d_rstd.data(), T, n, dx_a.data(),
                       dw_a.data(), nullptr, accumulate);
      Buffer<kern::bf16_t> dy_w(static_cast<size_t>(T * n)), dy_x(dy_w.size());
      rmsnorm_backward_scaled(ctx, d_dy.data(), d_x.data(), d_w.data(), d_rstd.data(), T, n, dx_b.data(),
                              dw_b.data(), next, dy_w.data(), dy_x.data(), nullptr, accumulate);
      expect_same(dx_b.download(), dx_a.download(), name + " dx");
      expect_same(dw_b.download(), dw_a.download(), name + " dw");
      Buffer<float> gx_a = poisoned<float>(static_cast<size_t>(T * in)), gx_b = poisoned<float>(gx_a.size());
      Buffer<float> gW_a(static_cast<size_t>(n * in)), gW_b(gW_a.size());
      gW_a.fill_bytes(0);
      gW_b.fill_bytes(0);
      bitlinear_backward(ctx, dx_a.data(), d_h.data(), T, in, d_W.data(), n, next, gx_a.data(), gW_a.data(),
                         nullptr, false);
      bitlinear_backward_scaled(ctx, dy_w.data(), dy_x.data(), T, in, n, next, gx_b.data(), gW_b.data(),
                                nullptr, false);
      expect_same(gx_b.download(), gx_a.download(), name + " the next product's dx");
      expect_same(gW_b.download(), gW_a.download(), name + " the next product's dW");
      EXPECT_THROW(rmsnorm_backward_scaled(ctx, d_dy.data(), d_x.data(), d_w.data(), d_rstd.data(), T - 1, n,
                                           dx_b.data(), dw_b.data(), next, dy_w.data(), dy_x.data(), nullptr),
                   Error)
          << name << ": a product of another T";
    }
  }
}

TEST(CudaTrainOps, EmbeddingIsExact) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 800;
  for (const auto& [T, vocab, d] :
       {std::tuple<int64_t, int64_t, int64_t>{6, 5, 37}, {300, 50, 64}, {97, 1000, 300}}) {
    const std::string name = "T=" + std::to_string(T) + " vocab=" + std::to_string(vocab);
    const std::vector<int32_t> ids = random_ids(static_cast<size_t>(T), static_cast<int32_t>(vocab), seed++);
    const Vec table = random_vec(static_cast<size_t>(vocab * d), seed++);
    const Vec gx = random_vec(static_cast<size_t>(T * d), seed++);
    const Vec dt0 = random_vec(table.size(), seed++);
    Vec x_cpu(gx.size()), dt_cpu = dt0;
    train::embedding_forward(ids.data(), T, table.data(), vocab, d, x_cpu.data());
    train::embedding_backward(ids.data(), T, gx.data(), vocab, d, dt_cpu.data());
    Buffer<int32_t> d_ids = on_device(ids);
    Buffer<float> d_table = on_device(table), d_gx = on_device(gx), d_dt = on_device(dt0);
    Buffer<float> d_x = poisoned<float>(x_cpu.size());
    embedding_forward(ctx, d_ids.data(), T, d_table.data(), vocab, d, d_x.data(), nullptr);
    embedding_backward(ctx, d_ids.data(), T, d_gx.data(), vocab, d, d_dt.data(), nullptr);
    expect_same(d_x.download(), x_cpu, name + " x");
    expect_same(d_dt.download(), dt_cpu, name + " dtable");
  }
  // An id outside the vocabulary fails, and the next call works again.
  const std::vector<int32_t> bad{0, 1, 7};
  Buffer<int32_t> d_bad = on_device(bad);
  Buffer<float> table(5 * 4), x(3 * 4);
  EXPECT_THROW(embedding_forward(ctx, d_bad.data(), 3, table.data(), 5, 4, x.data(), nullptr), Error);
  EXPECT_THROW(embedding_backward(ctx, d_bad.data(), 3, x.data(), 5, 4, table.data(), nullptr), Error);
  EXPECT_NO_THROW(embedding_forward(ctx, d_bad.data(), 2, table.data(), 5, 4, x.data(), nullptr));
}

// ---- cross-entropy -----------------------------------------------------------------------------

TEST(CudaTrainOps, CrossEntropy) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 900;
  for (const auto& [T, V] : {std::pair<int64_t, int64_t>{6, 29}, {64, 5000}}) {
    const std::string name = "T=" + std::to_string(T) + " V=" + std::to_string(V);
    const Vec logits = random_vec(static_cast<size_t>(T * V), seed++, -8.0f, 8.0f);
    const std::vector<int32_t> targets = random_ids(static_cast<size_t>(T), static_cast<int32_t>(V), seed++);
    const float gs = 1.0f / static_cast<float>(T);
    Vec dl_cpu(logits.size());
    const double loss_cpu = train::cross_entropy(logits.data(), targets.data(), T, V, gs, dl_cpu.data());
    Buffer<float> d_logits = on_device(logits), d_dl = poisoned<float>(logits.size());
    Buffer<int32_t> d_targets = on_device(targets);
    const double loss = cross_entropy(ctx, d_logits.data(), d_targets.data(), T, V, gs, d_dl.data(), nullptr);
    EXPECT_LT(std::fabs(loss - loss_cpu), 1e-6 * std::fabs(loss_cpu))
        << name << ": loss " << loss << " vs " << loss_cpu;
    EXPECT_CLOSE(d_dl.download(), dl_cpu, name + " dlogits");
    const double loss_only =
        cross_entropy(ctx, d_logits.data(), d_targets.data(), T, V, gs, nullptr, nullptr);
    EXPECT_EQ(loss_only, loss) << name << ": the loss without dlogits";
  }
  const std::vector<int32_t> bad{3, 29};
  Buffer<int32_t> d_bad = on_device(bad);
  Buffer<float> logits(2 * 29);
  logits.fill_bytes(0);
  EXPECT_THROW(cross_entropy(ctx, logits.data(), d_bad.data(), 2, 29, 1.0f, nullptr, nullptr), Error);
}

// From bf16 logits with the gradient in bf16: the loss of the CPU op on the same (bf16) values to
// float rounding, dlogits to bf16's rounding, written over the logits or beside them. The widths
// take each kernel: the row in registers with 1 and 2 loads per thread (V a multiple of 8 up to
// 16,384), the row in shared memory (V a multiple of 8 whose row fits it: 24,584 to 70,000), and the
// element-at-a-time kernel (V = 29, 70,001, and 120,000: too wide for shared memory). Each row
// starts with masked (-inf) logits.
TEST(CudaTrainOps, CrossEntropyBf16) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  uint32_t seed = 950;
  const std::pair<int64_t, int64_t> cases[] = {{6, 29},    {64, 5000}, {5, 12296}, {7, 24584}, {9, 50304},
                                               {3, 65536}, {3, 70000}, {2, 70001}, {2, 120000}};
  for (const auto& [T, V] : cases) {
    const std::string name = "T=" + std::to_string(T) + " V=" + std::to_string(V);
    std::vector<kern::bf16_t> bits =
        to_bf16_bits(random_vec(static_cast<size_t>(T * V), seed++, -8.0f, 8.0f));
    std::vector<int32_t> targets = random_ids(static_cast<size_t>(T), static_cast<int32_t>(V), seed++);
    targets.back() = static_cast<int32_t>(V - 1);  // the last element of a row: the last load's last lane
    // Masked entries (-inf) at the start of every row, where each thread reads its first logit.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < std::min<int64_t>(V / 2, 64); ++j)
        if (j != targets[static_cast<size_t>(t)]) bits[static_cast<size_t>(t * V + j)] = 0xFF80;
    const Vec logits = from_bf16(bits);
    const float gs = 1.0f / static_cast<float>(T);
    Vec dl_cpu(logits.size());
    const double loss_cpu = train::cross_entropy(logits.data(), targets.data(), T, V, gs, dl_cpu.data());
    Buffer<int32_t> d_targets = on_device(targets);

    Buffer<kern::bf16_t> d_logits = on_device(bits), d_dl = poisoned<kern::bf16_t>(bits.size());
    const double loss = cross_entropy(ctx, d_logits.data(), d_targets.data(), T, V, gs, d_dl.data(), nullptr);
    EXPECT_LT(std::fabs(loss - loss_cpu), 1e-6 * std::fabs(loss_cpu))
        << name << ": loss " << loss << " vs " << loss_cpu;
    EXPECT_LT(rel_err(from_bf16(d_dl.download()), dl_cpu), kBf16Tol) << name << " dlogits";
    EXPECT_EQ(d_logits.download(), bits) << name << ": the logits were changed";

    const double loss_only =
        cross_entropy(ctx, d_logits.data(), d_targets.data(), T, V, gs, nullptr, nullptr);
    EXPECT_EQ(loss_only, loss) << name << ": the loss without dlogits";
    // Written over the logits: the same loss and the same gradient bits.
    const double loss_in_place =
        cross_entropy(ctx, d_logits.data(), d_targets.data(), T, V, gs, d_logits.data(), nullptr);
    EXPECT_EQ(loss_in_place, loss) << name << ": the loss in place";
    EXPECT_EQ(d_logits.download(), d_dl.download()) << name << ": the gradient in place";
  }
  const std::vector<int32_t> bad{3, 29};
  Buffer<int32_t> d_bad = on_device(bad);
  Buffer<kern::bf16_t> logits(2 * 29);
  logits.fill_bytes(0);
  EXPECT_THROW(cross_entropy(ctx, logits.data(), d_bad.data(), 2, 29, 1.0f, logits.data(), nullptr), Error);
}

// ---- optimizer ---------------------------------------------------------------------------------

TEST(CudaTrainOps, AdamWMatchesCpu) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  train::TrainModel model;
  model.tensors = {{"a", 0, 10, 37, true}, {"b", 370, 1, 30, false}, {"c", 400, 20, 30, true}};
  model.params = random_vec(1000, 1000);
  const std::vector<uint8_t> mask = decay_mask(model);
  ASSERT_EQ(mask.size(), 1000u);
  EXPECT_EQ(mask[0], 1);
  EXPECT_EQ(mask[380], 0);
  EXPECT_EQ(mask[999], 1);

  const train::AdamWConfig cfg;
  train::AdamWState st;
  Buffer<float> p = on_device(model.params), m(1000), v(1000), g;
  m.fill_bytes(0);
  v.fill_bytes(0);
  Buffer<uint8_t> d_mask = on_device(mask);
  for (int step = 1; step <= 3; ++step) {
    const Vec grads = random_vec(1000, 1000 + static_cast<uint32_t>(step), -0.1f, 0.1f);
    const float lr = 1e-3f * static_cast<float>(step), wd = 0.1f;
    train::adamw_step(model, grads, st, cfg, lr, wd);
    g.upload(grads);
    adamw_step(p.data(), g.data(), m.data(), v.data(), d_mask.data(), 1000, step, cfg, lr, wd, nullptr);
    EXPECT_CLOSE(p.download(), model.params, "params after step " + std::to_string(step));
    EXPECT_CLOSE(m.download(), st.m, "m after step " + std::to_string(step));
    EXPECT_CLOSE(v.download(), st.v, "v after step " + std::to_string(step));
  }

  // The clip factor applied as AdamW reads the gradients: bit for bit the update from gradients
  // scaled first (the CPU's `g *= k`), close to the CPU's, and the gradients are left as they were.
  EXPECT_EQ(clip_factor(4.0, 1.0f), 0.25f);
  EXPECT_EQ(clip_factor(0.5, 1.0f), 1.0f);
  EXPECT_EQ(clip_factor(4.0, 0.0f), 1.0f);  // clip 0: off
  const float k = clip_factor(3.0, 1.0f);   // 1/3, rounded: the order of the roundings shows
  Vec grads = random_vec(1000, 2000, -0.1f, 0.1f);
  Buffer<float> p2 = on_device(p.download()), m2 = on_device(m.download()), v2 = on_device(v.download());
  g.upload(grads);
  adamw_step(p.data(), g.data(), m.data(), v.data(), d_mask.data(), 1000, 4, cfg, 4e-3f, 0.1f, nullptr, k);
  EXPECT_EQ(g.download(), grads) << "the gradients were changed";
  for (float& x : grads) x *= k;
  Buffer<float> g2 = on_device(grads);
  adamw_step(p2.data(), g2.data(), m2.data(), v2.data(), d_mask.data(), 1000, 4, cfg, 4e-3f, 0.1f, nullptr);
  EXPECT_EQ(p.download(), p2.download()) << "params: clipped while read against clipped first";
  EXPECT_EQ(m.download(), m2.download()) << "m: clipped while read against clipped first";
  EXPECT_EQ(v.download(), v2.download()) << "v: clipped while read against clipped first";
  train::adamw_step(model, grads, st, cfg, 4e-3f, 0.1f);
  EXPECT_CLOSE(p.download(), model.params, "params after a clipped step");
  EXPECT_CLOSE(m.download(), st.m, "m after a clipped step");
}

TEST(CudaTrainOps, GradNorm) {
  if (cuda::devices().empty()) GTEST_SKIP() << cuda::unavailable_reason();
  TrainContext ctx;
  for (const size_t n : {size_t{1}, size_t{37}, size_t{100003}, size_t{3000000}}) {
    const Vec g = random_vec(n, static_cast<uint32_t>(n));
    const double cpu = train::grad_norm(g);
    Buffer<float> d = on_device(g);
    const double gpu = grad_norm(ctx, d.data(), static_cast<int64_t>(n), nullptr);
    EXPECT_LT(std::fabs(gpu - cpu), 1e-10 * cpu) << "n=" << n << ": " << gpu << " vs " << cpu;
    EXPECT_EQ(grad_norm(ctx, d.data(), static_cast<int64_t>(n), nullptr), gpu) << "n=" << n << ": run twice";
  }
}

}  // namespace
}  // namespace bitnet::cuda
