// TrainContext: the cuBLASLt handle, its workspace, the ops' scratch and the bad-token-id flag.
#include "core/error.h"
#include "cuda/lt_plans.h"
#include "cuda/train_ops.h"

namespace bitnet::cuda {

namespace {
// cuBLASLt's recommendation for Hopper is 32 MiB; its int8 and fp32 kernels rarely need more.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
}  // namespace

TrainContext::TrainContext() {
  BN_CUBLAS(cublasLtCreate(&lt_));
  plans_ = std::make_unique<LtPlans>();
  workspace_.resize(kWorkspaceBytes);
  flag_.resize(1);
  BN_CUDA(cudaMemset(flag_.data(), 0, sizeof(int32_t)));
}

TrainContext::~TrainContext() {
  plans_.reset();  // the plans' descriptors before the handle
  if (lt_ != nullptr) (void)cublasLtDestroy(lt_);
}

void* TrainContext::scratch(size_t bytes) {
  if (scratch_.bytes() < bytes) scratch_.resize(bytes);
  return scratch_.data();
}

void TrainContext::check_ids(const char* op, int64_t limit, cudaStream_t stream) {
  int32_t bad = 0;
  BN_CUDA(cudaMemcpyAsync(&bad, flag_.data(), sizeof(bad), cudaMemcpyDeviceToHost, stream));
  BN_CUDA(cudaStreamSynchronize(stream));
  if (bad == 0) return;
  BN_CUDA(cudaMemsetAsync(flag_.data(), 0, sizeof(int32_t), stream));
  BN_CUDA(cudaStreamSynchronize(stream));
  fail("{}: a token id is outside the vocabulary [0, {})", op, limit);
}

}  // namespace bitnet::cuda
