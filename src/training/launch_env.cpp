#include "training/launch_env.h"

#include <charconv>
#include <cstring>

#include "core/error.h"

namespace bitnet::train {

namespace {

// The variable as an integer in [lo, hi]; `why` says where the value comes from.
int int_var(const std::function<const char*(const char*)>& get, const char* name, int lo, int hi,
            const std::string& why) {
  const char* s = get(name);
  if (s == nullptr || *s == '\0') fail("{}: {} is not set", why, name);
  int v = 0;
  const char* end = s + std::strlen(s);
  const auto [p, ec] = std::from_chars(s, end, v);
  if (ec != std::errc() || p != end) fail("{}: {}='{}' is not an integer", why, name, s);
  if (v < lo || v > hi) fail("{}: {}={} is outside [{}, {}]", why, name, v, lo, hi);
  return v;
}

}  // namespace

std::optional<LaunchEnv> launch_env(const std::function<const char*(const char*)>& get) {
  LaunchEnv e;
  const char *rank, *world, *local;
  if (get("WORLD_SIZE") != nullptr) {
    e.launcher = "torchrun";
    rank = "RANK";
    world = "WORLD_SIZE";
    local = "LOCAL_RANK";
  } else if (get("OMPI_COMM_WORLD_SIZE") != nullptr) {
    e.launcher = "Open MPI";
    rank = "OMPI_COMM_WORLD_RANK";
    world = "OMPI_COMM_WORLD_SIZE";
    local = "OMPI_COMM_WORLD_LOCAL_RANK";
  } else {
    return std::nullopt;
  }
  const std::string why = "data parallel under " + e.launcher;
  e.world = int_var(get, world, 1, 1 << 20, why);
  e.rank = int_var(get, rank, 0, e.world - 1, why);
  e.local_rank = int_var(get, local, 0, e.world - 1, why);
  const char* addr = get("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0')
    fail("{}: MASTER_ADDR is not set (rank 0's host{})", why,
         e.launcher == "Open MPI" ? "; pass it and MASTER_PORT with mpirun -x MASTER_ADDR -x MASTER_PORT"
                                  : "");
  e.master_addr = addr;
  e.master_port = int_var(get, "MASTER_PORT", 1, 65535, why);
  return e;
}

}  // namespace bitnet::train
