#pragma once
// Kernel selection, one mechanism for every kernel family (ternary GEMM gemm.h, activation
// quantization act_quant.h, head dots head_dot.h). A family is a table of plain variant
// descriptors, slowest first; each names itself, states the CPU capabilities it needs
// (core/cpu.h) and, through its family's fields, which cases it supports (MLX-style). Selection
// takes the fastest variant that the CPU runs and that supports the case.
//
// Forcing: BITNET_KERNEL=<name> forces the ternary path, i.e. the GEMM family and the activation
// quantizer feeding it; BITNET_HEAD_KERNEL=<name> the head-dot family. In each family it forces,
// the name selects the variant called so, or the one that lists it in `serves` (an explicit
// table entry, e.g. the AVX-512 quantizer serves avx512bw, avx512vnni and amx). A family where no
// variant answers to the name, or whose variant the CPU cannot run or that does not support the
// case, fails loudly (bitnet::Error) at selection: never a silent fallback.
//
// The variables are read once per process (forced_kernels()); tests and benchmarks replace the
// values with set_forced_kernels().
#include <span>
#include <string>
#include <string_view>

#include "core/cpu.h"
#include "core/error.h"

namespace bitnet {

struct ForcedKernels {
  std::string kernel;  // BITNET_KERNEL: ternary GEMM + activation quantization ("" = fastest)
  std::string head;    // BITNET_HEAD_KERNEL: head dots ("" = fastest)
};

// From the variables' values (null when unset).
ForcedKernels forced_kernels_from(const char* kernel, const char* head);
// The process's: read from the environment on first use, then kept.
const ForcedKernels& forced_kernels();
// Replaces the process's (tests, benchmarks). Not while kernels run on other threads.
void set_forced_kernels(const ForcedKernels& f);

// One selection: the family (for messages), the variable that forces it and its value, and the
// CPU's capabilities (cpu_caps(); tests pass others).
struct Selection {
  const char* family;
  const char* var;
  std::string_view forced;
  CpuCaps caps;
};

// Whether v is the variant `name` forces: its own name, or one it lists in `serves`.
template <typename V>
bool answers_to(const V& v, std::string_view name) {
  if (name == v.name) return true;
  if constexpr (requires { v.serves; })
    for (const char* s : v.serves)
      if (s && name == s) return true;
  return false;
}

template <typename V>
std::string variant_names(std::span<const V> table) {
  std::string s;
  for (const V& v : table) s += std::string(s.empty() ? "" : ", ") + v.name;
  return s;
}

// The variant of `table` (slowest first) for one case. `supports(v)`: v handles the case;
// `wanted(v)`: auto-selection takes it for the case (e.g. AMX only from 16 tokens; forcing
// ignores it); `describe()`: the case, for errors. O(table size), no allocation unless it fails.
template <typename V, typename Supports, typename Wanted, typename Describe>
const V& select_variant(std::span<const V> table, const Selection& sel, Supports&& supports, Wanted&& wanted,
                        Describe&& describe) {
  if (!sel.forced.empty()) {
    for (const V& v : table) {
      if (!answers_to(v, sel.forced)) continue;
      if ((sel.caps & v.needs) != v.needs)
        fail("{}={}: this CPU cannot run the {} variant {} ({})", sel.var, sel.forced, sel.family, v.name,
             cpu_summary());
      if (!supports(v))
        fail("{}={}: the {} variant {} does not support {}", sel.var, sel.forced, sel.family, v.name,
             describe());
      return v;
    }
    fail("{}={}: no {} variant answers to it (compiled: {})", sel.var, sel.forced, sel.family,
         variant_names(table));
  }
  const V* best = nullptr;
  for (const V& v : table)
    if ((sel.caps & v.needs) == v.needs && supports(v) && wanted(v)) best = &v;  // later is faster
  if (!best) fail("no {} variant supports {}", sel.family, describe());
  return *best;
}

}  // namespace bitnet
