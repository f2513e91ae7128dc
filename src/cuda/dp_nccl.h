#pragma once
// NCCL's collectives as DeviceCollectives (dp_collective.h) for data-parallel training: across the
// GPUs of one process (one host thread each) or one GPU per process across hosts. (Tensor-parallel
// inference has its own, issued from one thread: tp_collective.h.) In a build without NCCL
// (BITNET_HAVE_NCCL 0) every function here fails saying so.
#include <cstdint>
#include <vector>

#include "cuda/dp_collective.h"

namespace bitnet::cuda {

// A new communicator's id (NCCL's 128 bytes): rank 0 makes it and every rank passes it to
// nccl_rank (across processes: through training/rendezvous.h).
std::vector<uint8_t> nccl_unique_id();

// Rank `rank` of `size` on GPU `device` (made current on the calling thread). Blocks until every
// rank has joined. The communicator lives as long as a copy of the returned struct does.
DeviceCollective nccl_rank(const std::vector<uint8_t>& id, int rank, int size, int device);

// `gpus` ranks on GPUs 0 .. gpus - 1 of this process, their communicators made at once (one
// thread per GPU). Fails naming the count when the machine has fewer GPUs.
std::vector<DeviceCollective> nccl_ranks_in_process(int gpus);

}  // namespace bitnet::cuda
