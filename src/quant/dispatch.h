#pragma once
// Kernel selection. Each variant declares what CPU it needs (cpu_ok) and which cases it supports
// (supports), MLX-style; the dispatcher takes the fastest variant that can run the case. The
// environment variable BITNET_KERNEL=<name> forces one variant for every call (tests and
// benchmarks use this to run each one); forcing a variant the CPU lacks, or one that does not
// support a case, is a loud error, never a silent fallback.
#include <string>

namespace bitnet {

// Value of BITNET_KERNEL ("" when unset).
std::string forced_kernel_name();

}  // namespace bitnet
