#include "device_option.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/error.h"
#include "inference/forward.h"
#if defined(BITNET_HAVE_CUDA)
#include "cuda/device.h"
#include "cuda/infer_session.h"
#include "cuda/infer_tp.h"
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

void add_tp_options(CLI::App* cmd, TpOption& o) {
  cmd->add_option("--tp", o.tp, "tensor parallel over GPUs 0 .. N-1 (CUDA)")->check(CLI::Range(1, 64));
  o.devices_opt = cmd->add_option(
      "--tp-devices", o.devices,
      "tensor parallel over these GPUs, e.g. 0,1; one GPU repeated (0,0) runs every rank on it");
}

namespace {

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = std::min(s.find(',', at), s.size());
    const std::string item = s.substr(at, comma - at);
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0)
      fail("--tp-devices '{}': '{}' is not a GPU index (a list like 0,1)", s, item);
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

int gpu_count() {
#if defined(BITNET_HAVE_CUDA)
  return static_cast<int>(cuda::devices().size());
#else
  return 0;
#endif
}

}  // namespace

std::vector<int> tp_devices(const TpOption& o, bool cuda) {
  if (!o.given()) return {};
  if (!cuda) fail("--tp and --tp-devices run on GPUs; this run is on the CPU (use --device cuda)");
  if (!o.devices_given()) {
    if (o.tp == 1) return {};
    const int have = gpu_count();
    if (o.tp > have) fail("--tp {} needs {} GPUs; this machine has {}", o.tp, o.tp, have);
    std::vector<int> d(static_cast<size_t>(o.tp));
    for (int i = 0; i < o.tp; ++i) d[static_cast<size_t>(i)] = i;
    return d;
  }
  if (o.devices.empty()) fail("--tp-devices: the device list is empty (a list like 0,1)");
  const std::vector<int> d = parse_list(o.devices);
  if (o.tp != 0 && o.tp != static_cast<int>(d.size()))
    fail("--tp {} and --tp-devices {} ({} GPUs) disagree", o.tp, o.devices, d.size());
  return d;
}

void warn_past_trained_context(const ModelConfig& c, int64_t n_ctx) {
  static bool said = false;  // once a process (perplexity --kl-base makes two engines)
  if (c.n_ctx_train > 0 && n_ctx > c.n_ctx_train && !std::exchange(said, true))
    std::fprintf(stderr,
                 "warning: a context of %lld positions passes the %lld the model was trained on; text past "
                 "position %lld may degrade\n",
                 static_cast<long long>(n_ctx), static_cast<long long>(c.n_ctx_train),
                 static_cast<long long>(c.n_ctx_train));
}

std::unique_ptr<Engine> make_engine(const Model& model, int64_t n_ctx, int threads, bool cuda,
                                    const std::vector<int>& tp) {
  warn_past_trained_context(model.cfg, n_ctx);
#if defined(BITNET_HAVE_CUDA)
  if (cuda) {
    cuda::CudaSessionOptions o;
    o.n_ctx = n_ctx;
    if (!tp.empty()) return std::make_unique<cuda::CudaTpSession>(model, o, tp);
    return std::make_unique<cuda::CudaSession>(model, o);
  }
#else
  BN_CHECK(!cuda);
#endif
  BN_CHECK(tp.empty());
  return std::make_unique<Session>(model, SessionOptions{n_ctx, threads});
}

}  // namespace bitnet::cli
