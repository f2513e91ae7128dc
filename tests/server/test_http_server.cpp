// The HTTP layer over a scripted engine (fake_engine.h), through cpp-httplib's client: what status
// and body a generation gets when the engine fails or the model gives NaN logits, before and after
// the response's headers are out.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "fake_engine.h"
#include "server/http_server.h"

namespace bitnet::server {
namespace {

using testing::FakeEngine;

int32_t next_letter(int32_t t) {
  return t >= 'a' && t < 'z' ? t + 1 : 'a';
}

// A FakeEngine whose steps take `delay` and whose step `fail_at` (counting from 1) fails.
class SlowEngine final : public FakeEngine {
 public:
  SlowEngine() : FakeEngine(2, 128, 300, next_letter) {}
  const float* forward_batch(std::span<const BatchToken> batch) override {
    std::this_thread::sleep_for(delay);
    if (++steps == fail_at) fail_next = true;
    return FakeEngine::forward_batch(batch);
  }
  std::chrono::milliseconds delay{0};
  std::atomic<int> steps{0}, fail_at{-1};  // set between requests, read on the scheduler's thread
};

// The server on a free loopback port for one test.
struct Served {
  explicit Served(SlowEngine& e, int heartbeat_ms)
      : tok(Tokenizer::from_vocab(byte_level_vocab(300))), sched(e, tok, {}, &metrics) {
    ServerOptions o;
    o.port = 0;
    o.heartbeat_ms = heartbeat_ms;
    o.model_name = "fake";
    o.limits.n_ctx = e.n_ctx();
    o.limits.n_vocab = e.n_vocab();
    http = std::make_unique<HttpServer>(sched, tok, metrics, o);
    port = http->bind();
    sched.start();
    thread = std::thread([this] { http->listen(); });
  }
  ~Served() {
    sched.stop();
    http->stop();
    thread.join();
  }
  httplib::Result post(const nlohmann::json& body) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30);
    return c.Post("/v1/completions", body.dump(), "application/json");
  }
  Tokenizer tok;
  Metrics metrics;
  Scheduler sched;
  std::unique_ptr<HttpServer> http;
  int port = 0;
  std::thread thread;
};

nlohmann::json completion(int max_tokens, bool stream = false) {
  return {{"prompt", "a"}, {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", stream}};
}

// A failure within the first heartbeat is the answer's status: 500 with the engine's message.
TEST(HttpServer, EarlyEngineFailureIs500) {
  SlowEngine e;
  e.fail_at = 1;
  Served s(e, 2000);
  const auto r = s.post(completion(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  const auto j = nlohmann::json::parse(r->body);
  EXPECT_NE(j["error"]["message"].get<std::string>().find("fake engine failure"), std::string::npos)
      << r->body;
  // The server goes on: the next request is answered.
  const auto ok = s.post(completion(3));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->get_header_value("Connection"), "close");  // as every generation answer
  EXPECT_EQ(nlohmann::json::parse(ok->body)["choices"][0]["text"], "bcd");
}

// NaN logits end the request with the sampler's message (500), not a crash of the server.
TEST(HttpServer, NanLogitsAre500NamingThem) {
  SlowEngine e;
  e.nan_after = 'c';
  Served s(e, 2000);
  const auto r = s.post(completion(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(nlohmann::json::parse(r->body)["error"]["message"].get<std::string>().find("NaN logit"),
            std::string::npos)
      << r->body;
}

// An answer slower than a heartbeat gets its 200 and keep-alive spaces first (JSON allows them);
// a failure after that can only be told in the body.
TEST(HttpServer, SlowAnswerIsSpacesThenJson) {
  SlowEngine e;
  e.delay = std::chrono::milliseconds(15);
  Served s(e, 20);
  const auto r = s.post(completion(10));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ASSERT_FALSE(r->body.empty());
  EXPECT_EQ(r->body.front(), ' ');
  EXPECT_EQ(nlohmann::json::parse(r->body)["choices"][0]["text"], "bcdefghijk");
  e.steps = 0;
  e.fail_at = 8;
  const auto f = s.post(completion(10));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 200);
  EXPECT_NE(nlohmann::json::parse(f->body)["error"]["message"].get<std::string>().find("fake engine failure"),
            std::string::npos)
      << f->body;
}

}  // namespace
}  // namespace bitnet::server
