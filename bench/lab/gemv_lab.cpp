// Decode GEMV lab (llm.c's dev/ habit): variants of the AVX-512 VNNI decode GEMV's memory side
// (software prefetch distance and hint, how rows are handed to threads), each checked against the
// library's int32 accumulators bit for bit, then timed interleaved, round by round, on the decode
// sequence of the 2B4T: 30 layers x (q|k|v, o, gate|up, down), 520 MB of weights read once per
// pass as a decoded token reads them. Usage: bench_gemv_lab [rounds] [threads]; needs AVX-512 VNNI.
//
// Also timed: the library's kernel on the same sequence, and on one shape over and over
// ("gate|up only", as bench_gemv does), to tell the sequence's cost (stream starts, shape changes)
// from the kernel's.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/cpu.h"
#include "core/thread_pool.h"
#include "quant/act_quant.h"
#include "quant/gemm.h"
#include "quant/native.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512i dot(__m512i acc, __m512i u, __m512i x) {
  return _mm512_dpbusd_epi32(acc, u, x);
}

template <int HINT>
inline void pf(const uint8_t* p) {
  if constexpr (HINT >= 0) _mm_prefetch(reinterpret_cast<const char*>(p), static_cast<_mm_hint>(HINT));
}

// The library's loop (masked planes, eight accumulators) with the prefetch as knobs: D1 bytes ahead
// with hint H1, plus (if D2 > 0) D2 bytes ahead with hint H2. Raw accumulators out (i32 only).
template <int D1, int H1, int D2, int H2>
void gemv(const TernaryMatrix& w, const QuantizedActs& x, int64_t n0, int64_t n1, int32_t* out) {
  const int64_t chunks = w.k_pad / kChunkK;
  const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0C), m2 = _mm512_set1_epi8(0x30),
                m3 = _mm512_set1_epi8(static_cast<char>(0xC0));
  for (int64_t row0 = n0; row0 < n1; row0 += kRowBlock) {
    const uint8_t* p = w.block(row0 / kRowBlock);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t c = 0;
    for (; c + 2 <= chunks; c += 2) {
      const uint8_t* q = p + c * kChunkBytes;
      if constexpr (D1 > 0) {
        pf<H1>(q + D1);
        pf<H1>(q + D1 + 64);
      }
      if constexpr (D2 > 0) {
        pf<H2>(q + D2);
        pf<H2>(q + D2 + 64);
      }
      const __m512i v = _mm512_load_si512(q), u = _mm512_load_si512(q + 64);
      const int8_t* xc = x.q + c * kChunkK;
      a0 = dot(a0, _mm512_and_si512(v, m0), bcast4(xc));
      a1 = dot(a1, _mm512_and_si512(v, m1), bcast4(xc + 4));
      a2 = dot(a2, _mm512_and_si512(v, m2), bcast4(xc + 8));
      a3 = dot(a3, _mm512_and_si512(v, m3), bcast4(xc + 12));
      b0 = dot(b0, _mm512_and_si512(u, m0), bcast4(xc + 16));
      b1 = dot(b1, _mm512_and_si512(u, m1), bcast4(xc + 20));
      b2 = dot(b2, _mm512_and_si512(u, m2), bcast4(xc + 24));
      b3 = dot(b3, _mm512_and_si512(u, m3), bcast4(xc + 28));
    }
    if (c < chunks) {
      const __m512i v = _mm512_load_si512(p + c * kChunkBytes);
      const int8_t* xc = x.q + c * kChunkK;
      a0 = dot(a0, _mm512_and_si512(v, m0), bcast4(xc));
      a1 = dot(a1, _mm512_and_si512(v, m1), bcast4(xc + 4));
      a2 = dot(a2, _mm512_and_si512(v, m2), bcast4(xc + 8));
      a3 = dot(a3, _mm512_and_si512(v, m3), bcast4(xc + 12));
    }
    __m512i t = _mm512_add_epi32(_mm512_add_epi32(a0, b0), _mm512_srai_epi32(_mm512_add_epi32(a1, b1), 2));
    t = _mm512_add_epi32(t, _mm512_add_epi32(_mm512_srai_epi32(_mm512_add_epi32(a2, b2), 4),
                                             _mm512_srai_epi32(_mm512_add_epi32(a3, b3), 6)));
    t = _mm512_sub_epi32(t, _mm512_set1_epi32(x.sum[0]));
    const int64_t valid = std::min<int64_t>(16, n1 - row0);
    _mm512_mask_storeu_epi32(out + row0, static_cast<__mmask16>((1u << valid) - 1), t);
  }
}

using LabFn = void (*)(const TernaryMatrix&, const QuantizedActs&, int64_t, int64_t, int32_t*);

