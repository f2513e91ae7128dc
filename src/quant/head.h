#pragma once
// The embedding lookup and the output head over a tensor of any stored type (F32, F16, BF16,
// Q8_0, Q8_0X, Q4_0, Q6_K, Q6_KX ...): the tensor-level entry points to dequant.h and head_dot.h.
#include <cstdint>

#include "core/tensor.h"

namespace bitnet {

class ThreadPool;

// Row `row` of a [rows][n] tensor of any dequantizable type, as float.
void embedding_row(const Tensor& table, int64_t row, float* out);

// logits[t][v] = dot(x[t], W[v]) for t < m, v < W.rows(); W of any dequantizable type.
void head_matmul(ThreadPool* pool, const Tensor& w, const float* x, int64_t m, float* logits);

}  // namespace bitnet
