#include "cuda/tp_collective.h"

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/infer_tp_kernels.h"
#if BITNET_HAVE_NCCL
#include "cuda/nccl_check.h"
#endif

namespace bitnet::cuda {
namespace {

class SameDevice final : public TpCollective {
 public:
  SameDevice(int ranks, cudaStream_t s) : ranks_(ranks), s_(s) {}
  void all_reduce_i32(const std::vector<int32_t*>& buf, size_t n) override {
    BN_CHECK(static_cast<int>(buf.size()) == ranks_, "all_reduce over {} buffers, {} ranks", buf.size(),
             ranks_);
    for (int r = 1; r < ranks_; ++r) infer::add_i32(buf[0], buf[static_cast<size_t>(r)], n, s_);
    for (int r = 1; r < ranks_; ++r)
      BN_CUDA(cudaMemcpyAsync(buf[static_cast<size_t>(r)], buf[0], n * 4, cudaMemcpyDeviceToDevice, s_));
  }
  void all_gather_f32(const std::vector<const float*>& part, const std::vector<size_t>& count,
                      const std::vector<float*>& out) override {
    BN_CHECK(
        static_cast<int>(part.size()) == ranks_ && count.size() == part.size() && out.size() == part.size(),
        "all_gather over {} parts, {} ranks", part.size(), ranks_);
    for (size_t r = 0; r < out.size(); ++r) {
      size_t at = 0;
      for (size_t j = 0; j < part.size(); ++j) {
        BN_CUDA(cudaMemcpyAsync(out[r] + at, part[j], count[j] * 4, cudaMemcpyDeviceToDevice, s_));
        at += count[j];
      }
    }
  }
  const char* name() const override { return "same-device"; }

 private:
  int ranks_;
  cudaStream_t s_;
};

#if BITNET_HAVE_NCCL
class Nccl final : public TpCollective {
 public:
  Nccl(const std::vector<int>& devices, const std::vector<cudaStream_t>& streams) : streams_(streams) {
    comms_.resize(devices.size());
    BN_NCCL(ncclCommInitAll(comms_.data(), static_cast<int>(devices.size()), devices.data()));
  }
  ~Nccl() override {
    for (ncclComm_t c : comms_)
      if (c) (void)ncclCommDestroy(c);
  }
  void all_reduce_i32(const std::vector<int32_t*>& buf, size_t n) override {
    BN_CHECK(buf.size() == comms_.size(), "all_reduce over {} buffers, {} ranks", buf.size(), comms_.size());
    BN_NCCL(ncclGroupStart());
    for (size_t r = 0; r < comms_.size(); ++r)
      BN_NCCL(ncclAllReduce(buf[r], buf[r], n, ncclInt32, ncclSum, comms_[r], streams_[r]));
    BN_NCCL(ncclGroupEnd());
  }
  // Blocks of different sizes (uneven head or row splits): one broadcast per root, all in a group.
  void all_gather_f32(const std::vector<const float*>& part, const std::vector<size_t>& count,
                      const std::vector<float*>& out) override {
    BN_CHECK(part.size() == comms_.size() && count.size() == part.size() && out.size() == part.size(),
             "all_gather over {} parts, {} ranks", part.size(), comms_.size());
    BN_NCCL(ncclGroupStart());
    for (size_t r = 0; r < comms_.size(); ++r) {
      size_t at = 0;
      for (size_t j = 0; j < part.size(); ++j) {
        const void* send = r == j ? static_cast<const void*>(part[j]) : static_cast<const void*>(out[r] + at);
        BN_NCCL(ncclBroadcast(send, out[r] + at, count[j], ncclFloat, static_cast<int>(j), comms_[r],
                              streams_[r]));
        at += count[j];
      }
    }
    BN_NCCL(ncclGroupEnd());
  }
  const char* name() const override { return "NCCL"; }

 private:
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
};
#endif

}  // namespace

std::unique_ptr<TpCollective> same_device_collective(int ranks, cudaStream_t stream) {
  return std::make_unique<SameDevice>(ranks, stream);
}

std::unique_ptr<TpCollective> nccl_collective(const std::vector<int>& devices,
                                              const std::vector<cudaStream_t>& streams) {
  if (devices.empty() || devices.size() != streams.size())
    fail("NCCL: {} devices and {} streams", devices.size(), streams.size());
#if BITNET_HAVE_NCCL
  return std::make_unique<Nccl>(devices, streams);
#else
  fail("tensor parallel over {} GPUs needs NCCL, and this build found no nccl.h", devices.size());
#endif
}

}  // namespace bitnet::cuda
