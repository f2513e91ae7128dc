#pragma once
// Device helpers the inference kernels share: the ternary layout's codes, the weights' streaming
// load and the gated activation (the CPU's ops/layer_ops.cpp gated_act, operation for operation).
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda::infer {

// Four codes c = w + 1 of columns 4s .. 4s+3 of a layout word (infer_kernels.h), as bytes.
__device__ __forceinline__ int codes(uint32_t word, int s) {
  return static_cast<int>((word >> (2 * s)) & 0x03030303u);
}

// Streaming 16-byte load: the weights are read once per step, so they should not evict the
// activations from L1.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// act(g) * u: relu² (act 0) or SiLU (act 1).
__device__ __forceinline__ float gated(float g, float u, int act) {
  if (act == 0) {
    const float r = g > 0 ? g : 0.0f;
    return r * r * u;
  }
  return g / (1.0f + expf(-g)) * u;
}

}  // namespace bitnet::cuda::infer
