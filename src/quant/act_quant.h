#pragma once
// Per-token absmax int8 activation quantization (BitNet b1.58 `activation_quant`):
//   s  = 127 / max(|x|), with max clamped below at 1e-5
//   xq = clamp(nearbyint(x * s), -128, 127)          (round half to even, like torch.round)
// Every variant computes exactly these float operations, so all variants agree bit for bit.
// Rows are stored zero-padded to k_pad = round_up(k, 64) (the kernels' K step), and each row's
// integer sum is kept for the kernels' zero-point correction (src/quant/native.h).
#include <cstdint>
#include <span>

#include "core/arena.h"
#include "core/cpu.h"

namespace bitnet {

inline constexpr int64_t kActKAlign = 64;

struct ActQuantVariant;

struct QuantizedActs {
  int64_t m = 0, k = 0, k_pad = 0;
  int8_t* q = nullptr;      // [m][k_pad], 64-byte aligned rows, zero padding
  float* scale = nullptr;   // [m]: s = 127 / max|x|
  float* dq = nullptr;      // [m]: 1 / s, the dequantization factor the kernels' epilogue uses
  int32_t* sum = nullptr;   // [m]: sum of q over the row
  // The quantizer variant for these rows (select_act_quant()), chosen when allocated: on the
  // caller's thread, so a forcing error is thrown there and not in a worker of a per-token loop,
  // and the rows need no selection of their own.
  const ActQuantVariant* quantizer = nullptr;
};

// Storage comes from `arena` (valid until its next reset()).
QuantizedActs alloc_quantized_acts(Arena& arena, int64_t m, int64_t k);

// x is [m][ldx] floats; uses out.quantizer (the fastest variant the CPU has, or BITNET_KERNEL's).
void quantize_acts(const float* x, int64_t ldx, QuantizedActs& out);
// Row t of out from x[out.k] (the same variant), for callers that fuse it into per-token work.
void quantize_act_row(const float* x, QuantizedActs& out, int64_t t);

// One row, plain C++: the spec.
void quantize_act_row_ref(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* scale,
                          float* dq, int32_t* sum);

using QuantizeRowFn = void (*)(const float*, int64_t, int64_t, int8_t*, float*, float*, int32_t*);
// One row of the family's table (dispatch.h). BITNET_KERNEL names a ternary GEMM variant; the
// quantizer that feeds it lists that name in `serves`, explicitly (several GEMM variants share
// one quantizer: the AVX-512 one serves avx512bw, avx512vnni and amx).
struct ActQuantVariant {
  const char* name;
  CpuCaps needs;
  QuantizeRowFn fn;
  const char* serves[4];  // the ternary GEMM variants it is paired with when one is forced

  bool cpu_ok() const { return cpu_has(needs); }
};
// All compiled variants, reference first.
std::span<const ActQuantVariant> act_quant_variants();
// The fastest variant the CPU has, or the one serving BITNET_KERNEL (an error where none does or
// the CPU cannot run it).
const ActQuantVariant& select_act_quant();
void quantize_acts_with(const ActQuantVariant& v, const float* x, int64_t ldx, QuantizedActs& out);

}  // namespace bitnet
