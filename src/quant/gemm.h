#pragma once
// Ternary x int8 matrix products on the native layout (native.h):
//   acc[m][n] = sum_k xq[m][k] * w[n][k]                    (exact int32)
//   y[m][n]   = float(acc) * (row_scale[n] * dq[m])          (dq = 1/s; one rounding order for all)
// M = 1 is the decode GEMV, M > 1 the prefill GEMM. Every variant's int32 accumulators equal the
// reference's bit for bit; tests force each variant through BITNET_KERNEL.
#include <cstdint>
#include <span>
#include <string_view>

#include "core/cpu.h"
#include "quant/act_quant.h"
#include "quant/native.h"

namespace bitnet {

class ThreadPool;

struct GemmOut {
  int32_t* i32 = nullptr;  // optional [m][ld_i32]: raw accumulators
  int64_t ld_i32 = 0;
  float* f32 = nullptr;    // optional [m][ld_f32]: scaled output
  int64_t ld_f32 = 0;
  // f32 only: add each result to the value already there (the forward's residual stream, x += W a)
  // instead of storing it; the same float addition as a separate pass, so the same bits.
  bool add = false;
};

// Computes output columns [n0, n1) for every token. n0 is a multiple of 16 (a row block); n1 is a
// multiple of 16 or equals w.n.
using TernaryGemmFn = void (*)(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0,
                               int64_t n1, const GemmOut& out);

// relu(gate)^2 * up for gate rows [r0, r1) of a fused gate|up matrix (see ternary_gemm_relu2).
using TernaryRelu2Fn = void (*)(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff, int64_t r0,
                                int64_t r1, float* act, int64_t ld_act);

// One row of the family's table (dispatch.h): what the variant needs and supports.
struct GemmVariant {
  const char* name;
  CpuCaps needs = 0;                                                           // CPU capabilities it uses
  bool (*supports)(const TernaryMatrix& w, const QuantizedActs& x) = nullptr;  // does it handle this case?
  TernaryGemmFn fn = nullptr;
  int64_t row_grain = 16;  // rows per work item when splitting across threads (multiple of 16)
  // Auto-selection takes it only from this many tokens (forcing runs it on any): AMX pays once a
  // 16-token tile is mostly full; below that VNNI is faster (tile setup + B staging).
  int64_t min_tokens = 0;
  // The fused relu(gate)^2 * up epilogue straight from the accumulators, where the variant has one.
  TernaryRelu2Fn relu2 = nullptr;

  bool cpu_ok() const { return cpu_has(needs); }
};

// Every compiled variant, slowest first ("scalar" is the reference and always first).
std::span<const GemmVariant> gemm_variants();
// Throws bitnet::Error for an unknown name.
const GemmVariant& gemm_variant(std::string_view name);
// The fastest variant the CPU can run for this case, or the one BITNET_KERNEL forces (an error if
// it cannot run the case).
const GemmVariant& select_gemm(const TernaryMatrix& w, const QuantizedActs& x);

// Threaded product over all rows. pool may be null (single thread).
void ternary_gemm(ThreadPool* pool, const TernaryMatrix& w, const QuantizedActs& x, const GemmOut& out);
void ternary_gemm_with(const GemmVariant& v, ThreadPool* pool, const TernaryMatrix& w,
                       const QuantizedActs& x, const GemmOut& out);

// relu(gate)^2 * up straight from the accumulators of a fused gate|up matrix w (gate rows [0, ff),
// up rows [ff, 2 ff)) for gate rows [r0, r1): act[m * ld_act + r]. The same floats as the f32
// product followed by relu2_mul, bit for bit; the gate|up floats are never stored. Only the AMX
// variant has this form (GemmVariant::relu2): relu2_fused_supported says whether select_gemm(w, x)
// has it (and ff is a whole number of row blocks); ternary_gemm_relu2 fails loudly otherwise. r0 is a
// multiple of 16, r1 one too or ff.
bool relu2_fused_supported(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff);
// The same for a variant already selected for (w, x).
bool relu2_fused_supported(const GemmVariant& v, const TernaryMatrix& w, int64_t ff);
void ternary_gemm_relu2(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff, int64_t r0, int64_t r1,
                        float* act, int64_t ld_act);

// The plain reference (decodes each weight from the native layout; no zero-point tricks).
void ternary_gemm_ref(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1,
                      const GemmOut& out);

// Epilogue shared by every variant for rows it cannot store whole (partial row blocks).
inline float gemm_scale(int32_t acc, float row_scale, float dq) {
  return static_cast<float>(acc) * (row_scale * dq);
}

}  // namespace bitnet
