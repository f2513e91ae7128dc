// A multi-process job's start (training/launch_env.h, training/rendezvous.h): the launchers'
// variables, and rank 0 handing NCCL's 128-byte id to the other ranks over loopback TCP, with
// missing or wrong peers ending in an error within the timeout rather than a hang.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "core/error.h"
#include "training/launch_env.h"
#include "training/rendezvous.h"

namespace bitnet::train {
namespace {

std::optional<LaunchEnv> from(const std::map<std::string, std::string>& vars) {
  return launch_env([&](const char* k) -> const char* {
    const auto it = vars.find(k);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    from(vars);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LaunchEnv, NoLauncherIsNone) {
  EXPECT_FALSE(from({}).has_value());
  EXPECT_FALSE(from({{"MASTER_ADDR", "h"}, {"RANK", "1"}}).has_value());
}

TEST(LaunchEnv, ReadsTorchrunsVariables) {
  const auto e = from({{"RANK", "5"},
                       {"WORLD_SIZE", "8"},
                       {"LOCAL_RANK", "1"},
                       {"MASTER_ADDR", "node0"},
                       {"MASTER_PORT", "29500"}});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->rank, 5);
  EXPECT_EQ(e->world, 8);
  EXPECT_EQ(e->local_rank, 1);
  EXPECT_EQ(e->master_addr, "node0");
  EXPECT_EQ(e->master_port, 29500);
  EXPECT_EQ(e->launcher, "torchrun");
}

TEST(LaunchEnv, ReadsOpenMpisVariables) {
  const auto e = from({{"OMPI_COMM_WORLD_RANK", "3"},
                       {"OMPI_COMM_WORLD_SIZE", "4"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                       {"MASTER_ADDR", "10.0.0.1"},
                       {"MASTER_PORT", "1234"}});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->rank, 3);
  EXPECT_EQ(e->world, 4);
  EXPECT_EQ(e->local_rank, 1);
  EXPECT_EQ(e->master_addr, "10.0.0.1");
  EXPECT_EQ(e->master_port, 1234);
  EXPECT_EQ(e->launcher, "Open MPI");
}

TEST(LaunchEnv, MissingOrBadVariablesAreClearErrors) {
  const std::map<std::string, std::string> ok = {{"RANK", "1"},
                                                 {"WORLD_SIZE", "2"},
                                                 {"LOCAL_RANK", "1"},
                                                 {"MASTER_ADDR", "h"},
                                                 {"MASTER_PORT", "29500"}};
  auto without = [&](const std::string& k) {
    auto v = ok;
    v.erase(k);
    return v;
  };
  auto with = [&](const std::string& k, const std::string& x) {
    auto v = ok;
    v[k] = x;
    return v;
  };
  EXPECT_NE(error_of(without("RANK")).find("RANK is not set"), std::string::npos);
  EXPECT_NE(error_of(without("MASTER_ADDR")).find("MASTER_ADDR is not set"), std::string::npos);
  EXPECT_NE(error_of(without("MASTER_PORT")).find("MASTER_PORT is not set"), std::string::npos);
  EXPECT_NE(error_of(with("RANK", "2")).find("RANK=2 is outside [0, 1]"), std::string::npos);
  EXPECT_NE(error_of(with("WORLD_SIZE", "two")).find("WORLD_SIZE='two' is not an integer"),
            std::string::npos);
  EXPECT_NE(error_of(with("MASTER_PORT", "70000")).find("MASTER_PORT=70000"), std::string::npos);
  EXPECT_NE(error_of(with("LOCAL_RANK", "1x")).find("not an integer"), std::string::npos);
  // Open MPI does not set MASTER_ADDR: the error says how to pass it.
  EXPECT_NE(error_of({{"OMPI_COMM_WORLD_RANK", "0"},
                      {"OMPI_COMM_WORLD_SIZE", "2"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                      {"MASTER_PORT", "1"}})
                .find("mpirun -x MASTER_ADDR -x MASTER_PORT"),
            std::string::npos);
}

// A port free on loopback now (bound to port 0, then released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<uint8_t> id_bytes() {
  std::vector<uint8_t> id(128);
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i * 37 + 11);
  return id;
}

TEST(Rendezvous, EveryRankGetsRankZerosId) {
  constexpr int R = 4;
  const int port = free_port();
  std::vector<std::vector<uint8_t>> got(R);
  std::vector<std::string> err(R);
  std::vector<std::thread> t;
  // Rank 0 starts last: the others retry until it listens.
  for (int r = R - 1; r >= 0; --r) {
    t.emplace_back([&, r] {
      try {
        got[static_cast<size_t>(r)] =
            rendezvous({"127.0.0.1", port, r, R, 10.0}, r == 0 ? id_bytes() : std::vector<uint8_t>{});
      } catch (const Error& e) {
        err[static_cast<size_t>(r)] = e.what();
      }
    });
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  for (auto& x : t) x.join();
  for (int r = 0; r < R; ++r) {
    EXPECT_EQ(err[static_cast<size_t>(r)], "") << "rank " << r;
    EXPECT_EQ(got[static_cast<size_t>(r)], id_bytes()) << "rank " << r;
  }
}

// Runs f, which must fail within about `limit` seconds with a message containing `want`.
template <typename F>
void expect_error_in_time(F&& f, const std::string& want, double limit) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string what = "no error";
  try {
    f();
  } catch (const Error& e) {
    what = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(what.find(want), std::string::npos) << what;
  EXPECT_LT(s, limit + 2.0) << what;
}

TEST(Rendezvous, NoRankZeroIsAnErrorAfterTheTimeout) {
  const int port = free_port();
  expect_error_in_time(
      [&] {
        rendezvous({"127.0.0.1", port, 3, 4, 0.5}, {});
      },
      "rank 3: no answer from 127.0.0.1:" + std::to_string(port) + " after 0.5 s", 0.5);
}

// Something listens at the port but never answers (not our rank 0): still the timeout's error.
TEST(Rendezvous, ASilentPeerIsAnErrorAfterTheTimeout) {
  const int port = free_port();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  expect_error_in_time(
      [&] {
        rendezvous({"127.0.0.1", port, 1, 2, 0.5}, {});
      },
      "rank 1: no answer from 127.0.0.1:" + std::to_string(port) + " after 0.5 s", 0.5);
  ::close(fd);
}

TEST(Rendezvous, RankZeroWithAMissingPeerIsAnErrorAfterTheTimeout) {
  const int port = free_port();
  std::string one_err;
  std::thread one([&] {
    try {
      rendezvous({"127.0.0.1", port, 1, 3, 5.0}, {});
    } catch (const Error& e) {
      one_err = e.what();
    }
  });
  expect_error_in_time(
      [&] {
        rendezvous({"127.0.0.1", port, 0, 3, 1.0}, id_bytes());
      },
      "rank 0: 1 of the other 2 ranks reached port " + std::to_string(port) + " within 1 s", 1.0);
  one.join();
  EXPECT_EQ(one_err, "");  // the rank that came got the id
}

TEST(Rendezvous, APeerOfAnotherJobSizeIsAnError) {
  const int port = free_port();
  std::thread peer([&] {
    try {
      rendezvous({"127.0.0.1", port, 1, 3, 2.0}, {});
    } catch (const Error&) {  // rank 0 closes on it: its own error is the timeout's
    }
  });
  expect_error_in_time(
      [&] {
        rendezvous({"127.0.0.1", port, 0, 2, 5.0}, id_bytes());
      },
      "rank 0: a peer says it is rank 1 of 3, this job has 2 ranks", 5.0);
  peer.join();
}

TEST(Rendezvous, AnUnresolvableAddressIsAnError) {
  expect_error_in_time(
      [&] {
        rendezvous({"no-such-host.invalid", 29500, 1, 2, 0.5}, {});
      },
      "rank 1: cannot resolve MASTER_ADDR 'no-such-host.invalid'", 5.0);
}

}  // namespace
}  // namespace bitnet::train
