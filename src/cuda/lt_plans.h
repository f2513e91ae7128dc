#pragma once
// cuBLASLt matmul plans (descriptors, layouts and the heuristic's algorithm) cached by shape: the
// trainer calls the same few dozen GEMM shapes every step, and building a plan costs host time
// (descriptor setup plus the heuristic query) that the cache pays once per shape.
#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

namespace bitnet::cuda {

// Column-major C[m][n] = alpha op(A) op(B) + beta C in cuBLAS's convention.
struct LtShape {
  cudaDataType_t ab, cd;
  cublasComputeType_t compute;
  cudaDataType_t scale;
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  auto key() const { return std::tuple(ab, cd, compute, scale, ta, tb, m, n, k, lda, ldb, ldc); }
  bool operator<(const LtShape& o) const { return key() < o.key(); }
};

struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: cuBLASLt has no algorithm for the shape
  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan();
};

class LtPlans {
 public:
  // The plan of `s`, built on first use (workspace_bytes bounds the algorithms considered).
  const LtPlan& get(cublasLtHandle_t lt, const LtShape& s, size_t workspace_bytes);

 private:
  std::map<LtShape, std::unique_ptr<LtPlan>> plans_;
};

}  // namespace bitnet::cuda
