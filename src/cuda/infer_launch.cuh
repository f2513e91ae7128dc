#pragma once
// Kernel launches for the inference kernels, with programmatic dependent launch (PDL, sm_90):
// a decode step is ~300 small dependent kernels, and without PDL each one starts only after the
// previous one has fully drained. With it, the next kernel's blocks are scheduled while the
// previous one finishes: each kernel calls pdl_launch() first, may read what no kernel writes
// (weights) before pdl_wait(), and reads or writes everything else only after it (wait returns
// when the previous kernel has completed and its writes are visible). Without the launch
// attribute both are no-ops. BITNET_CUDA_PDL=0 turns it off (for comparison).
#include <cuda_runtime.h>

#include "cuda/check.h"

namespace bitnet::cuda::infer {

bool pdl_enabled();  // infer_session.cpp (reads the environment once)

__device__ __forceinline__ void pdl_wait() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}
__device__ __forceinline__ void pdl_launch() {
  asm volatile("griddepcontrol.launch_dependents;" :::);
}

// True the first time it is called on the current device for this `mask` (one per kernel
// instantiation): cudaFuncSetAttribute sets an attribute on the current device's copy of a
// kernel, so with several GPUs (tensor parallel) each device needs its own call.
inline bool first_on_device(unsigned long long& mask) {
  int dev = 0;
  BN_CUDA(cudaGetDevice(&dev));
  const unsigned long long bit = 1ull << (dev & 63);
  if (mask & bit) return false;
  mask |= bit;
  return true;
}

// The current device's largest dynamic shared memory a block may opt in to (a kernel's
// cudaFuncAttributeMaxDynamicSharedMemorySize above the default 48 KB).
inline int smem_optin() {
  int dev = 0, optin = 0;
  BN_CUDA(cudaGetDevice(&dev));
  BN_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return optin;
}

// Lets `kernel` take up to the device's opt-in limit of dynamic shared memory, less its static
// shared memory (the attribute counts only the dynamic part, and their sum may not pass the limit).
template <typename... P>
void allow_smem_optin(void (*kernel)(P...)) {
  cudaFuncAttributes fa{};
  BN_CUDA(cudaFuncGetAttributes(&fa, kernel));
  BN_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               smem_optin() - static_cast<int>(fa.sharedSizeBytes)));
}

template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  BN_CUDA(cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(args)...));
}

}  // namespace bitnet::cuda::infer
