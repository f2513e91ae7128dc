// `bitnet info`: what this CPU has, which kernel variant each operation will use, and the GPUs the
// CUDA backend sees.
#include <cstdio>

#include "commands.h"
#include "core/cpu.h"
#include "quant/act_quant.h"
#include "quant/dispatch.h"
#include "quant/gemm.h"
#include "quant/head_dot.h"
#if defined(BITNET_HAVE_CUDA)
#include "cuda/device.h"
#endif

namespace bitnet::cli {

void register_info(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("info", "Show CPU features, the kernel variants this CPU can run, and the GPUs");
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
#if defined(BITNET_HAVE_CUDA)
    const auto gpus = cuda::devices();
    if (gpus.empty()) std::printf("gpus: none (%s)\n", cuda::unavailable_reason().c_str());
    for (const auto& g : gpus)
      std::printf("gpu %d: %s, compute capability %d.%d, %d multiprocessors, %.1f GiB, L2 %.0f MiB\n",
                  g.index, g.name.c_str(), g.cc_major, g.cc_minor, g.multiprocessors,
                  static_cast<double>(g.memory_bytes) / (1 << 30),
                  static_cast<double>(g.l2_bytes) / (1 << 20));
#else
    std::printf("gpus: this build has no CUDA backend (BITNET_CUDA=OFF)\n");
#endif
  });
}

}  // namespace bitnet::cli
