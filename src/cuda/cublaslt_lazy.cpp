// cuBLASLt, loaded on first use. Linking libcublasLt.so directly maps and relocates a ~500 MB
// library at every start of every program (+210 MB resident, +0.4 s for `bitnet --help`), GPU or
// not. Instead these definitions of the cuBLASLt functions the backend calls look the real ones
// up with dlopen/dlsym the first time one is called: programs that never touch the GPU pay nothing.
#include <cublasLt.h>
#include <dlfcn.h>

#include "core/error.h"

namespace {

void* library() {
  static void* handle = [] {
    // The toolkit's copy found at build time, then the loader's search path (LD_LIBRARY_PATH, ...).
    void* h = dlopen(BITNET_CUBLASLT_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen(BITNET_CUBLASLT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h)
      bitnet::fail("cuBLASLt could not be loaded ({} or {}): {}", BITNET_CUBLASLT_PATH,
                   BITNET_CUBLASLT_SONAME, dlerror());
    return h;
  }();
  return handle;
}

template <typename F>
F symbol(const char* name) {
  void* s = dlsym(library(), name);
  if (!s) bitnet::fail("cuBLASLt: {} has no symbol {}", BITNET_CUBLASLT_SONAME, name);
  return reinterpret_cast<F>(s);
}

}  // namespace

// Each forwards to the library's function of the same name and type.
#define BN_LT_FORWARD(ret, name, params, args)               \
  extern "C" ret name params {                               \
    static const auto real = symbol<decltype(&name)>(#name); \
    return real args;                                        \
  }

BN_LT_FORWARD(cublasStatus_t, cublasLtCreate, (cublasLtHandle_t * h), (h))
BN_LT_FORWARD(cublasStatus_t, cublasLtDestroy, (cublasLtHandle_t h), (h))
BN_LT_FORWARD(const char*, cublasLtGetStatusString, (cublasStatus_t s), (s))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmul,
              (cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
               cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd, const void* beta,
               const void* C, cublasLtMatrixLayout_t Cd, void* D, cublasLtMatrixLayout_t Dd,
               const cublasLtMatmulAlgo_t* algo, void* ws, size_t wsb, cudaStream_t st),
              (h, d, alpha, A, Ad, B, Bd, beta, C, Cd, D, Dd, algo, ws, wsb, st))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulAlgoGetHeuristic,
              (cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
               cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t p, int n,
               cublasLtMatmulHeuristicResult_t r[], int* found),
              (h, d, A, B, C, D, p, n, r, found))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulDescCreate,
              (cublasLtMatmulDesc_t * d, cublasComputeType_t c, cudaDataType_t s), (d, c, s))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t d), (d))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulDescSetAttribute,
              (cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void* b, size_t n),
              (d, a, b, n))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * p), (p))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t p), (p))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatmulPreferenceSetAttribute,
              (cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void* b, size_t n),
              (p, a, b, n))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatrixLayoutCreate,
              (cublasLtMatrixLayout_t * l, cudaDataType t, uint64_t r, uint64_t c, int64_t ld),
              (l, t, r, c, ld))
BN_LT_FORWARD(cublasStatus_t, cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t l), (l))
