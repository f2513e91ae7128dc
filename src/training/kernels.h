#pragma once
// Internal to src/training: the inner loops of the matmul-like ops. They work in fixed blocks
// (a scalar tail finishes) so that the compiler vectorizes them at -O2, whose "very cheap" loop
// vectorizer leaves loops of unknown length scalar; the block sizes are the fastest measured with
// GCC 12 for baseline x86-64. Results depend only on n, never on the caller's thread.
#include <cstdint>

namespace bitnet::train::kern {

// Exact: |sum| <= 128 * 127 * n fits int32 for n < 132000; each product fits int16.
inline int32_t dot_i8(const int8_t* __restrict a, const int8_t* __restrict b, int64_t n) {
  constexpr int64_t kB = 16;
  int32_t acc[kB] = {};
  int64_t i = 0;
  for (; i + kB <= n; i += kB)
    for (int64_t l = 0; l < kB; ++l)
      acc[l] += static_cast<int16_t>(static_cast<int16_t>(a[i + l]) * static_cast<int16_t>(b[i + l]));
  int32_t s = 0;
  for (int64_t l = 0; l < kB; ++l) s += acc[l];
  for (; i < n; ++i) s += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return s;
}

// Eight partial sums, combined in a fixed order.
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += alpha * x (x and y do not overlap).
inline void axpy(float alpha, const float* __restrict x, float* __restrict y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) y[i + l] += alpha * x[i + l];
  for (; i < n; ++i) y[i] += alpha * x[i];
}

inline void axpy_i8(float alpha, const int8_t* __restrict x, float* __restrict y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) y[i + l] += alpha * static_cast<float>(x[i + l]);
  for (; i < n; ++i) y[i] += alpha * static_cast<float>(x[i]);
}

}  // namespace bitnet::train::kern
