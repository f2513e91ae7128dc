#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/error.h"
#include "server/responses.h"

namespace bitnet::server {
namespace {

std::string random_hex(size_t n) {
  static std::mutex m;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard l(m);
  static const char* digits = "0123456789abcdef";
  std::string s(n, '0');
  for (char& c : s) c = digits[rng() & 15];
  return s;
}

uint64_t random_seed() {
  static std::mutex m;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard l(m);
  return rng();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  // The body of a refused request may be unread (auth is checked, and size refused, before it is
  // read): the connection cannot carry another request.
  res.set_header("Connection", "close");
  if (e.status == 503 || e.status == 429) res.set_header("Retry-After", "1");
  res.set_content(error_json(e), "application/json");
}

// The paths a metrics label may name (anything else is "other", so labels stay few).
std::string path_label(const std::string& p) {
  for (const char* k : {"/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"})
    if (p == k) return p;
  return "other";
}

// What the HTTP thread of one generation request keeps while it streams.
struct Exchange {
  std::shared_ptr<Request> req;
  AnswerInfo info;
  bool stream = false, include_usage = false, started = false;
  Output all;               // not streamed: everything so far
  int64_t text_offset = 0;  // streamed completions' logprobs: the next token's offset
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};

// Not streamed: adds what a take brought to the answer so far; once the request is done, the whole
// answer's status and body (500 and the error object where generation failed).
std::pair<int, std::string> gather(Exchange& x, Output& out, bool done) {
  x.all.text += out.text;
  for (auto& lp : out.logprobs) x.all.logprobs.push_back(std::move(lp));
  if (!done) return {0, {}};
  out.text = std::move(x.all.text);
  out.logprobs = std::move(x.all.logprobs);
  if (out.finish == Finish::kError || out.finish == Finish::kCancelled)
    return {500, error_json(ApiError(500, out.error.empty() ? "generation was cancelled" : out.error))};
  return {200, answer_json(x.info, out)};
}

}  // namespace

struct HttpServer::Impl {
  Scheduler& sched;
  const Tokenizer& tok;
  Metrics& metrics;
  ServerOptions o;
  httplib::Server svr;
  int listen_fd = -1;             // the listening socket, seen by the socket-options hook
  std::atomic<int> answering{0};  // generation responses not yet finished (drain())

  Impl(Scheduler& s, const Tokenizer& t, Metrics& m, const ServerOptions& opts)
      : sched(s), tok(t), metrics(m), o(opts) {}

