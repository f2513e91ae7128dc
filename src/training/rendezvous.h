#pragma once
// The few bytes every rank of a multi-process job needs before NCCL can connect them (its
// communicator's id), passed over TCP: rank 0 listens at MASTER_PORT, the others connect to
// MASTER_ADDR:MASTER_PORT. Plain POSIX sockets, bounded by a timeout at every wait: a missing or
// wrong peer is an error naming the rank and the address, never a hang.
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet::train {

struct RendezvousConfig {
  std::string addr;  // rank 0's host (a name or an address), for the other ranks
  int port = 0;
  int rank = 0, world = 1;
  double timeout_s = 60;  // for the whole exchange
};

// Rank 0: listens on `port` (every interface) until each of the other world - 1 ranks has
// connected and received `payload`, then returns it. Another rank: connects (retrying until the
// timeout, as rank 0 may start later) and returns what rank 0 sent. Each peer says its rank and
// the job's size first; rank 0 fails on a size that differs from its own or a rank seen twice.
std::vector<uint8_t> rendezvous(const RendezvousConfig& c, const std::vector<uint8_t>& payload);

}  // namespace bitnet::train
