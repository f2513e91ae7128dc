// cuBLASLt plans built once per shape (lt_plans.h).
#include "cuda/lt_plans.h"

#include "cuda/check.h"

namespace bitnet::cuda {

namespace {

// Released on every path out of building a plan.
struct Pref {
  cublasLtMatmulPreference_t p = nullptr;
  ~Pref() {
    if (p != nullptr) (void)cublasLtMatmulPreferenceDestroy(p);
  }
};

}  // namespace

LtPlan::~LtPlan() {
  if (c != nullptr) (void)cublasLtMatrixLayoutDestroy(c);
  if (b != nullptr) (void)cublasLtMatrixLayoutDestroy(b);
  if (a != nullptr) (void)cublasLtMatrixLayoutDestroy(a);
  if (op != nullptr) (void)cublasLtMatmulDescDestroy(op);
}

const LtPlan& LtPlans::get(cublasLtHandle_t lt, const LtShape& s, size_t workspace_bytes) {
  const auto it = plans_.find(s);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<LtPlan>();
  BN_CUBLAS(cublasLtMatmulDescCreate(&p->op, s.compute, s.scale));
  const cublasOperation_t opa = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  BN_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
  BN_CUBLAS(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
  BN_CUBLAS(cublasLtMatrixLayoutCreate(&p->a, s.ab, static_cast<uint64_t>(s.ta ? s.k : s.m),
                                       static_cast<uint64_t>(s.ta ? s.m : s.k), s.lda));
  BN_CUBLAS(cublasLtMatrixLayoutCreate(&p->b, s.ab, static_cast<uint64_t>(s.tb ? s.n : s.k),
                                       static_cast<uint64_t>(s.tb ? s.k : s.n), s.ldb));
  BN_CUBLAS(
      cublasLtMatrixLayoutCreate(&p->c, s.cd, static_cast<uint64_t>(s.m), static_cast<uint64_t>(s.n), s.ldc));
  Pref pref;
  BN_CUBLAS(cublasLtMatmulPreferenceCreate(&pref.p));
  const uint64_t ws = workspace_bytes;
  BN_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                 sizeof(ws)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t h =
      cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->a, p->b, p->c, p->c, pref.p, 1, &res, &found);
  if (h != CUBLAS_STATUS_NOT_SUPPORTED) BN_CUBLAS(h);
  p->found = h == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p->found) p->algo = res.algo;
  return *plans_.emplace(s, std::move(p)).first->second;
}

}  // namespace bitnet::cuda
