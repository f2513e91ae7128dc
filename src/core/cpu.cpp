#include "core/cpu.h"

#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace bitnet {
namespace {

#if defined(__x86_64__)
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(0, 0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  f.amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "Auth" "enti" "cAMD"
  __get_cpuid_count(1, 0, &a, &b, &c, &d);
  const bool osxsave = (c >> 27) & 1;
  const bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
  unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;       // SSE + AVX state
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG (17) + XTILEDATA (18)
  if (max_leaf >= 7) {
    __get_cpuid_count(7, 0, &a, &b, &c, &d);
    f.avx2 = os_avx && avx && ((b >> 5) & 1);
    f.bmi2 = (b >> 8) & 1;
    f.fma = os_avx && fma;
    f.f16c = os_avx && f16c;
    f.avx512f = os_avx512 && ((b >> 16) & 1);
    f.avx512dq = f.avx512f && ((b >> 17) & 1);
    f.avx512bw = f.avx512f && ((b >> 30) & 1);
    f.avx512vl = f.avx512f && ((b >> 31) & 1);
    f.avx512vnni = f.avx512f && ((c >> 11) & 1);
    f.avx512vbmi = f.avx512f && ((c >> 1) & 1);
    f.gfni = os_avx && ((c >> 8) & 1);
    f.amx_tile = os_amx && ((d >> 24) & 1);
    f.amx_int8 = f.amx_tile && ((d >> 25) & 1);
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    f.avxvnni = f.avx2 && ((a1 >> 4) & 1);
  }
  unsigned brand[12] = {};
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i)
      __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
    char s[49] = {};
    std::memcpy(s, brand, 48);
    f.brand = s;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
  return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
  CpuFeatures f;
  f.neon = true;
#if defined(__linux__)
  unsigned long hw = getauxval(AT_HWCAP);
  f.dotprod = (hw >> 20) & 1;  // HWCAP_ASIMDDP
#endif
  return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool request_amx() {
#if defined(__x86_64__) && defined(__linux__)
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    if (!cpu_features().amx_int8) return;
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    ok = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  });
  return ok;
#else
  return false;
#endif
}

CpuCaps cpu_caps() {
  static const CpuCaps caps = [] {
    const CpuFeatures& f = cpu_features();
    CpuCaps c = 0;
    auto set = [&](bool on, CpuCaps bit) { c |= on ? bit : 0; };
    set(f.avx2, kCapAvx2);
    set(f.fma, kCapFma);
    set(f.f16c, kCapF16c);
    set(f.avx512f, kCapAvx512F);
    set(f.avx512bw, kCapAvx512Bw);
    set(f.avx512vl, kCapAvx512Vl);
    set(f.avx512vnni, kCapAvx512Vnni);
    set(f.avx512vbmi, kCapAvx512Vbmi);
    set(f.gfni, kCapGfni);
    set(f.avxvnni, kCapAvxVnni);
    set(f.amx_int8 && request_amx(), kCapAmx);
    set(f.neon, kCapNeon);
    return c;
  }();
  return caps;
}

std::string cpu_summary() {
  const CpuFeatures& f = cpu_features();
  std::string s = f.brand.empty() ? std::string("unknown CPU") : f.brand;
  s += ":";
  auto add = [&](bool on, const char* name) {
    if (on) {
      s += ' ';
      s += name;
    }
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512vnni, "avx512vnni");
  add(f.avx512vbmi, "avx512vbmi");
  add(f.gfni, "gfni");
  add(f.avxvnni, "avxvnni");
  add(f.amx_tile, "amx-tile");
  add(f.amx_int8, "amx-int8");
  add(f.neon, "neon");
  add(f.dotprod, "dotprod");
  return s;
}

}  // namespace bitnet