  void routes();
  void generate(Endpoint ep, const httplib::Request& req, httplib::Response& res);
  // One call of the chunked content provider: writes what the scheduler produced since the last
  // call. Returns false when the client is gone (the sequence is then cancelled).
  bool pump(Exchange& x, httplib::DataSink& sink);
};

void HttpServer::Impl::routes() {
  svr.set_payload_max_length(o.max_body_bytes);
  // SO_REUSEADDR only: a restarted server may bind while the old connections linger, but a second
  // server on a port in use is refused. (httplib's default, SO_REUSEPORT, let two servers share
  // the port, the kernel splitting the connections between them.)
  svr.set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = sock;
  });
  svr.set_read_timeout(o.read_timeout_s, 0);
  svr.set_write_timeout(o.write_timeout_s, 0);
  const int threads =
      o.http_threads > 0 ? o.http_threads : sched.stats().slots + SchedulerOptions{}.max_queue + 16;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const bool guarded = req.path.rfind("/v1/", 0) == 0 || req.path == "/metrics";
    if (o.api_key.empty() || !guarded) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.empty()) {
      send_error(res, ApiError(401, "missing 'Authorization: Bearer <key>' header"));
    } else if (auth.rfind("Bearer ", 0) != 0) {
      send_error(res, ApiError(401, "the Authorization header must be 'Bearer <key>'"));
    } else if (auth.substr(7) != o.api_key) {
      send_error(res, ApiError(401, "invalid API key"));
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors raised by httplib itself (no route, body too large, bad request line) get a JSON body
  // too; ours already have one.
  svr.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) -> httplib::Server::HandlerResponse {
        if (!res.body.empty() || res.content_length_ > 0) return httplib::Server::HandlerResponse::Unhandled;
        std::string msg;
        if (res.status == 404)
          msg = "no such endpoint: " + req.method + " " + req.path;
        else if (res.status == 413)
          msg = "the request body is larger than " + std::to_string(o.max_body_bytes) + " bytes";
        else
          msg = "the request was refused with HTTP status " + std::to_string(res.status);
        send_error(res, ApiError(res.status, msg));
        return httplib::Server::HandlerResponse::Handled;
      }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, what));
  });
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics.count_response(path_label(req.path), res.status);
    if (o.verbose) std::fprintf(stderr, "%s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });

  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPageHtml, "text/html; charset=utf-8");
  });
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(sched.stats()), "text/plain; version=0.0.4");
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    nlohmann::ordered_json m{
        {"id", o.model_name},
        {"object", "model"},
        {"created", 0},
        {"owned_by", "bitnet"},
        {"meta", {{"n_ctx", sched.n_ctx()}, {"n_vocab", tok.n_vocab()}, {"slots", sched.stats().slots}}}};
    nlohmann::ordered_json j{{"object", "list"}, {"data", nlohmann::ordered_json::array({m})}};
    res.set_content(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace),
                    "application/json");
  });
  svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(Endpoint::kCompletions, req, res);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(Endpoint::kChat, req, res);
  });
  // The other methods on known paths: 405 naming the one that works.
  auto not_allowed = [](const char* allow) {
    return [allow](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allow);
      send_error(res, ApiError(405, req.method + " is not allowed on " + req.path + "; use " + allow));
    };
  };
  for (const char* p : {"/v1/completions", "/v1/chat/completions"}) {
    svr.Get(p, not_allowed("POST"));
    svr.Put(p, not_allowed("POST"));
    svr.Delete(p, not_allowed("POST"));
    svr.Patch(p, not_allowed("POST"));
  }
  for (const char* p : {"/", "/health", "/metrics", "/v1/models"}) {
    svr.Post(p, not_allowed("GET"));
    svr.Put(p, not_allowed("GET"));
    svr.Delete(p, not_allowed("GET"));
    svr.Patch(p, not_allowed("GET"));
  }
}

void HttpServer::Impl::generate(Endpoint ep, const httplib::Request& req, httplib::Response& res) {
  GenerationRequest g;
  Job job;
  try {
    g = parse_request(ep, req.body, o.limits);
    if (ep == Endpoint::kChat) {
      job.prompt = encode_chat(tok, o.chat_template, g.messages, tok.add_bos());
    } else if (g.prompt_is_ids) {
      job.prompt = g.prompt_ids;
    } else {
      EncodeOptions eo;
      eo.add_bos = tok.add_bos();
      job.prompt = tok.encode(g.prompt, eo);
    }
    if (job.prompt.empty()) throw ApiError(400, "the prompt is empty (no tokens)", "prompt");
    const int64_t n_ctx = sched.n_ctx();
    if (static_cast<int64_t>(job.prompt.size()) >= n_ctx)
      throw ApiError(400,
                     "the prompt has " + std::to_string(job.prompt.size()) + " tokens; the context holds " +
                         std::to_string(n_ctx) + " (--ctx-size) including at least one generated token",
                     ep == Endpoint::kChat ? "messages" : "prompt");
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  } catch (const Error& e) {  // tokenizer or template refusals
    send_error(res, ApiError(400, e.what()));
    return;
  }
  job.max_tokens = g.max_tokens;
  job.sampling = g.sampling;
  if (!g.seed_given && o.limits.random_seed) job.sampling.seed = random_seed();
  job.stop = g.stop;
  job.stop_ids = chat_stop_ids(tok);
  job.top_logprobs = g.top_logprobs;

  // Counted as answering from before the scheduler has the job until this handler returns (and
  // then, where chunked, until the content provider is released), so that a shutdown's drain
  // waits for this answer too.
  ++answering;
  struct Counted {
    std::atomic<int>& n;
    ~Counted() { --n; }
  } counted{answering};
  auto x = std::make_shared<Exchange>();
  x->req = sched.submit(std::move(job));
  if (!x->req) {
    send_error(res,
               ApiError(503, "the server is busy: every slot is taken and the queue is full; retry later"));
    return;
  }
  x->info.endpoint = ep;
  x->info.id = (ep == Endpoint::kChat ? "chatcmpl-" : "cmpl-") + random_hex(24);
  x->info.created = static_cast<int64_t>(std::time(nullptr));
  x->info.model = o.model_name;
  x->info.logprobs = g.top_logprobs >= 0;
  x->info.tok = &tok;
  x->stream = g.stream;
  x->include_usage = g.include_usage;
  res.set_header("Cache-Control", "no-cache");
  // One connection per generation: node-fetch 2 (the OpenAI client's on Node 18) reports
  // "Premature close" for a chunked response on a connection kept alive, and a whole answer kept
  // alive would hold a connection thread for httplib's keep-alive wait (and the shutdown with it).
  res.set_header("Connection", "close");
  // Not streamed: an answer done within one heartbeat (or a failure in that time, such as an
  // engine error at the first step) goes out whole, with its own status. Later the keep-alive
  // spaces must start, and with them the 200.
  if (!g.stream) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.heartbeat_ms);
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      Output out;
      const bool done = x->req->take(out, static_cast<int>(left.count()));
      auto [status, body] = gather(*x, out, done);
      if (done) {
        res.status = status;
        res.set_content(body, "application/json; charset=utf-8");
        return;
      }
    }
  }
  // cpp-httplib gzips a body typed exactly "application/json" when the client accepts it; the
  // compressor would swallow the keep-alive spaces of a waiting answer (no bytes reach the socket,
  // so a client that left goes unnoticed). With the charset named it sends them as they are.
  res.set_chunked_content_provider(
      g.stream ? "text/event-stream" : "application/json; charset=utf-8",
      [this, x](size_t, httplib::DataSink& sink) { return pump(*x, sink); },
      [this, x](bool) {
        x->req->cancel();  // a no-op once finished
        --answering;
      });
  ++answering;
}