struct Variant {
  std::string name;
  LabFn fn;        // null: the library's kernel
  int per_thread;  // dynamic chunks per thread; 0: one static range per thread; < 0: guided
  int gap_us = 0;  // the caller busy for this long after each product (the model's norms etc.)
};

struct Mat {
  TernaryMatrix w;
  const QuantizedActs* x;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void busy(int us) {
  if (us <= 0) return;
  const double end = now_s() + us * 1e-6;
  while (now_s() < end) {
  }
}

void run_one(const Variant& v, ThreadPool& pool, const Mat& m, std::vector<int32_t>& out) {
  if (!v.fn) {
    ternary_gemm(&pool, m.w, *m.x, {out.data(), m.w.n, nullptr, 0});
    return;
  }
  const int64_t grain = 32;
  if (v.per_thread < 0) {
    // Guided: each claim takes 1 / (-per_thread * threads) of the rows still left (at least one
    // grain), so chunks shrink towards the end and the threads finish together.
    std::atomic<int64_t> next{0};
    const int64_t n = m.w.n, div = -v.per_thread * pool.size();
    pool.run([&](int) {
      int64_t b = next.load(std::memory_order_relaxed);
      for (;;) {
        if (b >= n) return;
        const int64_t size = std::max<int64_t>(grain, (n - b) / div / grain * grain);
        if (next.compare_exchange_weak(b, b + size, std::memory_order_relaxed)) {
          v.fn(m.w, *m.x, b, std::min(n, b + size), out.data());
          b = next.load(std::memory_order_relaxed);
        }
      }
    });
    return;
  }
  if (v.per_thread == 0) {
    pool.parallel_for(m.w.n, grain, [&](int64_t b, int64_t e) { v.fn(m.w, *m.x, b, e, out.data()); });
    return;
  }
  const int64_t chunk =
      std::max<int64_t>(grain, (m.w.n / (v.per_thread * pool.size()) + grain - 1) / grain * grain);
  pool.parallel_for_dynamic(m.w.n, chunk, [&](int64_t b, int64_t e) { v.fn(m.w, *m.x, b, e, out.data()); });
}

}  // namespace
}  // namespace bitnet

