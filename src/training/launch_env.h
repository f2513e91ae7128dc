#pragma once
// One process of a data-parallel job started by a standard launcher: its rank, the job's size,
// its GPU on the host and where rank 0 waits for the others (training/rendezvous.h), read from
// the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or Open
// MPI's mpirun sets (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK; then
// MASTER_ADDR and MASTER_PORT come from the environment, passed with mpirun -x).
#include <functional>
#include <optional>
#include <string>

namespace bitnet::train {

struct LaunchEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string launcher;  // "torchrun" or "Open MPI": named in messages
};

// The launcher's variables through `get` (std::getenv's contract: null when unset). nullopt when
// neither WORLD_SIZE nor OMPI_COMM_WORLD_SIZE is set (no launcher); a clear error when a variable
// the job needs is missing or malformed (a rank outside [0, world), a port outside 1..65535).
std::optional<LaunchEnv> launch_env(const std::function<const char*(const char*)>& get);

}  // namespace bitnet::train