bool HttpServer::Impl::pump(Exchange& x, httplib::DataSink& sink) {
  auto write = [&](const std::string& s) {
    x.last_write = std::chrono::steady_clock::now();
    return sink.write(s.data(), s.size());
  };
  if (x.stream && !x.started && x.info.endpoint == Endpoint::kChat) {
    x.started = true;
    if (!write(sse_role(x.info))) return false;
  }
  Output out;
  const bool done = x.req->take(out, o.heartbeat_ms);
  if (x.stream) {
    if (!out.text.empty() || !out.logprobs.empty())
      if (!write(sse_delta(x.info, out.text, out.logprobs, x.text_offset))) return false;
    if (done) {
      std::string tail;
      if (out.finish == Finish::kError || out.finish == Finish::kCancelled) {
        tail = sse_error(ApiError(500, out.error.empty() ? "generation was cancelled" : out.error));
      } else {
        tail = sse_finish(x.info, out.finish);
        if (x.include_usage) tail += sse_usage(x.info, out);
      }
      tail += sse_done();
      if (!write(tail)) return false;
      sink.done();
      return true;
    }
  } else if (done) {
    // The headers are out (200): a failure this late can only be told in the body.
    if (!write(gather(x, out, true).second)) return false;
    sink.done();
    return true;
  } else {
    gather(x, out, false);
  }
  // Nothing to say for a while (queued, or a long prompt): a write that cannot fail a well client
  // (an SSE comment; JSON's leading whitespace) finds out whether the client is still there.
  if (std::chrono::steady_clock::now() - x.last_write >= std::chrono::milliseconds(o.heartbeat_ms))
    if (!write(x.stream ? ": waiting\n\n" : " ")) return false;
  return true;
}

HttpServer::HttpServer(Scheduler& sched, const Tokenizer& tok, Metrics& metrics, const ServerOptions& o)
    : impl_(std::make_unique<Impl>(sched, tok, metrics, o)) {
  impl_->routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  Impl& i = *impl_;
  int port = i.o.port;
  if (port == 0) {
    port = i.svr.bind_to_any_port(i.o.host);
    if (port <= 0) fail("cannot listen on {} (any port)", i.o.host);
  } else if (!i.svr.bind_to_port(i.o.host, port)) {
    fail("cannot listen on {}:{} (in use, or not an address here)", i.o.host, port);
  }
  // cpp-httplib listens with a backlog of 5: a burst of clients connecting at once (every
  // generation request is a new connection) would overflow it. listen() again raises it.
  if (i.listen_fd >= 0) ::listen(i.listen_fd, 1024);
  return port;
}

void HttpServer::listen() {
  impl_->svr.listen_after_bind();
}
void HttpServer::stop() {
  impl_->svr.stop();
}
bool HttpServer::drain(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (impl_->answering.load() > 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace bitnet::server
