// `bitnet train`: quantization-aware training of a BitNet b1.58 model from text files (CPU, one GPU
// or data parallel over several: --gpus, or one process per GPU under torchrun / mpirun), with
// checkpoints, resume and a GGUF export that `bitnet run` loads (src/training/trainer.h).
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "commands.h"
#include "core/error.h"
#include "json_out.h"
#include "option_checks.h"
#include "training/launch_env.h"
#include "training/trainer.h"
#if defined(BITNET_HAVE_CUDA)
#include "cuda/device.h"
#include "cuda/dp_nccl.h"
#include "cuda/train_backend.h"
#include "cuda/train_dp.h"
#include "training/rendezvous.h"
#endif

namespace bitnet::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) {
  g_stop.store(true);
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

}  // namespace

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a BitNet b1.58 model (quantization-aware) from text files");
  struct Opts {
    train::TrainOptions t;
    std::string schedule = "two-stage", ternary = "i2_s", embd = "f32", hf, device = "auto";
    bool json = false, fp32 = false;
    int gpus = 0;  // 0: not given (one GPU, no NCCL)
  };
  static Opts o;
  cmd->add_option("--data", o.t.data, "text files or folders (tokenized once into OUT/tokens.bin)")
      ->required();
  cmd->add_option("-o,--output", o.t.out_dir, "output folder: checkpoint.bin, train_log.jsonl, model.gguf")
      ->required();
  cmd->add_option("--tokenizer", o.t.tokenizer,
                  "tokenizer.json or a GGUF model's tokenizer (default: byte-level)");
  cmd->add_option(
      "--vocab", o.t.vocab,
      "vocabulary rows: the tokenizer's tokens padded with unused ones (default: to a multiple of 64)");
  cmd->add_option("--config", o.t.config, "tiny | small | gpt2-small | FILE.json (ModelConfig fields)");
  cmd->add_option("--init", o.t.init,
                  "start from an HF BitNet folder (float master weights; its config and tokenizer)");
  cmd->add_option("--steps", o.t.steps, "optimizer steps")->check(at_least(1));
  cmd->add_option("--batch", o.t.batch, "sequences per micro-batch")->check(at_least(1));
  cmd->add_option("--seq", o.t.seq, "tokens per sequence")->check(at_least(1));
  cmd->add_option("--accum", o.t.accum, "micro-batches per step (gradient accumulation)")->check(at_least(1));
  cmd->add_option("--lr", o.t.sched.lr, "peak learning rate")->check(finite_in(0, 10));
  cmd->add_option("--wd", o.t.sched.wd, "weight decay (linear layers and an untied head)")
      ->check(finite_in(0, 10));
  cmd->add_option("--warmup", o.t.sched.warmup, "linear warm-up steps")->check(at_least(0));
  cmd->add_option("--schedule", o.schedule, "two-stage (BitNet b1.58) | cosine | constant")
      ->check(CLI::IsMember({"two-stage", "cosine", "constant"}));
  cmd->add_option("--clip", o.t.clip, "gradient-norm clip (0: off)")->check(finite_in(0, 1e9));
  cmd->add_option("--seed", o.t.seed, "seed of the initial weights and the data order")->check(seed_value());
  cmd->add_option("--eval-frac", o.t.eval_frac, "held-out fraction of the tokens")->check(finite_in(0, 0.9));
  cmd->add_option("--eval-every", o.t.eval_every, "steps between held-out evaluations (0: none)")
      ->check(at_least(0));
  cmd->add_option("--eval-windows", o.t.eval_windows, "held-out windows per evaluation")->check(at_least(1));
  cmd->add_option("--save-every", o.t.save_every, "steps between checkpoints (0: at the end only)")
      ->check(at_least(0));
  auto* resume = cmd->add_flag("--resume", o.t.resume, "continue from OUT/checkpoint.bin (same settings)");
  cmd->add_flag("--overwrite", o.t.overwrite, "start again in an OUT that holds a checkpoint (else refused)")
      ->excludes(resume);
  auto* fp = cmd->add_flag("--float", o.fp32,
                           "train without quantization (the same architecture in fp32; no model.gguf, whose "
                           "weights are ternary: --hf exports these)");
  cmd->add_flag("--tied", o.t.tied, "tie the output head to the embedding");
  cmd->add_option("-t,--threads", o.t.threads, "threads (CPU)")->check(CLI::Range(1, 1024));
  cmd->add_option("--device", o.device,
                  "cpu | cuda | auto (cuda when this build has it and a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd->add_option("--gpus", o.gpus,
                  "data parallel over this many GPUs of this machine (NCCL, one thread each); under torchrun "
                  "or mpirun, one process per GPU instead (docs/MULTI_GPU.md)")
      ->check(at_least(1));
  cmd->add_option("--type", o.ternary,
                  "ternary type of the exported GGUF (i2_s keeps each matrix's float scale; tq2_0 and tq1_0 "
                  "store it as f16, so their logits differ slightly from the trainer's)")
      ->check(CLI::IsMember({"i2_s", "tq2_0", "tq1_0"}))
      ->excludes(fp);
  cmd->add_option("--embd-type", o.embd,
                  "embedding / head type of the exported GGUF (f32 gives the trainer's logits; the others "
                  "round the trained values and are smaller)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q6_k"}));
  cmd->add_option("--hf", o.hf, "also write OUT/hf, an HF BitNet folder with master weights in this type")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--stop-after", o.t.stop_after, "save and stop after this many steps in this run (testing)")
      ->check(at_least(0));
  cmd->add_flag("--json", o.json, "one JSON object per event on stdout");
  cmd->callback([] {
    o.t.quantize = !o.fp32;
    o.t.sched.kind = *train::schedule_from_name(o.schedule);
    o.t.ternary_type = *dtype_from_name(o.ternary);
    o.t.embd_type = *dtype_from_name(o.embd);
    if (!o.hf.empty()) o.t.hf_dtype = *dtype_from_name(o.hf);
    // The device: CUDA on request (an error without a GPU, never a silent CPU run), or by default
    // where this build has it and a GPU is present (said once on stderr).
    // Data parallel: a launcher's variables make this process one rank of a job (one GPU each);
    // otherwise --gpus N runs N ranks here.
    const auto launched = train::launch_env([](const char* k) -> const char* { return std::getenv(k); });
#if defined(BITNET_HAVE_CUDA)
    const bool gpu = o.device == "cuda" || (o.device == "auto" && !cuda::devices().empty());
    if (o.device == "cuda") cuda::require_device();
    if (launched) {
      const train::LaunchEnv env = *launched;
      if (o.device == "cpu")
        fail("data parallel under {} (rank {} of {}): CUDA only; --device cpu trains one process alone",
             env.launcher, env.rank, env.world);
      if (o.gpus > 1)
        fail("--gpus {}: under {} each process drives one GPU (its LOCAL_RANK's); start one process per GPU",
             o.gpus, env.launcher);
      cuda::require_device();
      const size_t have = cuda::devices().size();
      if (static_cast<size_t>(env.local_rank) >= have)
        fail("rank {}: LOCAL_RANK {} but this machine has {} GPU{}", env.rank, env.local_rank, have,
             have == 1 ? "" : "s");
      // The communicator's id from rank 0 now, before the data is read, so that the ranks meet
      // within the rendezvous's timeout.
      const std::vector<uint8_t> id =
          train::rendezvous({env.master_addr, env.master_port, env.rank, env.world, 60.0},
                            env.rank == 0 ? cuda::nccl_unique_id() : std::vector<uint8_t>{});
      o.t.rank = env.rank;
      o.t.backend = [id, env](train::TrainModel& m, train::AdamWState& s) {
        return cuda::cuda_backend(m, s, cuda::nccl_rank(id, env.rank, env.world, env.local_rank));
      };
    } else if (o.gpus > 0) {
      if (o.device == "cpu")
        fail("--gpus {}: data parallel runs on CUDA only (not with --device cpu)", o.gpus);
      cuda::require_device();
      const size_t have = cuda::devices().size();
      if (static_cast<size_t>(o.gpus) > have)
        fail("--gpus {}: this machine has {} GPU{}", o.gpus, have, have == 1 ? "" : "s");
      o.t.backend = [](train::TrainModel& m, train::AdamWState& s) {
        return cuda::cuda_backend_gpus(m, s, o.gpus);
      };
    } else if (gpu) {
      if (o.device == "auto") std::fprintf(stderr, "training on the GPU (--device cpu for the CPU)\n");
      o.t.backend = [](train::TrainModel& m, train::AdamWState& s) { return cuda::cuda_backend(m, s); };
    }
#else
    if (o.device == "cuda")
      fail("--device cuda: this build has no CUDA backend (built with BITNET_CUDA=OFF)");
    if (o.gpus > 0 || launched)
      fail("{}: data parallel training needs the CUDA backend (built with BITNET_CUDA=OFF)",
           launched ? "under " + launched->launcher : "--gpus " + std::to_string(o.gpus));
#endif
    std::signal(SIGINT, on_sigint);
    const bool tty = isatty(fileno(stderr));
    auto report = [&](const train::TrainEvent& e) {
      using train::TrainEvent;
      if (o.json) {
        ojson j = {{"event", e.kind == TrainEvent::kStep       ? "step"
                             : e.kind == TrainEvent::kEval     ? "eval"
                             : e.kind == TrainEvent::kSaved    ? "saved"
                             : e.kind == TrainEvent::kExported ? "exported"
                                                               : "info"},
                   {"step", e.step},
                   {"tokens", e.tokens}};
        if (e.kind == TrainEvent::kStep) {
          j["loss"] = e.loss;
          j["lr"] = e.lr;
          j["grad_norm"] = e.grad_norm;
          j["tokens_per_second"] = e.tokens_per_second;
        }
        if (e.kind == TrainEvent::kEval) {
          j["eval_loss"] = e.eval_loss;
          j["eval_ppl"] = e.eval_ppl;
        }
        if (!e.text.empty()) j["text"] = e.text;
        print_json_line(j);
        return;
      }
      switch (e.kind) {
        case TrainEvent::kStep:
          std::fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | |g| %.3f | %.0f tok/s | ETA %s%s",
                       tty ? "\r\033[K" : "", static_cast<long long>(e.step), static_cast<long long>(e.steps),
                       e.loss, e.lr, e.grad_norm, e.tokens_per_second, duration(e.eta_seconds).c_str(),
                       tty ? "" : "\n");
          break;
        case TrainEvent::kEval:
          std::fprintf(stderr, "%seval at step %lld: loss %.4f, perplexity %.3f\n", tty ? "\r\033[K" : "",
                       static_cast<long long>(e.step), e.eval_loss, e.eval_ppl);
          break;
        case TrainEvent::kSaved:
          if (!tty)
            std::fprintf(stderr, "saved %s (step %lld)\n", e.text.c_str(), static_cast<long long>(e.step));
          break;
        case TrainEvent::kExported:
          std::fprintf(stderr, "%swrote %s\n", tty ? "\n" : "", e.text.c_str());
          break;
        case TrainEvent::kInfo:
          std::fprintf(stderr, "%s\n", e.text.c_str());
          break;
      }
    };
    train::run_training(o.t, report, &g_stop);
    if (g_stop.load()) std::fprintf(stderr, "\ninterrupted: checkpoint saved; continue with --resume\n");
  });
}

}  // namespace bitnet::cli
