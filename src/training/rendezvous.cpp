#include "training/rendezvous.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "core/error.h"

namespace bitnet::train {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMagic[4] = {'B', 'N', 'R', 'V'};
constexpr size_t kHello = 12;  // magic, rank, world (uint32 each after the magic)
constexpr uint32_t kMaxPayload = 1 << 16;

// Closes on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

int ms_left(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, 1 << 30));
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// All n bytes, or false (timeout, error or the peer closed).
bool read_all(int fd, void* buf, size_t n, Clock::time_point deadline) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    if (!wait_for(fd, POLLIN, deadline)) return false;
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) return false;
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n, Clock::time_point deadline) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    if (!wait_for(fd, POLLOUT, deadline)) return false;
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    fail("rendezvous: fcntl(O_NONBLOCK): {}", std::strerror(errno));
}

std::vector<uint8_t> serve(const RendezvousConfig& c, const std::vector<uint8_t>& payload,
                           Clock::time_point deadline) {
  if (payload.size() > kMaxPayload) fail("rendezvous: a payload of {} bytes", payload.size());
  Fd ls(::socket(AF_INET, SOCK_STREAM, 0));
  if (ls.fd < 0) fail("rank 0: socket: {}", std::strerror(errno));
  const int one = 1;
  ::setsockopt(ls.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(static_cast<uint16_t>(c.port));
  if (::bind(ls.fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) < 0)
    fail("rank 0: cannot listen on port {} (MASTER_PORT): {}", c.port, std::strerror(errno));
  if (::listen(ls.fd, 128) < 0) fail("rank 0: listen on port {}: {}", c.port, std::strerror(errno));
  set_nonblocking(ls.fd);
  std::vector<bool> seen(static_cast<size_t>(c.world), false);
  int joined = 0;
  while (joined < c.world - 1) {
    if (!wait_for(ls.fd, POLLIN, deadline))
      fail("rank 0: {} of the other {} ranks reached port {} within {:g} s", joined, c.world - 1, c.port,
           c.timeout_s);
    Fd peer(::accept(ls.fd, nullptr, nullptr));
    if (peer.fd < 0) continue;  // gone before we took it, or interrupted
    set_nonblocking(peer.fd);
    uint8_t hello[kHello];
    // A connection that says nothing sensible (not one of our ranks) is dropped.
    if (!read_all(peer.fd, hello, kHello, deadline) || std::memcmp(hello, kMagic, 4) != 0) continue;
    uint32_t rank, world;
    std::memcpy(&rank, hello + 4, 4);
    std::memcpy(&world, hello + 8, 4);
    if (world != static_cast<uint32_t>(c.world))
      fail("rank 0: a peer says it is rank {} of {}, this job has {} ranks", rank, world, c.world);
    if (rank == 0 || rank >= world || seen[rank])
      fail("rank 0: a peer says it is rank {} of {}, which is {}", rank, world,
           rank == 0       ? "this one"
           : rank >= world ? "outside the job"
                           : "another peer's rank");
    seen[rank] = true;
    const auto len = static_cast<uint32_t>(payload.size());
    if (!write_all(peer.fd, &len, 4, deadline) ||
        !write_all(peer.fd, payload.data(), payload.size(), deadline))
      fail("rank 0: could not send the id to rank {}: {}", rank, std::strerror(errno));
    ++joined;
  }
  return payload;
}

std::vector<uint8_t> join(const RendezvousConfig& c, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(c.port);
  if (const int e = ::getaddrinfo(c.addr.c_str(), port.c_str(), &hints, &res); e != 0)
    fail("rank {}: cannot resolve MASTER_ADDR '{}': {}", c.rank, c.addr, gai_strerror(e));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> hold(res, ::freeaddrinfo);
  auto no_answer = [&] {
    fail("rank {}: no answer from {}:{} after {:g} s", c.rank, c.addr, c.port, c.timeout_s);
  };
  for (;;) {  // until rank 0 answers: it may not be listening yet
    for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      Fd s(::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol));
      if (s.fd < 0) continue;
      set_nonblocking(s.fd);
      if (::connect(s.fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) continue;
        if (!wait_for(s.fd, POLLOUT, std::min(deadline, Clock::now() + std::chrono::seconds(1)))) continue;
        int err = 0;
        socklen_t len = sizeof(err);
        if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) continue;
      }
      uint8_t hello[kHello];
      std::memcpy(hello, kMagic, 4);
      const auto rank = static_cast<uint32_t>(c.rank), world = static_cast<uint32_t>(c.world);
      std::memcpy(hello + 4, &rank, 4);
      std::memcpy(hello + 8, &world, 4);
      uint32_t n = 0;
      if (!write_all(s.fd, hello, kHello, deadline) || !read_all(s.fd, &n, 4, deadline)) no_answer();
      if (n > kMaxPayload) fail("rank {}: {}:{} is not a rank 0 of this program", c.rank, c.addr, c.port);
      std::vector<uint8_t> out(n);
      if (!read_all(s.fd, out.data(), n, deadline)) no_answer();
      return out;
    }
    if (Clock::now() >= deadline) no_answer();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100, ms_left(deadline))));
  }
}

}  // namespace

std::vector<uint8_t> rendezvous(const RendezvousConfig& c, const std::vector<uint8_t>& payload) {
  if (c.world < 1 || c.rank < 0 || c.rank >= c.world) fail("rendezvous: rank {} of {}", c.rank, c.world);
  if (c.port < 1 || c.port > 65535) fail("rendezvous: port {}", c.port);
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c.timeout_s));
  if (c.world == 1) return payload;
  return c.rank == 0 ? serve(c, payload, deadline) : join(c, deadline);
}

}  // namespace bitnet::train
