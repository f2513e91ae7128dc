#pragma once
// The GPUs this process can use. Never throws for a machine without a driver or a GPU: the list
// is then empty and cuda_unavailable_reason() says why (callers that need a GPU fail loudly with it).
#include <cstddef>
#include <string>
#include <vector>

namespace bitnet::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  int multiprocessors = 0;
  size_t memory_bytes = 0, l2_bytes = 0;
  size_t shared_per_block_optin = 0;  // the most dynamic shared memory one block may ask for
};

std::vector<GpuInfo> devices();
std::string unavailable_reason();  // "" when at least one GPU is usable

// Throws bitnet::Error naming the reason when no GPU is usable (e.g. `--device cuda` here).
void require_device();

}  // namespace bitnet::cuda
