#include "core/memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace bitnet {
namespace {
std::atomic<size_t> g_live{0};
std::atomic<size_t> g_peak{0};
std::atomic<uint64_t> g_count{0};
}  // namespace

void* aligned_alloc_bytes(size_t bytes) {
  const size_t n = round_up(bytes == 0 ? 1 : bytes, kAlign);
  void* p = std::aligned_alloc(kAlign, n);
  if (!p) fail("out of memory allocating {} bytes", bytes);
  const size_t live = g_live.fetch_add(bytes) + bytes;
  size_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  g_count.fetch_add(1);
  return p;
}

void aligned_free_bytes(void* p, size_t bytes) {
  if (!p) return;
  g_live.fetch_sub(bytes);
  std::free(p);
}

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
}

size_t peak_rss_bytes() {
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<size_t>(ru.ru_maxrss) * 1024;  // Linux reports kilobytes
}

MemoryStats memory_stats() { return {g_live.load(), g_peak.load(), g_count.load()}; }
void reset_peak_memory() { g_peak.store(g_live.load()); }

AlignedBuffer::AlignedBuffer(size_t bytes, bool zero) : p_(aligned_alloc_bytes(bytes)), n_(bytes) {
  if (zero) std::memset(p_, 0, round_up(bytes == 0 ? 1 : bytes, kAlign));
}

void AlignedBuffer::reset() {
  aligned_free_bytes(p_, n_);
  p_ = nullptr;
  n_ = 0;
}

}  // namespace bitnet
