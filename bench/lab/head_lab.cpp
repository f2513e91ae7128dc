// Output-head layout lab (llm.c's dev/ habit): the Q8_0 head of the 2B4T (128,256 x 2,560) in
// ggml's stored layout (34-byte blocks: f16 scale + 32 int8) against a kernel-native layout in
// which the scale work is shared by 16 blocks. Each variant is checked against the scalar
// reference, then all are timed interleaved, round by round: cold (2 threads, the whole head,
// after a read of a larger buffer that also serves as the read probe) and hot (1 thread, 256 rows
// over and over: the kernel's compute ceiling). Usage: bench_head_lab [rounds]; needs AVX-512 VNNI.
//
// The "x16" layout: per row, the quants as unsigned bytes (w + 128) in groups of 16 blocks, so
// that 32-bit lane L of the group's vector v holds values 4v .. 4v+3 of block L; the f16 scales of
// a row in a separate array. Eight vpdpbusd (started at -128 x each block's activation sum) leave
// lane L with block L's exact integer sum, then one conversion and one fma scale 16 blocks.
// Against the stored layout: about 14 vector ops per 512 values instead of about 88.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "core/cpu.h"
#include "core/half.h"
#include "core/memory.h"
#include "core/thread_pool.h"
#include "quant/head_dot.h"
#include "quant/quantize_rows.h"
#include "quant/random_data.h"
#include "quant/stream_prefetch.h"

namespace bitnet {
namespace {

constexpr int64_t kVocab = 128256, kEmbd = 2560, kNb = kEmbd / 32, kGroups = kNb / 16;
static_assert(kNb % 16 == 0, "the lab's layout takes whole groups of 16 blocks");

struct X16 {
  AlignedBuffer q;   // [rows][kEmbd] u8 = w + 128, interleaved per group
  AlignedBuffer sc;  // [rows][kNb] f16 scales
};

X16 repack(const uint8_t* w, int64_t rows) {
  X16 o{AlignedBuffer(static_cast<size_t>(rows * kEmbd)), AlignedBuffer(static_cast<size_t>(rows * kNb * 2))};
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w + r * kNb * 34;
    uint8_t* dq = o.q.data() + r * kEmbd;
    uint8_t* ds = o.sc.data() + r * kNb * 2;
    for (int64_t b = 0; b < kNb; ++b) {
      std::memcpy(ds + 2 * b, row + b * 34, 2);
      const int64_t g = b / 16, L = b % 16;
      for (int i = 0; i < 32; ++i)
        dq[g * 512 + (i / 4) * 64 + L * 4 + i % 4] = static_cast<uint8_t>(row[b * 34 + 2 + i] ^ 0x80);
    }
  }
  return o;
}

struct X16Acts {
  AlignedBuffer xi;         // [kEmbd] int8, interleaved as the quants
  std::vector<int32_t> qb;  // [kNb] -128 x the block's activation sum
  std::vector<float> dx;    // [kNb]
};
X16Acts prepare_x16(const HeadActs& a) {
  X16Acts o{AlignedBuffer(kEmbd), std::vector<int32_t>(kNb), a.d};
  auto* xi = reinterpret_cast<int8_t*>(o.xi.data());
  for (int64_t b = 0; b < kNb; ++b) {
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) {
      const int8_t v = a.q[static_cast<size_t>(b * 32 + i)];
      s += v;
      xi[(b / 16) * 512 + (i / 4) * 64 + (b % 16) * 4 + i % 4] = v;
    }
    o.qb[static_cast<size_t>(b)] = -128 * s;
  }
  return o;
}

