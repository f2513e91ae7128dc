// NCCL as the backend loads it (nccl_lazy.cpp): the library is found and answers, and a
// one-rank communicator on this machine's first GPU runs collectives. Several ranks need several
// GPUs; the sharding they serve is tested without NCCL (quant/shard, training/data_parallel).
#include <gtest/gtest.h>

#include <vector>

#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda_test_util.h"

#if BITNET_HAVE_NCCL
#include "cuda/nccl_check.h"

namespace bitnet::cuda {
namespace {

TEST(Nccl, LoadsAndReportsItsVersion) {
  int version = 0;
  BN_NCCL(ncclGetVersion(&version));
  EXPECT_GE(version, 21800);  // 2.18 or later (NCCL_VERSION(2, 18, 0))
}

TEST(Nccl, OneRankCollectivesOnOneGpu) {
  SKIP_WITHOUT_GPU();
  BN_CUDA(cudaSetDevice(0));
  int dev = 0;
  ncclComm_t comm = nullptr;
  BN_NCCL(ncclCommInitAll(&comm, 1, &dev));
  int n = 0, rank = -1;
  BN_NCCL(ncclCommCount(comm, &n));
  BN_NCCL(ncclCommUserRank(comm, &rank));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(rank, 0);

  const std::vector<int> host = {3, -7, 2147483647, 0, 41};
  int *in = nullptr, *out = nullptr;
  BN_CUDA(cudaMalloc(&in, host.size() * sizeof(int)));
  BN_CUDA(cudaMalloc(&out, host.size() * sizeof(int)));
  BN_CUDA(cudaMemcpy(in, host.data(), host.size() * sizeof(int), cudaMemcpyHostToDevice));
  BN_CUDA(cudaMemset(out, 0, host.size() * sizeof(int)));
  BN_NCCL(ncclAllReduce(in, out, host.size(), ncclInt32, ncclSum, comm, nullptr));
  BN_CUDA(cudaStreamSynchronize(nullptr));
  std::vector<int> back(host.size());
  BN_CUDA(cudaMemcpy(back.data(), out, back.size() * sizeof(int), cudaMemcpyDeviceToHost));
  EXPECT_EQ(back, host);  // one rank's sum is its own values

  BN_CUDA(cudaMemset(out, 0, host.size() * sizeof(int)));
  BN_NCCL(ncclAllGather(in, out, host.size(), ncclInt32, comm, nullptr));
  BN_CUDA(cudaStreamSynchronize(nullptr));
  BN_CUDA(cudaMemcpy(back.data(), out, back.size() * sizeof(int), cudaMemcpyDeviceToHost));
  EXPECT_EQ(back, host);

  BN_CUDA(cudaFree(in));
  BN_CUDA(cudaFree(out));
  BN_NCCL(ncclCommDestroy(comm));
}

}  // namespace
}  // namespace bitnet::cuda
#else
TEST(Nccl, NotInThisBuild) {
  GTEST_SKIP() << "built without NCCL (nccl.h was not found)";
}
#endif
