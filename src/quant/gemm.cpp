#include "quant/gemm.h"

#include <algorithm>
#include <cstdlib>

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
void ternary_gemm_amx(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
void ternary_gemm_amx_relu2(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, int64_t, float*,
                            int64_t);
#endif
#if defined(BITNET_HAVE_NEON_KERNELS)
void ternary_gemm_neon(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, const GemmOut&);
#endif

std::string forced_kernel_name() {
  // Read on every call (a short environ scan) so tests can switch variants with setenv.
  const char* e = std::getenv("BITNET_KERNEL");
  return e ? e : "";
}

namespace {
bool always() { return true; }
// Accumulators are int32: |sum c*x| <= 2 * 128 * k_pad must stay below 2^31.
bool any_case(const TernaryMatrix& w, const QuantizedActs& x) {
  return w.k == x.k && w.k_pad == x.k_pad && w.k_pad <= (int64_t{1} << 22);
}
#if defined(BITNET_HAVE_X86_KERNELS)
bool cpu_avx2() { return cpu_features().avx2 && cpu_features().fma; }
bool cpu_avxvnni() { return cpu_features().avxvnni; }
bool cpu_avx512bw() { return cpu_features().avx512bw && cpu_features().avx512vl; }
bool cpu_avx512vnni() { return cpu_avx512bw() && cpu_features().avx512vnni; }
// (Every AMX CPU so far also has AVX-512 VBMI, which the weight staging uses; checked all the same.)
bool cpu_amx() {
  return cpu_avx512vnni() && cpu_features().avx512vbmi && cpu_features().amx_int8 && request_amx();
}
// AMX pays once a 16-token tile is mostly full; below that VNNI is faster (tile setup + B staging).
bool amx_case(const TernaryMatrix& w, const QuantizedActs& x) { return any_case(w, x); }
#endif

const GemmVariant kVariants[] = {
    {"scalar", always, any_case, ternary_gemm_ref, 16},
#if defined(BITNET_HAVE_X86_KERNELS)
    {"avx2", cpu_avx2, any_case, ternary_gemm_avx2, 16},
    {"avx512bw", cpu_avx512bw, any_case, ternary_gemm_avx512bw, 32},
    {"avxvnni", cpu_avxvnni, any_case, ternary_gemm_avxvnni, 16},
    {"avx512vnni", cpu_avx512vnni, any_case, ternary_gemm_avx512vnni, 32},
    {"amx", cpu_amx, amx_case, ternary_gemm_amx, 32},
#endif
#if defined(BITNET_HAVE_NEON_KERNELS)
    {"neon", always, any_case, ternary_gemm_neon, 16},
#endif
};
}  // namespace

std::span<const GemmVariant> gemm_variants() { return kVariants; }

const GemmVariant& gemm_variant(std::string_view name) {
  for (const auto& v : kVariants)
    if (name == v.name) return v;
  std::string names;
  for (const auto& v : kVariants) names += std::string(names.empty() ? "" : ", ") + v.name;
  fail("unknown kernel '{}' (compiled: {})", name, names);
}

const GemmVariant& select_gemm(const TernaryMatrix& w, const QuantizedActs& x) {
  const std::string forced = forced_kernel_name();
  if (!forced.empty()) {
    const GemmVariant& v = gemm_variant(forced);
    if (!v.cpu_ok()) fail("BITNET_KERNEL={}: this CPU cannot run it ({})", forced, cpu_summary());
    if (!v.supports(w, x))
      fail("BITNET_KERNEL={}: unsupported case m={} n={} k={}", forced, x.m, w.n, w.k);
    return v;
  }
  const GemmVariant* best = nullptr;
  for (const auto& v : kVariants) {
    if (!v.cpu_ok() || !v.supports(w, x)) continue;
#if defined(BITNET_HAVE_X86_KERNELS)
    if (std::string_view(v.name) == "amx" && x.m < 16) continue;  // VNNI wins on short inputs
#endif
    best = &v;  // later entries are faster
  }
  if (!best) fail("no kernel supports m={} n={} k={} (activations k={})", x.m, w.n, w.k, x.k);
  return *best;
}

void ternary_gemm_with(const GemmVariant& v, ThreadPool* pool, const TernaryMatrix& w,
                       const QuantizedActs& x, const GemmOut& out) {
  if (!v.supports(w, x)) fail("kernel {}: unsupported case m={} n={} k={}", v.name, x.m, w.n, w.k);
  if (x.m == 0) return;
  const int64_t grain = v.row_grain;
  if (!pool || pool->size() == 1) {
    v.fn(w, x, 0, w.n, out);
    return;
  }
  // Rows are claimed dynamically (parallel_for_dynamic) in about 8 chunks per thread, so a thread
  // slowed down by another tenant takes fewer chunks instead of leaving the others idle at the
  // join. Decode (memory-bound): with 2 threads 1/16 of the rows, >= 100 KB of weights on the
  // 2B4T. Prompts too: on the shared Xeon one vCPU is often slower than the other (the 2-thread
  // AMX probe then gives no more than 1 thread), and with fixed halves the call waited for it.
  // A chunk of >= 160 rows is >= 5 AMX panels, so the per-call setup stays negligible.
  const int64_t chunk = std::max<int64_t>(grain, (w.n / (8 * pool->size()) + grain - 1) / grain * grain);
  pool->parallel_for_dynamic(w.n, chunk, [&](int64_t b, int64_t e) { v.fn(w, x, b, e, out); });
}

bool relu2_fused_supported(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff) {
#if defined(BITNET_HAVE_X86_KERNELS)
  return ff > 0 && ff % kRowBlock == 0 && w.n == 2 * ff && std::string_view(select_gemm(w, x).name) == "amx";
#else
  (void)w, (void)x, (void)ff;
  return false;
#endif
}

void ternary_gemm_relu2(const TernaryMatrix& w, const QuantizedActs& x, int64_t ff, int64_t r0, int64_t r1,
                        float* act, int64_t ld_act) {
  if (!relu2_fused_supported(w, x, ff))
    fail("fused relu2 gate|up: unsupported case m={} n={} k={} ff={} (AMX only)", x.m, w.n, w.k, ff);
  if (r0 < 0 || r0 % kRowBlock || r1 > ff || r0 > r1 || (r1 % kRowBlock && r1 != ff))
    fail("fused relu2 gate|up: bad row range [{}, {}) of {}", r0, r1, ff);
#if defined(BITNET_HAVE_X86_KERNELS)
  ternary_gemm_amx_relu2(w, x, ff, r0, r1, act, ld_act);
#endif
}

void ternary_gemm(ThreadPool* pool, const TernaryMatrix& w, const QuantizedActs& x, const GemmOut& out) {
  ternary_gemm_with(select_gemm(w, x), pool, w, x, out);
}

}  // namespace bitnet
