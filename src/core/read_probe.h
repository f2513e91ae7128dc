#pragma once
// Times one read of a set of byte ranges by a thread pool: the least time any memory-bound pass
// over the same bytes can take with those threads. `bitnet bench` reads the weights a decoded
// token reads (the same pages, the same thread count) to give decode's bound on the machine as
// it is at that moment; on a shared machine the bandwidth drifts, so it reads before and after
// each decode test.
#include <cstdint>
#include <span>

namespace bitnet {

class ThreadPool;

// Reads every byte of the ranges once, in chunks of 256 KiB claimed dynamically by the pool's
// threads (as the decode streams are), and returns the seconds it took.
double timed_read(ThreadPool& pool, std::span<const std::span<const uint8_t>> ranges);

}  // namespace bitnet
