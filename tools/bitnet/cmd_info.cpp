// `bitnet info`: what this CPU has and which kernel variant each operation will use.
#include <cstdio>

#include "commands.h"
#include "core/cpu.h"
#include "quant/act_quant.h"
#include "quant/dispatch.h"
#include "quant/gemm.h"

namespace bitnet::cli {

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show CPU features and the kernel variants this CPU can run");
  cmd->callback([] {
    std::printf("cpu: %s\n", cpu_summary().c_str());
    const std::string forced = forced_kernel_name();
    std::printf("BITNET_KERNEL: %s\n", forced.empty() ? "(unset: fastest)" : forced.c_str());
    std::printf("ternary gemm variants:\n");
    for (const auto& v : gemm_variants())
      std::printf("  %-12s %s\n", v.name, v.cpu_ok() ? "runs here" : "not supported by this CPU");
  });
}

}  // namespace bitnet::cli
