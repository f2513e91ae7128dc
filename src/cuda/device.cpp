#include "cuda/device.h"

#include <cuda_runtime.h>

#include "core/error.h"

namespace bitnet::cuda {

namespace {
// The runtime's answer to "how many GPUs", with its error when there are none.
int count_devices(cudaError_t* err) {
  int n = 0;
  *err = cudaGetDeviceCount(&n);
  if (*err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error state for later calls
    return 0;
  }
  return n;
}
}  // namespace

std::vector<GpuInfo> devices() {
  cudaError_t err;
  const int n = count_devices(&err);
  std::vector<GpuInfo> out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = p.name;
    g.cc_major = p.major;
    g.cc_minor = p.minor;
    g.multiprocessors = p.multiProcessorCount;
    g.memory_bytes = p.totalGlobalMem;
    g.l2_bytes = static_cast<size_t>(p.l2CacheSize);
    g.shared_per_block_optin = p.sharedMemPerBlockOptin;
    out.push_back(g);
  }
  return out;
}

std::string unavailable_reason() {
  cudaError_t err;
  const int n = count_devices(&err);
  if (n > 0) return "";
  if (err != cudaSuccess) return std::string("no usable GPU: ") + cudaGetErrorString(err);
  return "no usable GPU: the CUDA runtime found no device";
}

void require_device() {
  const std::string why = unavailable_reason();
  if (!why.empty()) fail("--device cuda: {}", why);
}

}  // namespace bitnet::cuda
