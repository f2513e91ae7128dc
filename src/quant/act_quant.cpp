#include "quant/act_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu.h"
#include "core/error.h"
#include "core/memory.h"
#include "quant/dispatch.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86_KERNELS)
void quantize_act_row_avx2(const float*, int64_t, int64_t, int8_t*, float*, float*, int32_t*);
void quantize_act_row_avx512(const float*, int64_t, int64_t, int8_t*, float*, float*, int32_t*);
#endif

QuantizedActs alloc_quantized_acts(Arena& arena, int64_t m, int64_t k) {
  BN_CHECK(m >= 0 && k >= 0);
  QuantizedActs a;
  a.m = m;
  a.k = k;
  a.k_pad = static_cast<int64_t>(round_up(static_cast<size_t>(k), kActKAlign));
  a.q = arena.alloc<int8_t>(static_cast<size_t>(m * a.k_pad));
  a.scale = arena.alloc<float>(static_cast<size_t>(m));
  a.dq = arena.alloc<float>(static_cast<size_t>(m));
  a.sum = arena.alloc<int32_t>(static_cast<size_t>(m));
  return a;
}

void quantize_act_row_ref(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* scale,
                          float* dq, int32_t* sum) {
  float amax = 0.0f;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = 127.0f / std::max(amax, 1e-5f);
  int32_t total = 0;
  for (int64_t i = 0; i < k; ++i) {
    const float r = std::clamp(std::nearbyint(x[i] * s), -128.0f, 127.0f);
    q[i] = static_cast<int8_t>(r);
    total += q[i];
  }
  std::memset(q + k, 0, static_cast<size_t>(k_pad - k));
  *scale = s;
  *dq = 1.0f / s;
  *sum = total;
}

namespace {
bool always() { return true; }
#if defined(BITNET_HAVE_X86_KERNELS)
bool has_avx2() { return cpu_features().avx2; }
bool has_avx512() { return cpu_features().avx512bw && cpu_features().avx512vl; }
#endif
const ActQuantVariant kVariants[] = {
    {"scalar", always, quantize_act_row_ref},
#if defined(BITNET_HAVE_X86_KERNELS)
    {"avx2", has_avx2, quantize_act_row_avx2},
    {"avx512", has_avx512, quantize_act_row_avx512},
#endif
};
}  // namespace

const ActQuantVariant* act_quant_variants(int* count) {
  *count = static_cast<int>(sizeof(kVariants) / sizeof(kVariants[0]));
  return kVariants;
}

void quantize_acts_with(const ActQuantVariant& v, const float* x, int64_t ldx, QuantizedActs& out) {
  for (int64_t i = 0; i < out.m; ++i)
    v.fn(x + i * ldx, out.k, out.k_pad, out.q + i * out.k_pad, out.scale + i, out.dq + i,
         out.sum + i);
}

// Chosen on every call: tests switch BITNET_KERNEL at run time (the cost is a getenv).
static const ActQuantVariant& chosen_act_quant() {
  const ActQuantVariant* chosen = [] {
    int n = 0;
    const ActQuantVariant* vs = act_quant_variants(&n);
    const ActQuantVariant* best = &vs[0];
    for (int i = 0; i < n; ++i)
      if (vs[i].cpu_ok()) best = &vs[i];  // listed slowest to fastest
    // A forced GEMM kernel (BITNET_KERNEL) picks the activation variant of the same ISA family.
    const std::string forced = forced_kernel_name();
    if (!forced.empty()) {
      best = &vs[0];
      for (int i = 0; i < n; ++i)
        if (forced.rfind(vs[i].name, 0) == 0 && vs[i].cpu_ok()) best = &vs[i];
    }
    return best;
  }();
  return *chosen;
}

void quantize_acts(const float* x, int64_t ldx, QuantizedActs& out) {
  quantize_acts_with(chosen_act_quant(), x, ldx, out);
}

void quantize_act_row(const float* x, QuantizedActs& out, int64_t t) {
  chosen_act_quant().fn(x, out.k, out.k_pad, out.q + t * out.k_pad, out.scale + t, out.dq + t, out.sum + t);
}

}  // namespace bitnet
