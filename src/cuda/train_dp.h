#pragma once
// Data-parallel training on GPUs: the CPU's data-parallel algorithm (training/backend.h
// cpu_backend over a Collective) with the one-GPU trainer's device work (train_backend.h).
//
// Each rank takes its share of every micro-batch's rows (the global batch is unchanged); the
// gradients are summed over the ranks in buckets of layers, each bucket's all-reduce started on a
// communication stream as soon as the backward has finished its layers (the embedding and head
// last), so the sums overlap the rest of the backward; the loss and the gradient's squared norm
// (each rank over its shard, then summed) are summed too. ZeRO-1: each rank holds AdamW's moments
// for its shard of the parameters only, updates that shard and all-gathers the parameters. Every
// rank ends a step with the same parameters, equal to one GPU's run of the whole batch within
// float rounding (the sums run in another order).
#include <cstddef>
#include <vector>

#include "cuda/dp_collective.h"
#include "training/backend.h"

namespace bitnet::cuda {

// A bucket of gradients closes once it holds this many (32 MiB): large enough that an all-reduce
// runs near the links' bandwidth rather than its fixed cost (tens of microseconds), small enough
// that the first one starts while most of the backward is still to run (a gpt2-small layer holds
// 7 M). Tests pass 1: one bucket per layer.
constexpr size_t kDpBucketFloats = size_t{8} << 20;

// One rank over `c`: make it and call it from one host thread per rank (c.device is made current
// on each call). Every call is collective. The model and state are read at creation (each rank
// takes its shard of opt's moments: a checkpoint of any rank count resumes); to_host writes this
// rank's parameters into m on every rank and the moments, gathered from all shards, into opt on
// rank 0 only (the rank that writes checkpoints).
train::TrainBackend cuda_backend(train::TrainModel& m, train::AdamWState& opt, const DeviceCollective& c,
                                 size_t bucket_floats = kDpBucketFloats);

// The ranks of `cs` driven from this process, one host thread per rank for each call; (m, opt)
// are rank 0's, the other ranks train copies. The step's statistics are rank 0's (the same on
// every rank). A rank that fails leaves the others waiting in their collectives.
train::TrainBackend cuda_backend_ranks(train::TrainModel& m, train::AdamWState& opt,
                                       std::vector<DeviceCollective> cs);

// `--gpus N`: GPUs 0 .. N - 1 of this machine through NCCL (dp_nccl.h).
train::TrainBackend cuda_backend_gpus(train::TrainModel& m, train::AdamWState& opt, int gpus);

}  // namespace bitnet::cuda