// R rows at a time share the activation loads. PF: 0 no software prefetch, 1 L1 + L2
// (prefetch_stream), 2 L2 only.
template <int R, int PF = 1>
void rows_x16(const X16& w, const X16Acts& a, int64_t r0, int64_t r1, float* y) {
  const auto* xi = reinterpret_cast<const int8_t*>(a.xi.data());
  for (int64_t r = r0; r < r1; r += R) {
    const uint8_t* q[R];
    const uint8_t* s[R];
    __m512 tot[R];
    for (int k = 0; k < R; ++k) {
      q[k] = w.q.data() + (r + k) * kEmbd;
      s[k] = w.sc.data() + (r + k) * kNb * 2;
      tot[k] = _mm512_setzero_ps();
      _mm_prefetch(reinterpret_cast<const char*>(s[k] + 8 * kNb * 2), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(s[k] + 8 * kNb * 2 + 64), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(s[k] + 8 * kNb * 2 + 128), _MM_HINT_T1);
    }
    for (int64_t g = 0; g < kGroups; ++g) {
      __m512i acc[R];
      const __m512i qb = _mm512_loadu_si512(a.qb.data() + 16 * g);
      for (int k = 0; k < R; ++k) acc[k] = qb;
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        const __m512i xv = _mm512_load_si512(xi + g * 512 + v * 64);
        for (int k = 0; k < R; ++k) {
          const uint8_t* p = q[k] + g * 512 + v * 64;
          if constexpr (PF == 1) prefetch_stream<true>(p);
          if constexpr (PF == 2) prefetch_stream<false>(p);
          acc[k] = _mm512_dpbusd_epi32(acc[k], _mm512_load_si512(p), xv);
        }
      }
      const __m512 dx = _mm512_loadu_ps(a.dx.data() + 16 * g);
      for (int k = 0; k < R; ++k) {
        const __m512 sc =
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s[k] + 32 * g)));
        tot[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k]), _mm512_mul_ps(sc, dx), tot[k]);
      }
    }
    for (int k = 0; k < R; ++k) y[r + k] = _mm512_reduce_add_ps(tot[k]);
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Reads buf with the pool's threads (each its half); returns GB/s. Also evicts the caches.
double read_probe(ThreadPool& pool, const AlignedBuffer& buf) {
  const double t0 = now_s();
  pool.run([&](int tid) {
    const size_t n = buf.size() / 64, b = n * tid / pool.size(), e = n * (tid + 1) / pool.size();
    __m512i s = _mm512_setzero_si512();
    for (size_t i = b; i < e; ++i) s = _mm512_add_epi64(s, _mm512_load_si512(buf.data() + i * 64));
    if (_mm512_reduce_add_epi64(s) == 42) std::printf(" ");  // keeps the loads
  });
  return static_cast<double>(buf.size()) / (now_s() - t0) / 1e9;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace
}  // namespace bitnet

