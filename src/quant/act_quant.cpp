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
  a.quantizer = &select_act_quant();
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
const ActQuantVariant kVariants[] = {
    {"scalar", 0, quantize_act_row_ref, {"neon"}},
#if defined(BITNET_HAVE_X86_KERNELS)
    {"avx2", kCapAvx2, quantize_act_row_avx2, {"avxvnni"}},
    {"avx512", kCapAvx512Bw | kCapAvx512Vl, quantize_act_row_avx512, {"avx512bw", "avx512vnni", "avx512vnni_gfni", "amx"}},
#endif
};
}  // namespace

std::span<const ActQuantVariant> act_quant_variants() {
  return kVariants;
}

const ActQuantVariant& select_act_quant() {
  return select_variant(
      act_quant_variants(), {"activation quantizer", "BITNET_KERNEL", forced_kernels().kernel, cpu_caps()},
      [](const ActQuantVariant&) { return true; }, [](const ActQuantVariant&) { return true; },
      [] { return std::string("any row"); });
}

void quantize_acts_with(const ActQuantVariant& v, const float* x, int64_t ldx, QuantizedActs& out) {
  for (int64_t i = 0; i < out.m; ++i)
    v.fn(x + i * ldx, out.k, out.k_pad, out.q + i * out.k_pad, out.scale + i, out.dq + i,
         out.sum + i);
}

// Acts allocated by alloc_quantized_acts carry their quantizer; others select one here.
static const ActQuantVariant& quantizer_of(const QuantizedActs& a) {
  return a.quantizer ? *a.quantizer : select_act_quant();
}

void quantize_acts(const float* x, int64_t ldx, QuantizedActs& out) {
  quantize_acts_with(quantizer_of(out), x, ldx, out);
}

void quantize_act_row(const float* x, QuantizedActs& out, int64_t t) {
  quantizer_of(out).fn(x, out.k, out.k_pad, out.q + t * out.k_pad, out.scale + t, out.dq + t, out.sum + t);
}

}  // namespace bitnet
