#include "quant/dispatch.h"

#include <cstdlib>

namespace bitnet {

ForcedKernels forced_kernels_from(const char* kernel, const char* head) {
  return {kernel ? kernel : "", head ? head : ""};
}

static ForcedKernels& process_forced() {
  // Read once: selection runs per product (decode: ~200 a token), and an environ scan each time
  // was most of its cost.
  static ForcedKernels f =
      forced_kernels_from(std::getenv("BITNET_KERNEL"), std::getenv("BITNET_HEAD_KERNEL"));
  return f;
}

const ForcedKernels& forced_kernels() {
  return process_forced();
}

void set_forced_kernels(const ForcedKernels& f) {
  process_forced() = f;
}

}  // namespace bitnet
