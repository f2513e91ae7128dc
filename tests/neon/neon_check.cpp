// Checks the NEON dotprod kernel against the scalar reference, bit for bit, on awkward shapes and
// extreme activations, and its adding float epilogue against store-then-add. A plain program (no GoogleTest) so it can be cross-compiled for aarch64
// and run under qemu-user on x86-64 machines: scripts/test-neon-qemu.sh.
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/arena.h"
#include "quant/gemm.h"
#include "quant/random_data.h"

using namespace bitnet;

int main() {
  int passed = 0, failed = 0;
  const GemmVariant& neon = gemm_variant("neon");
  const int64_t ms[] = {1, 3, 17, 130};
  const int64_t ns[] = {1, 15, 33, 100};
  const int64_t ks[] = {64, 100, 1000, 2593};
  int c = 0;
  for (int64_t m : ms)
    for (int64_t n : ns)
      for (int64_t k : ks) {
        if (m * n * k > 20'000'000) continue;
        auto wq = random_ternary(static_cast<size_t>(n * k), static_cast<uint64_t>(m * 7 + n * 13 + k));
        auto W = pack_native(wq.data(), n, k, 0.5f);
        Arena arena;
        auto X = alloc_quantized_acts(arena, m, k);
        auto xf = random_floats(static_cast<size_t>(m * k), static_cast<uint64_t>(c), -2.0f, 2.0f);
        if (c % 3 == 1) for (auto& v : xf) v = -1.0f;  // all -127 after quantization
        if (c % 3 == 2) for (size_t i = 0; i < xf.size(); ++i) xf[i] = i % 2 ? -1.0f : 1.0f;
        quantize_acts(xf.data(), k, X);
        if (c % 5 == 4) {  // all -128 (only reachable by hand: the quantizer's range is symmetric)
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < k; ++j) X.q[i * X.k_pad + j] = -128;
            X.sum[i] = static_cast<int32_t>(-128 * k);
          }
        }
        std::vector<int32_t> want(static_cast<size_t>(m * n)), got(want.size(), 0x7eadbeef);
        ternary_gemm_ref(W, X, 0, n, {want.data(), n, nullptr, 0});
        ternary_gemm_with(neon, nullptr, W, X, {got.data(), n, nullptr, 0});
        // The residual-stream epilogue (GemmOut::add): y0 + the stored product, bit for bit.
        std::vector<float> prod(want.size()), y = random_floats(want.size(), static_cast<uint64_t>(c) + 99);
        const std::vector<float> y0 = y;
        ternary_gemm_with(neon, nullptr, W, X, {nullptr, 0, prod.data(), n});
        ternary_gemm_with(neon, nullptr, W, X, {nullptr, 0, y.data(), n, true});
        bool add_ok = true;
        for (size_t i = 0; i < y.size(); ++i) {
          const float s = y0[i] + prod[i];
          add_ok = add_ok && std::memcmp(&s, &y[i], 4) == 0;
        }
        if (got == want && add_ok) {
          ++passed;
        } else {
          ++failed;
          std::printf("MISMATCH m=%lld n=%lld k=%lld\n", static_cast<long long>(m), static_cast<long long>(n),
                      static_cast<long long>(k));
        }
        ++c;
      }
  std::printf("neon: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
