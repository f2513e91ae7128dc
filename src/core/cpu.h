#pragma once
// CPU feature detection. A feature counts only if both the CPU reports it (cpuid) and the OS
// saves its register state (xgetbv for AVX/AVX-512/AMX; AMX tile data additionally needs the
// Linux arch_prctl(ARCH_REQ_XCOMP_PERM) permission, requested once by request_amx()).
#include <string>

namespace bitnet {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool bmi2 = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512vbmi = false;  // vpermb (byte permutes across the register)
  bool avxvnni = false;   // VEX-encoded vpdpbusd on ymm (Alder Lake+, Zen 5)
  bool amx_tile = false;  // CPU reports AMX-TILE and the OS enabled XTILECFG/XTILEDATA in XCR0
  bool amx_int8 = false;
  bool neon = false;
  bool dotprod = false;  // ARMv8.2 sdot/udot
  bool amd = false;      // vendor "AuthenticAMD": tuning choices only (prefetch), never results
  std::string brand;
};

// Detected once, then cached.
const CpuFeatures& cpu_features();

// Asks Linux for permission to use AMX tile data (needed once per process before the first tile
// instruction). Returns false, with no side effect, where AMX is absent or the kernel refuses.
bool request_amx();

// One line listing the detected features, for `bitnet info` and benchmark headers.
std::string cpu_summary();

}  // namespace bitnet
