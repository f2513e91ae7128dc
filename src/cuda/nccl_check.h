#pragma once
// Every NCCL call is checked, as CUDA's are (check.h): a failure is a bitnet::Error naming the
// call, the file and line, and NCCL's message. The library itself is loaded on first use
// (nccl_lazy.cpp); this header exists only where the build found NCCL (BITNET_HAVE_NCCL).
#include <nccl.h>

namespace bitnet::cuda {
[[noreturn]] void nccl_failed(const char* call, const char* file, int line, ncclResult_t r);
}  // namespace bitnet::cuda

#define BN_NCCL(call)                                                                        \
  do {                                                                                       \
    const ncclResult_t bn_r_ = (call);                                                       \
    if (bn_r_ != ncclSuccess) ::bitnet::cuda::nccl_failed(#call, __FILE__, __LINE__, bn_r_); \
  } while (0)
