// `bitnet info`: what this CPU has and which kernel variant each operation will use.
#include <cstdio>

#include "commands.h"
#include "core/cpu.h"
#include "quant/act_quant.h"
#include "quant/dispatch.h"
#include "quant/gemm.h"
#include "quant/head_dot.h"

namespace bitnet::cli {

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show CPU features and the kernel variants this CPU can run");
  cmd->callback([] {
    std::printf("cpu: %s\n", cpu_summary().c_str());
    const ForcedKernels& forced = forced_kernels();
    std::printf("BITNET_KERNEL: %s\n", forced.kernel.empty() ? "(unset: fastest)" : forced.kernel.c_str());
    std::printf("BITNET_HEAD_KERNEL: %s\n", forced.head.empty() ? "(unset: fastest)" : forced.head.c_str());
    auto list = [](const char* what, auto variants) {
      std::printf("%s variants:\n", what);
      for (const auto& v : variants)
        std::printf("  %-12s %s\n", v.name, v.cpu_ok() ? "runs here" : "not supported by this CPU");
    };
    list("ternary gemm", gemm_variants());
    list("activation quantization", act_quant_variants());
    list("head dot", head_variants());
  });
}

}  // namespace bitnet::cli
