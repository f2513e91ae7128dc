#pragma once
// CPU feature detection. A feature counts only if both the CPU reports it (cpuid) and the OS
// saves its register state (xgetbv for AVX/AVX-512/AMX; AMX tile data additionally needs the
// Linux arch_prctl(ARCH_REQ_XCOMP_PERM) permission, requested once by request_amx()).
#include <cstdint>
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
  bool gfni = false;        // gf2p8affineqb (bit-matrix transforms of bytes)
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

// Named CPU capabilities, one bit each. Every kernel variant states the ones it needs (a variant
// runs where cpu_has(its needs)), so all kernel families and the float primitives (ops/vec.cpp)
// check the CPU in the same words.
using CpuCaps = uint32_t;
inline constexpr CpuCaps kCapAvx2 = 1u << 0;
inline constexpr CpuCaps kCapFma = 1u << 1;
inline constexpr CpuCaps kCapF16c = 1u << 2;
inline constexpr CpuCaps kCapAvx512F = 1u << 3;
inline constexpr CpuCaps kCapAvx512Bw = 1u << 4;
inline constexpr CpuCaps kCapAvx512Vl = 1u << 5;
inline constexpr CpuCaps kCapAvx512Vnni = 1u << 6;
inline constexpr CpuCaps kCapAvx512Vbmi = 1u << 7;
inline constexpr CpuCaps kCapAvxVnni = 1u << 8;
inline constexpr CpuCaps kCapAmx = 1u << 9;  // AMX-INT8, and Linux granted tile data (request_amx)
inline constexpr CpuCaps kCapNeon = 1u << 10;
inline constexpr CpuCaps kCapGfni = 1u << 11;

// This CPU's capabilities, detected once (the first call asks for the AMX permission where the
// CPU has AMX, so the request is made once per process).
CpuCaps cpu_caps();
// Whether this CPU has every capability in `need`.
inline bool cpu_has(CpuCaps need) {
  return (cpu_caps() & need) == need;
}

// One line listing the detected features, for `bitnet info` and benchmark headers.
std::string cpu_summary();

}  // namespace bitnet
