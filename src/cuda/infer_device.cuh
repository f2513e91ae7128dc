#pragma once
// Device helpers the inference kernels share: the ternary layout's codes, the weights' streaming
// load, asynchronous copies into shared memory and the gated activation (the CPU's ops/layer_ops.cpp
// gated_act, operation for operation).
#include <cuda_runtime.h>

#include <cstdint>

namespace bitnet::cuda::infer {

// cp.async: 16 bytes from global to shared memory without a register round trip, in groups
// (commit) waited for with at most N groups still in flight. The zfill form copies src_bytes
// (0 or 16) and writes zeros for the rest.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Four codes c = w + 1 of columns 4s .. 4s+3 of a layout word (infer_kernels.h), as bytes.
__device__ __forceinline__ int codes(uint32_t word, int s) {
  return static_cast<int>((word >> (2 * s)) & 0x03030303u);
}

// Four codes c = w + 1 (bytes of 0..2, taken at bit `shift` of each byte of a layout word) as
// four s8 weights c - 1: with bit 7 set first, no byte borrows from its neighbour.
__device__ __forceinline__ int weights4(uint32_t word, int shift) {
  const uint32_t c = ((word >> shift) & 0x03030303u) + 0x7F7F7F7Fu;  // 0x7F + c: 0x7F .. 0x81
  return static_cast<int>(c ^ 0x80808080u);                          // c - 1: 0xFF, 0x00, 0x01
}

// c += a * b on the int8 tensor cores (m16n8k32, exact int32). Not volatile: the products depend
// only on their operands, so the compiler may schedule them.
__device__ __forceinline__ void mma_s8(int (&c)[4], const int (&a)[4], int b0, int b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
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
