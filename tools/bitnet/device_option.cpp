#include "device_option.h"

#include <cstdio>

#include "core/error.h"
#include "inference/forward.h"
#if defined(BITNET_HAVE_CUDA)
#include "cuda/device.h"
#include "cuda/infer_session.h"
#endif

namespace bitnet::cli {

void add_device_option(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device, "cpu or cuda (default: cuda where built with it and a GPU is present)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
}

bool use_cuda(const std::string& device) {
#if defined(BITNET_HAVE_CUDA)
  if (device == "cuda") {
    cuda::require_device();
    return true;
  }
  if (device == "auto" && !cuda::devices().empty()) {
    std::fprintf(stderr, "running on the GPU (%s; --device cpu for the CPU)\n",
                 cuda::devices().front().name.c_str());
    return true;
  }
  return false;
#else
  if (device == "cuda") fail("--device cuda: this build has no CUDA backend (built with BITNET_CUDA=OFF)");
  return false;
#endif
}

std::unique_ptr<Engine> make_engine(const Model& model, int64_t n_ctx, int threads, bool cuda) {
#if defined(BITNET_HAVE_CUDA)
  if (cuda) {
    cuda::CudaSessionOptions o;
    o.n_ctx = n_ctx;
    return std::make_unique<cuda::CudaSession>(model, o);
  }
#else
  BN_CHECK(!cuda);
#endif
  return std::make_unique<Session>(model, SessionOptions{n_ctx, threads});
}

}  // namespace bitnet::cli
