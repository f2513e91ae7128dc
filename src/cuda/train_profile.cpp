// OpProfile (train_profile.h): events at op boundaries, totals per op name.
#include "cuda/train_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "cuda/check.h"

namespace bitnet::cuda {

OpProfile::OpProfile() {
  if (const char* e = std::getenv("BITNET_CUDA_PROFILE")) report_after_ = std::max(0LL, std::atoll(e));
}

OpProfile::~OpProfile() {
  for (cudaEvent_t e : pool_) (void)cudaEventDestroy(e);
}

void OpProfile::record(const char* name, cudaStream_t s) {
  if (marks_.size() == pool_.size()) {
    cudaEvent_t e = nullptr;
    BN_CUDA(cudaEventCreate(&e));
    pool_.push_back(e);
  }
  cudaEvent_t e = pool_[marks_.size()];
  BN_CUDA(cudaEventRecord(e, s));
  marks_.emplace_back(name, e);
}

void OpProfile::end_step(cudaStream_t s) {
  if (!on()) return;
  record("(end)", s);
  BN_CUDA(cudaEventSynchronize(marks_.back().second));
  ++step_;
  if (step_ > 1)
    for (size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      BN_CUDA(cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second));
      ms_[marks_[i].first] += ms;
    }
  marks_.clear();
  if (step_ != report_after_ || step_ < 2) return;
  std::vector<std::pair<double, std::string>> rows;
  double total = 0;
  for (const auto& [name, ms] : ms_) {
    rows.emplace_back(ms, name);
    total += ms;
  }
  std::sort(rows.rbegin(), rows.rend());
  const double steps = static_cast<double>(step_ - 1);
  std::fprintf(stderr, "GPU time per step by op (mean of steps 2..%lld): %.2f ms\n",
               static_cast<long long>(step_), total / steps);
  for (const auto& [ms, name] : rows)
    std::fprintf(stderr, "  %-16s %9.3f ms  %5.1f %%\n", name.c_str(), ms / steps, 100.0 * ms / total);
}

}  // namespace bitnet::cuda
