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
// threads (as the decode streams are), and returns the seconds it took. prefetch: with the decode
// streams' software prefetch. Which is faster depends on the CPU: on the device's Sapphire
// Rapids the plain 16-byte loads read 19.5 - 21.7 GB/s with 2 threads where bench_limits' 64-byte
// loads read 27 - 30 (a bound below what decode itself reached); on the dev machine's Zen 5 the
// prefetch cost 15 %. So a bound is the faster of the two.
double timed_read(ThreadPool& pool, std::span<const std::span<const uint8_t>> ranges, bool prefetch);

}  // namespace bitnet
