// NCCL, loaded on first use, as cuBLASLt is (cublaslt_lazy.cpp): libnccl is ~210 MB, so linking it
// would map it in every run of every program, GPU or not, and it is too large to carry to a
// machine that has its own copy. These definitions of the NCCL functions the backend calls look
// the real ones up with dlopen/dlsym the first time one is called.
//
// The library is searched for in this order: $BITNET_NCCL (a path), the copy found at build time,
// then the loader's search path (LD_LIBRARY_PATH, ...) under its soname.
#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>

#include "core/error.h"
#include "cuda/nccl_check.h"

namespace {

void* library() {
  static void* handle = [] {
    // NVLink multicast (NVLS) can take a host's shared GPUs out of service; it stays off unless
    // the user turns it on explicitly (the variable set to 1 before the first NCCL call).
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    void* h = nullptr;
    const char* user = std::getenv("BITNET_NCCL");
    if (user && *user) {
      h = dlopen(user, RTLD_NOW | RTLD_LOCAL);
      if (!h) bitnet::fail("NCCL could not be loaded from $BITNET_NCCL ({}): {}", user, dlerror());
      return h;
    }
    h = dlopen(BITNET_NCCL_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen(BITNET_NCCL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h)
      bitnet::fail("NCCL could not be loaded ({} or {}; set BITNET_NCCL to the library's path): {}",
                   BITNET_NCCL_PATH, BITNET_NCCL_SONAME, dlerror());
    return h;
  }();
  return handle;
}

template <typename F>
F symbol(const char* name) {
  void* s = dlsym(library(), name);
  if (!s) bitnet::fail("NCCL: {} has no symbol {}", BITNET_NCCL_SONAME, name);
  return reinterpret_cast<F>(s);
}

}  // namespace

namespace bitnet::cuda {
void nccl_failed(const char* call, const char* file, int line, ncclResult_t r) {
  fail("NCCL error at {}:{}: {} ({})", file, line, ncclGetErrorString(r), call);
}
}  // namespace bitnet::cuda

// Each forwards to the library's function of the same name and type.
#define BN_NCCL_FORWARD(ret, name, params, args)             \
  extern "C" ret name params {                               \
    static const auto real = symbol<decltype(&name)>(#name); \
    return real args;                                        \
  }

BN_NCCL_FORWARD(ncclResult_t, ncclGetVersion, (int* version), (version))
BN_NCCL_FORWARD(const char*, ncclGetErrorString, (ncclResult_t r), (r))
BN_NCCL_FORWARD(const char*, ncclGetLastError, (ncclComm_t c), (c))
BN_NCCL_FORWARD(ncclResult_t, ncclGetUniqueId, (ncclUniqueId * id), (id))
BN_NCCL_FORWARD(ncclResult_t, ncclCommInitRank, (ncclComm_t * c, int n, ncclUniqueId id, int rank),
                (c, n, id, rank))
BN_NCCL_FORWARD(ncclResult_t, ncclCommInitAll, (ncclComm_t * c, int n, const int* devices), (c, n, devices))
BN_NCCL_FORWARD(ncclResult_t, ncclCommDestroy, (ncclComm_t c), (c))
BN_NCCL_FORWARD(ncclResult_t, ncclCommAbort, (ncclComm_t c), (c))
BN_NCCL_FORWARD(ncclResult_t, ncclCommGetAsyncError, (ncclComm_t c, ncclResult_t* r), (c, r))
BN_NCCL_FORWARD(ncclResult_t, ncclCommCount, (const ncclComm_t c, int* n), (c, n))
BN_NCCL_FORWARD(ncclResult_t, ncclCommCuDevice, (const ncclComm_t c, int* d), (c, d))
BN_NCCL_FORWARD(ncclResult_t, ncclCommUserRank, (const ncclComm_t c, int* r), (c, r))
BN_NCCL_FORWARD(ncclResult_t, ncclGroupStart, (), ())
BN_NCCL_FORWARD(ncclResult_t, ncclGroupEnd, (), ())
BN_NCCL_FORWARD(ncclResult_t, ncclAllReduce,
                (const void* s, void* r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                 cudaStream_t st),
                (s, r, n, t, op, c, st))
BN_NCCL_FORWARD(ncclResult_t, ncclReduceScatter,
                (const void* s, void* r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                 cudaStream_t st),
                (s, r, n, t, op, c, st))
BN_NCCL_FORWARD(ncclResult_t, ncclAllGather,
                (const void* s, void* r, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t st),
                (s, r, n, t, c, st))
BN_NCCL_FORWARD(ncclResult_t, ncclBroadcast,
                (const void* s, void* r, size_t n, ncclDataType_t t, int root, ncclComm_t c, cudaStream_t st),
                (s, r, n, t, root, c, st))