int main(int argc, char** argv) {
  using namespace bitnet;
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  if (!cpu_features().avx512vnni) {
    std::printf("needs AVX-512 VNNI (%s)\n", cpu_summary().c_str());
    return 1;
  }
  constexpr int64_t d = 2560, ff = 6912, layers = 30;
  Arena arena;
  auto xf = random_floats(ff, 5);
  QuantizedActs xd = alloc_quantized_acts(arena, 1, d), xff = alloc_quantized_acts(arena, 1, ff);
  quantize_acts(xf.data(), d, xd);
  quantize_acts(xf.data(), ff, xff);
  std::vector<Mat> seq;
  for (int64_t l = 0; l < layers; ++l) {
    const uint64_t s = static_cast<uint64_t>(l) * 4;
    seq.push_back({random_native(3840, d, s + 1, 1.0f), &xd});
    seq.push_back({random_native(d, d, s + 2, 1.0f), &xd});
    seq.push_back({random_native(2 * ff, d, s + 3, 1.0f), &xd});
    seq.push_back({random_native(d, ff, s + 4, 1.0f), &xff});
  }
  double bytes = 0;
  for (const Mat& m : seq) bytes += static_cast<double>(m.w.bytes());
  std::vector<const Mat*> all, gu_only;
  for (const Mat& m : seq) all.push_back(&m);
  for (size_t i = 2; i < seq.size(); i += 4) gu_only.push_back(&seq[i]);
  double gu_bytes = 0;
  for (const Mat* m : gu_only) gu_bytes += static_cast<double>(m->w.bytes());

  const std::vector<Variant> vs = {
      {"library", nullptr, 8},
      {"pf 2K T0 (lib loop)", gemv<2048, _MM_HINT_T0, 0, 0>, 8},
      {"pf none", gemv<0, 0, 0, 0>, 8},
      {"pf 4K T0", gemv<4096, _MM_HINT_T0, 0, 0>, 8},
      {"pf 4K T1", gemv<4096, _MM_HINT_T1, 0, 0>, 8},
      {"pf 1K T0 + 8K T1", gemv<1024, _MM_HINT_T0, 8192, _MM_HINT_T1>, 8},
      {"pf 2K NTA", gemv<2048, _MM_HINT_NTA, 0, 0>, 8},
      {"pf 8K T1 only", gemv<0, 0, 8192, _MM_HINT_T1>, 8},
      {"pf 512 T0 + 8K T1", gemv<512, _MM_HINT_T0, 8192, _MM_HINT_T1>, 8},
      {"pf 2K T0 + 8K T1", gemv<2048, _MM_HINT_T0, 8192, _MM_HINT_T1>, 8},
      {"pf 1K T0 + 12K T1", gemv<1024, _MM_HINT_T0, 12288, _MM_HINT_T1>, 8},
      {"pf 1K T0 + 16K T1", gemv<1024, _MM_HINT_T0, 16384, _MM_HINT_T1>, 8},
      {"pf 1K T0 + 8K T2", gemv<1024, _MM_HINT_T0, 8192, _MM_HINT_T2>, 8},
      {"pf 2K T0, static halves", gemv<2048, _MM_HINT_T0, 0, 0>, 0},
      {"pf 2K T0, 32 chunks/thread", gemv<2048, _MM_HINT_T0, 0, 0>, 32},
      {"pf 1K+8K, guided /2", gemv<1024, _MM_HINT_T0, 8192, _MM_HINT_T1>, -2},
      {"pf 1K+8K, guided /4", gemv<1024, _MM_HINT_T0, 8192, _MM_HINT_T1>, -4},
      {"pf 1K+8K, 4 chunks/thread", gemv<1024, _MM_HINT_T0, 8192, _MM_HINT_T1>, 4},
      {"library, 5 us gaps", nullptr, 8, 5},
      {"library, 20 us gaps", nullptr, 8, 20},
  };
  ThreadPool pool(threads);
  // Check: every lab variant's accumulators equal the library's on every matrix of layer 0.
  std::vector<int32_t> want(2 * ff), got(2 * ff);
  for (int i = 0; i < 4; ++i)
    for (const Variant& v : vs) {
      std::fill(want.begin(), want.end(), 0);
      std::fill(got.begin(), got.end(), -1);
      run_one(vs[0], pool, seq[static_cast<size_t>(i)], want);
      run_one(v, pool, seq[static_cast<size_t>(i)], got);
      if (!std::equal(want.begin(), want.begin() + seq[static_cast<size_t>(i)].w.n, got.begin())) {
        std::printf("MISMATCH: %s on matrix %d\n", v.name.c_str(), i);
        return 1;
      }
    }
  std::printf("all %zu variants equal the library bit for bit; %d threads, %.0f MB per pass\n", vs.size(),
              threads, bytes / 1e6);
  std::vector<std::vector<double>> seq_gbs(vs.size()), gu_gbs(vs.size());
  // Per matrix kind inside the sequence (q|k|v, o, gate|up, down): seconds, summed over rounds.
  std::vector<std::array<double, 4>> kind_s(vs.size(), std::array<double, 4>{});
  double kind_bytes[4] = {};
  for (size_t j = 0; j < 4; ++j) kind_bytes[j] = static_cast<double>(seq[j].w.bytes()) * layers;
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < vs.size(); ++i) {
      double in_products = 0;  // the gaps are not counted
      for (int rep = 0; rep < 3; ++rep)
        for (size_t j = 0; j < all.size(); ++j) {
          busy(vs[i].gap_us);
          const double tm = now_s();
          run_one(vs[i], pool, *all[j], got);
          const double dt = now_s() - tm;
          kind_s[i][j % 4] += dt;
          in_products += dt;
        }
      seq_gbs[i].push_back(3 * bytes / in_products / 1e9);
      double t0 = now_s();
      t0 = now_s();
      for (int rep = 0; rep < 3; ++rep)
        for (const Mat* m : gu_only) run_one(vs[i], pool, *m, got);
      gu_gbs[i].push_back(3 * gu_bytes / (now_s() - t0) / 1e9);
    }
  auto med = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("%-28s %14s %14s   (GB/s, median of %d rounds; min..max)   in the sequence: qkv o gu down\n",
              "variant", "layer sequence", "gate|up only", rounds);
  for (size_t i = 0; i < vs.size(); ++i) {
    std::printf("%-28s %14.1f %14.1f   (%.1f..%.1f / %.1f..%.1f)  ", vs[i].name.c_str(), med(seq_gbs[i]),
                med(gu_gbs[i]), *std::min_element(seq_gbs[i].begin(), seq_gbs[i].end()),
                *std::max_element(seq_gbs[i].begin(), seq_gbs[i].end()),
                *std::min_element(gu_gbs[i].begin(), gu_gbs[i].end()),
                *std::max_element(gu_gbs[i].begin(), gu_gbs[i].end()));
    for (size_t j = 0; j < 4; ++j) std::printf(" %5.1f", 3.0 * rounds * kind_bytes[j] / kind_s[i][j] / 1e9);
    std::printf("\n");
  }
  return 0;
}
