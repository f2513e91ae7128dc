// `bitnet serve`: the OpenAI-compatible HTTP server (src/server). Loads the model once, makes one
// engine of --parallel KV slots (a Session on the CPU, or a CUDA session on the GPU), and serves
// until SIGINT / SIGTERM, which end it cleanly (requests in flight are answered with an error
// event, the port is released).
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cli_tokenizer.h"
#include "commands.h"
#include "core/error.h"
#include "device_option.h"
#include "model_source.h"
#include "sampling_options.h"
#include "server/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "tokenizer/chat_template.h"

namespace bitnet::cli {
namespace {

struct Opts {
  ModelSource src;
  server::ServerOptions http;
  server::SchedulerOptions sched;
  int parallel = 4;
  int64_t n_ctx = 4096;
  int threads = 0;  // 0: not given (2 on the CPU; on the GPU, sampling takes the cores, up to 16)
  std::string tmpl;
  int timeout_s = 30;
  SamplerOptions sampling;
  int n_predict = -1;
  bool fixed_seed = false;  // --seed given: requests without a seed use it
  std::string device = "auto";
};

void run(Opts o) {
  // Signals go to the waiting thread below only; a client that vanishes mid-write must not kill
  // the server with SIGPIPE.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const bool gpu = use_cuda(o.device);
  LoadedModel lm = load_model(o.src, true);
  const Tokenizer& tok = *lm.tokenizer;
  std::unique_ptr<server::BatchEngine> engine;
#if defined(BITNET_HAVE_CUDA)
  if (gpu) engine = server::make_cuda_engine(*lm.model, o.parallel, o.n_ctx);
#endif
  if (!engine) {
    SessionOptions so;
    so.n_ctx = o.n_ctx;
    so.threads = o.threads > 0 ? o.threads : 2;
    so.n_seq = o.parallel;
    engine = server::make_session_engine(*lm.model, so);
  }
  warn_past_trained_context(lm.model->cfg, o.n_ctx);
  server::Metrics metrics;
  // With the GPU engine the host's only work a step is sampling, one sequence a thread.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.sched.sample_threads = o.threads > 0 ? o.threads : gpu ? std::min(cores, 16) : 2;
  server::Scheduler sched(*engine, tok, o.sched, &metrics);

  o.http.chat_template = o.tmpl.empty() ? default_chat_template(tok) : *chat_template_from_name(o.tmpl);
  warn_missing_chat_markers(tok, o.http.chat_template);
  if (o.http.model_name.empty()) o.http.model_name = std::filesystem::path(lm.label).stem().string();
  if (o.http.api_key.empty())
    if (const char* k = std::getenv("BITNET_API_KEY"); k && *k) o.http.api_key = k;
  o.http.read_timeout_s = o.http.write_timeout_s = o.timeout_s;
  o.http.limits.n_ctx = engine->n_ctx();
  o.http.limits.n_vocab = engine->n_vocab();
  o.http.limits.sampling = o.sampling;
  o.http.limits.default_max_tokens = o.n_predict;
  o.http.limits.random_seed = !o.fixed_seed;
  if (o.http.http_threads == 0) o.http.http_threads = o.parallel + o.sched.max_queue + 16;
  server::HttpServer http(sched, tok, metrics, o.http);
  const int port = http.bind();
  sched.start();
  std::printf(
      "bitnet serve: listening on http://%s:%d (model %s on the %s, %d slots x %lld positions, chat template "
      "%s%s)\n",
      o.http.host.c_str(), port, o.http.model_name.c_str(), gpu ? "GPU" : "CPU", o.parallel,
      static_cast<long long>(o.n_ctx), chat_template_name(o.http.chat_template),
      o.http.api_key.empty() ? "" : ", API key required");
  std::fflush(stdout);

  std::atomic<bool> listen_returned{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    // Requests in flight end first, with an error event (a stream then sends [DONE]); closing the
    // port before that would cut their responses off where they are.
    sched.stop();
    http.drain(std::chrono::seconds(5));
    // stop() does nothing before listen() has begun serving: repeat it until listen() returns.
    while (!listen_returned.load()) {
      http.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  http.listen();
  listen_returned = true;
  pthread_kill(waiter.native_handle(), SIGTERM);  // if listen ended by itself
  waiter.join();
  sched.stop();
  std::fprintf(stderr, "bitnet serve: stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  static Opts o;
  add_model_options(cmd, o.src, false);
  cmd->add_option("--host", o.http.host, "address to listen on (127.0.0.1: this machine only)");
  cmd->add_option("--port", o.http.port, "port (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("-P,--parallel", o.parallel, "sequences decoded together (KV slots)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("-c,--ctx-size", o.n_ctx, "positions per slot (prompt + answer)")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 22));
  cmd->add_option("-b,--batch-size", o.sched.n_batch, "tokens per batched step (decodes + prompt chunks)")
      ->check(CLI::Range(1, 8192));
  // Each waiting request holds a connection thread, all of them started with the server: the
  // bounds keep the default thread count (parallel + queue + 16) in the thousands.
  cmd->add_option("--queue", o.sched.max_queue, "requests that may wait for a slot; more are answered 503")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("-t,--threads", o.threads,
                  "CPU threads: the engine's on the CPU, and those sampling a step's sequences (default 2; "
                  "with --device cuda, sampling takes the machine's cores, up to 16)")
      ->check(CLI::Range(1, 1024));
  add_device_option(cmd, o.device);
  cmd->add_option("--api-key", o.http.api_key,
                  "require 'Authorization: Bearer KEY' (default: $BITNET_API_KEY)");
  cmd->add_option("--alias", o.http.model_name,
                  "model name in answers and /v1/models (default: the file's name)");
  cmd->add_option("--template", o.tmpl, "chat template: bitnet or llama3 (default: from the vocabulary)")
      ->check(CLI::IsMember({"bitnet", "llama3"}));
  cmd->add_option("--max-body", o.http.max_body_bytes, "largest request body in bytes (larger: 413)")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  cmd->add_option("--timeout", o.timeout_s, "seconds a client may stall reading or writing")
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--http-threads", o.http.http_threads,
                  "connection threads (default: parallel + queue + 16)")
      ->check(CLI::Range(1, 8192));
  cmd->add_option(
         "--heartbeat-ms", o.http.heartbeat_ms,
         "a waiting answer writes a keep-alive byte after this long without output (finds clients that left)")
      ->check(CLI::Range(10, 60000));
  cmd->add_option("-n,--n-predict", o.n_predict,
                  "answer length when a request sets no max_tokens (-1: until the context is full)")
      ->check(CLI::Range(-1, 1 << 22));
  cmd->add_flag("-v,--verbose", o.http.verbose, "one line per request on stderr");
  add_sampling_options(cmd, o.sampling);
  cmd->callback([cmd] {
    o.fixed_seed = cmd->get_option("--seed")->count() > 0;
    run(o);
  });
}

}  // namespace bitnet::cli