int main(int argc, char** argv) {
  using namespace bitnet;
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  if (!cpu_features().avx512vnni) {
    std::printf("needs AVX-512 VNNI\n");
    return 0;
  }
  // The head, generated in pieces (1.3 GB as floats).
  const size_t rb = row_bytes(DType::Q8_0, kEmbd);
  AlignedBuffer w(rb * kVocab);
  for (int64_t r0 = 0; r0 < kVocab; r0 += 4096) {
    const int64_t rows = std::min<int64_t>(4096, kVocab - r0);
    auto f = random_floats(static_cast<size_t>(rows * kEmbd), static_cast<uint64_t>(r0 + 1));
    const auto b = quantize_rows(DType::Q8_0, f.data(), rows, kEmbd);
    std::memcpy(w.data() + r0 * rb, b.data(), b.size());
  }
  const X16 x16 = repack(w.data(), kVocab);
  auto x = random_floats(kEmbd, 7);
  HeadActs a;
  head_prepare(DType::Q8_0, x.data(), 1, kEmbd, a);
  const X16Acts ax = prepare_x16(a);
  const HeadVariant& lib = select_head(DType::Q8_0);
  const HeadVariant& ref = head_variants()[0];

  // Check: every variant against the scalar reference (float order differs: relative bound).
  std::vector<float> yr(kVocab), y(kVocab);
  head_matvec_with(ref, nullptr, w.data(), rb, kVocab, a, yr.data());
  auto check = [&](const char* name) {
    double worst = 0, big = 0;
    for (int64_t r = 0; r < kVocab; ++r) {
      worst = std::max(worst, std::fabs(double(y[r]) - yr[r]));
      big = std::max(big, std::fabs(double(yr[r])));
    }
    worst /= big;  // float order differs between variants: relative to the largest logit
    std::printf("%-14s max diff from the reference / max |logit| %.2e%s\n", name, worst,
                worst > 1e-5 ? "  FAILED" : "");
    return worst <= 1e-5;
  };
  bool ok = true;
  head_matvec_with(lib, nullptr, w.data(), rb, kVocab, a, y.data());
  ok &= check("library");
  rows_x16<1>(x16, ax, 0, kVocab, y.data());
  ok &= check("x16 1 row");
  rows_x16<2>(x16, ax, 0, kVocab, y.data());
  ok &= check("x16 2 rows");
  rows_x16<4>(x16, ax, 0, kVocab, y.data());
  ok &= check("x16 4 rows");
  if (!ok) return 1;

  ThreadPool pool(2);
  AlignedBuffer evict(size_t{768} << 20);
  std::memset(evict.data(), 1, evict.size());
  const double bytes = static_cast<double>(rb * kVocab);
  struct V {
    const char* name;
    std::function<void(int64_t, int64_t)> run;
    std::vector<double> cold, hot;
  };
  std::vector<V> vs;
  vs.push_back({"library",
                [&](int64_t r0, int64_t r1) { lib.fn(w.data(), rb, kVocab, r0, r1, a, y.data(), kVocab); },
                {},
                {}});
  vs.push_back(
      {"x16 1 row", [&](int64_t r0, int64_t r1) { rows_x16<1>(x16, ax, r0, r1, y.data()); }, {}, {}});
  vs.push_back(
      {"x16 2 rows", [&](int64_t r0, int64_t r1) { rows_x16<2>(x16, ax, r0, r1, y.data()); }, {}, {}});
  vs.push_back(
      {"x16 1 no pf", [&](int64_t r0, int64_t r1) { rows_x16<1, 0>(x16, ax, r0, r1, y.data()); }, {}, {}});
  vs.push_back(
      {"x16 1 L2 pf", [&](int64_t r0, int64_t r1) { rows_x16<1, 2>(x16, ax, r0, r1, y.data()); }, {}, {}});
  vs.push_back(
      {"x16 2 L2 pf", [&](int64_t r0, int64_t r1) { rows_x16<2, 2>(x16, ax, r0, r1, y.data()); }, {}, {}});
  vs.push_back(
      {"x16 4 rows", [&](int64_t r0, int64_t r1) { rows_x16<4>(x16, ax, r0, r1, y.data()); }, {}, {}});
  std::vector<double> probe;
  for (int round = 0; round < rounds; ++round) {
    for (auto& v : vs) {
      probe.push_back(read_probe(pool, evict));
      double t0 = now_s();
      pool.parallel_for_dynamic(kVocab, 1024, [&](int64_t r0, int64_t r1) { v.run(r0, r1); });
      v.cold.push_back(bytes / (now_s() - t0) / 1e9);
      constexpr int64_t hot_rows = 256;
      v.run(0, hot_rows);
      t0 = now_s();
      int reps = 0;
      for (; reps < 200; ++reps) v.run(0, hot_rows);
      v.hot.push_back(static_cast<double>(rb * hot_rows) * reps / (now_s() - t0) / 1e9);
    }
  }
  std::printf("%d rounds; read probe (2 threads) median %.1f GB/s, %.1f .. %.1f\n", rounds, median(probe),
              *std::min_element(probe.begin(), probe.end()), *std::max_element(probe.begin(), probe.end()));
  std::printf("%-14s %12s %12s   (GB/s of stored Q8_0 bytes, medians; cold per round)\n", "variant",
              "cold 2 thr", "hot 1 thr");
  for (auto& v : vs) {
    std::printf("%-14s %12.1f %12.1f   ", v.name, median(v.cold), median(v.hot));
    for (double c : v.cold) std::printf(" %.1f", c);
    std::printf("\n");
  }
  return 0;
}
