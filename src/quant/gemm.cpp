#include "quant/gemm.h"

#include <algorithm>

#include "core/cpu.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/dispatch.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86_KERNELS)
void ternary_gemm_avx2(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_avxvnni(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_avx512bw(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_avx512vnni(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_avx512vnni_gfni(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_amx(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_amx_relu2(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, int64_t, float*,
                            int64_t);
#endif
#if defined(BITNET_HAVE_NEON_KERNELS)
void ternary_gemm_neon(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
#endif

namespace {
// Accumulators are int32: |sum c*x| <= 2 * 128 * k_pad must stay below 2^31.
bool any_case(const TernaryMatrix& w, const QuantizedActs& x) {
  return w.k == x.k && w.k_pad == x.k_pad && w.k_pad <= (int64_t{1} << 22);
}

#if defined(BITNET_HAVE_X86_KERNELS)
constexpr CpuCaps kAvx512Bw = kCapAvx512Bw | kCapAvx512Vl;
constexpr CpuCaps kAvx512Vnni = kAvx512Bw | kCapAvx512Vnni;
// (Every AMX CPU so far also has AVX-512 VBMI, which the weight staging uses; checked all the same.)
constexpr CpuCaps kAmx = kAvx512Vnni | kCapAvx512Vbmi | kCapAmx;
#endif

const GemmVariant kVariants[] = {
    {.name = "scalar", .supports = any_case, .fn = ternary_gemm_ref},
#if defined(BITNET_HAVE_X86_KERNELS)
    {.name = "avx2", .needs = kCapAvx2 | kCapFma, .supports = any_case, .fn = ternary_gemm_avx2},
    {.name = "avx512bw",
     .needs = kAvx512Bw,
     .supports = any_case,
     .fn = ternary_gemm_avx512bw,
     .row_grain = 32},
    {.name = "avxvnni", .needs = kCapAvxVnni, .supports = any_case, .fn = ternary_gemm_avxvnni},
    {.name = "avx512vnni",
     .needs = kAvx512Vnni,
     .supports = any_case,
     .fn = ternary_gemm_avx512vnni,
     .row_grain = 32},
    {.name = "avx512vnni_gfni",
     .needs = kAvx512Vnni | kCapGfni,
     .supports = any_case,
     .fn = ternary_gemm_avx512vnni_gfni,
     .row_grain = 32},
    {.name = "amx",
     .needs = kAmx,
     .supports = any_case,
     .fn = ternary_gemm_amx,
     .row_grain = 32,
     .min_tokens = 16,
     .relu2 = ternary_gemm_amx_relu2},
#endif
#if defined(BITNET_HAVE_NEON_KERNELS)
    {.name = "neon", .needs = kCapNeon, .supports = any_case, .fn = ternary_gemm_neon},
#endif
};
}  // namespace

std::span<const GemmVariant> gemm_variants() {
  return kVariants;
}

const GemmVariant& gemm_variant(std::string_view name) {
  for (const auto& v : kVariants)
    if (name == v.name) return v;
  fail("unknown kernel '{}' (compiled: {})", name, variant_names(gemm_variants()));
}

const GemmVariant& select_gemm(const TernaryMatrix& w, const QuantizedActs& x) {
  return select_variant(
      gemm_variants(), {"ternary GEMM", "BITNET_KERNEL", forced_kernels().kernel, cpu_caps()},
      [&](const GemmVariant& v) { return v.supports(w, x); },
      [&](const GemmVariant& v) { return x.m >= v.min_tokens; },
      [&] { return fmt::format("m={} n={} k={} (activations k={})", x.m, w.n, w.k, x.k); });
}

void ternary_gemm_with(const GemmVariant& v, ThreadPool* pool, const TernaryMatrix& w, const QuantizedActs& x,
                       const GemmOut& out) {
  if (!v.supports(w, x)) fail("kernel {}: unsupported case m={} n={} k={}", v.name, x.m, w.n, w.k);
  if (x.m == 0) return;
  const int64_t grain = v.row_grain;
  if (!pool || pool->size() == 1) {
    v.fn(w, x, 0, w.n, out);
    return;
  }
  // About 8 chunks per thread (decode: with 2 threads 1/16 of the rows, >= 100 KB of weights on the
  // 2B4T; a prompt's chunk of >= 160 rows is >= 5 AMX panels, so the per-call setup stays small).
  // Each thread starts on its own contiguous share and then takes the chunks left in the others'
  // (parallel_for_stealing): a thread slowed down by another tenant (the shared Xeon often has one
  // slower vCPU) leaves its remaining chunks to the others instead of holding up the join, and
  // until then each thread's rows are one stream, so the kernels' prefetch ahead of a chunk's end
  // covers the start of its next one. Claiming every chunk from one shared counter handed the
  // threads alternate chunks, each starting cold: 8-token products on the 2B4T shapes, dev,
  // 2 threads (bench_gemm BM_Gemm/*/8/2), ran at 570 - 700 GMAC/s that way and 695 - 760 this way.
  const int64_t chunk = std::max<int64_t>(grain, (w.n / (8 * pool->size()) + grain - 1) / grain * grain);
  pool->parallel_for_stealing(w.n, chunk, [&](int, int64_t b, int64_t e) { v.fn(w, x, b, e, out); });
}

bool relu2_fused_supported(const GemmVariant& v, const TernaryMatrix& w, int64_t ff) {
  return v.relu2 != nullptr && ff > 0 && ff % kRowBlock == 0 && w.n == 2 * ff;
}

bool relu2_fused_supported(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff) {
  return relu2_fused_supported(select_gemm(w, x), w, ff);
}

void ternary_gemm_relu2(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff, int64_t r0, int64_t r1,
                        float* act, int64_t ld_act) {
  const GemmVariant& v = select_gemm(w, x);
  if (!relu2_fused_supported(v, w, ff))
    fail("fused relu2 gate|up: unsupported case m={} n={} k={} ff={} (AMX only)", x.m, w.n, w.k, ff);
  if (r0 < 0 || r0 % kRowBlock || r1 > ff || r0 > r1 || (r1 % kRowBlock && r1 != ff))
    fail("fused relu2 gate|up: bad row range [{}, {}) of {}", r0, r1, ff);
  v.relu2(w, x, ff, r0, r1, act, ld_act);
}

void ternary_gemm(ThreadPool* pool, const TernaryMatrix& w, const QuantizedActs& x, const GemmOut& out) {
  ternary_gemm_with(select_gemm(w, x), pool, w, x, out);
}

}  // namespace bitnet
