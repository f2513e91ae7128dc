#pragma once
// The HTTP face of the server (cpp-httplib): OpenAI's /v1/completions, /v1/chat/completions and
// /v1/models, /health, /metrics and the chat page at /. Each request is checked (request.h),
// tokenized and handed to the Scheduler; its HTTP thread then streams what the scheduler
// produces. Every answer, errors included, is JSON in OpenAI's shape.
#include <chrono>
#include <memory>
#include <string>

#include "server/metrics.h"
#include "server/request.h"
#include "server/scheduler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace bitnet::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (bind() returns it)
  std::string api_key;  // non-empty: /v1/* and /metrics need "Authorization: Bearer KEY"
  size_t max_body_bytes = 1 << 20;
  int read_timeout_s = 30;   // a client that sends nothing for this long is dropped
  int write_timeout_s = 30;  // ... or reads nothing
  int http_threads = 0;      // 0: slots + 64 (the default queue bound) + 16; `serve` passes its own
  int heartbeat_ms = 1000;   // idle gap after which a waiting response writes a keep-alive
  std::string model_name;    // what /v1/models lists and answers name
  ChatTemplate chat_template = ChatTemplate::kBitnet;
  RequestLimits limits;
  bool verbose = false;  // one line per request on stderr
};

class HttpServer {
 public:
  HttpServer(Scheduler& sched, const Tokenizer& tok, Metrics& metrics, const ServerOptions& o);
  ~HttpServer();
  // Binds the listening socket; returns the port. Throws bitnet::Error when it cannot.
  int bind();
  // Serves until stop() (from another thread).
  void listen();
  void stop();
  // Waits until every generation response begun has been written to its end (or its client has
  // gone), at most `timeout`; false if some were still being written. After Scheduler::stop(),
  // whose error ends them, this lets streams send their error event and [DONE] before stop()
  // closes the connections.
  bool drain(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The chat page served at / (chat_page.html, embedded at build time).
extern const char* const kChatPageHtml;

}  // namespace bitnet::server
