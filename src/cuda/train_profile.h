#pragma once
// Per-op GPU time of the CUDA trainer, for finding where a step's time goes: with
// BITNET_CUDA_PROFILE=N in the environment, the trainer records a CUDA event at the start of every
// op (mark) and, after step N, prints each op's total time over steps 2..N (step 1 warms up) to
// stderr. Off (the default), mark costs a branch.
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bitnet::cuda {

class OpProfile {
 public:
  OpProfile();  // reads BITNET_CUDA_PROFILE
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  bool on() const { return report_after_ > 0; }
  // Ends the op in progress and starts `name` (a string literal) on the stream.
  void mark(const char* name, cudaStream_t s) {
    if (on()) record(name, s);
  }
  // Forgets the marks since the last step (an evaluation's forward, which is no step).
  void drop() { marks_.clear(); }
  // Ends the step: waits for its events and adds up their intervals; prints after step N.
  void end_step(cudaStream_t s);

 private:
  void record(const char* name, cudaStream_t s);
  int64_t report_after_ = 0, step_ = 0;
  std::vector<std::pair<const char*, cudaEvent_t>> marks_;
  std::vector<cudaEvent_t> pool_;
  std::map<std::string, double> ms_;
};

}  // namespace bitnet::cuda
