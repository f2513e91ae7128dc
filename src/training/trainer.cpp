#include "training/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/gguf.h"
#include "model/convert_hf.h"
#include "quant/type_traits.h"
#include "training/adamw.h"
#include "training/backend.h"
#include "training/checkpoint.h"
#include "training/data.h"
#include "training/export.h"
#include "training/export_hf.h"
#include "training/loss_plot.h"
#include "training/model.h"

namespace bitnet::train {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

ModelConfig train_config(const std::string& name, int64_t n_vocab) {
  ModelConfig c;
  c.arch = "bitnet-b1.58";
  c.n_vocab = n_vocab;
  c.rope = RopeStyle::kNeox;
  c.act = FfnAct::kRelu2;
  c.sub_norms = true;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  auto shape = [&](int64_t d, int64_t layers, int64_t heads, int64_t kv, int64_t ff) {
    c.n_embd = d;
    c.n_layer = layers;
    c.n_head = heads;
    c.n_head_kv = kv;
    c.head_dim = d / heads;
    c.rope_dim = c.head_dim;
    c.n_ff = ff;
    c.n_ctx_train = 1024;
  };
  shape(128, 4, 4, 2, 384);  // tiny
  if (name == "tiny") return c;
  if (name == "small") {
    shape(256, 6, 8, 4, 768);
    return c;
  }
  if (name == "gpt2-small") {  // the reference shape of docs/PERFORMANCE.md (162 M with vocab 50304)
    shape(768, 12, 12, 12, 2048);
    return c;
  }
  std::ifstream in(name);
  if (!in) fail("--config: '{}' is not tiny, small, gpt2-small or a readable JSON file", name);
  std::ostringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: not a JSON object", name);
  nlohmann::json full = config_to_json(c);
  for (const auto& [k, v] : j.items()) {
    if (!full.contains(k)) fail("{}: unknown model config key '{}'", name, k);
    full[k] = v;
  }
  if (!j.contains("head_dim") && j.contains("n_embd") && j.contains("n_head"))
    full["head_dim"] = full["n_embd"].get<int64_t>() / std::max<int64_t>(1, full["n_head"].get<int64_t>());
  if (!j.contains("rope_dim")) full["rope_dim"] = full["head_dim"];
  c = config_from_json(full, name);
  if (c.arch != "bitnet-b1.58" || c.rope != RopeStyle::kNeox)
    fail("{}: the trainer builds arch bitnet-b1.58 with neox RoPE", name);
  if (c.n_vocab != n_vocab) fail("{}: n_vocab {} differs from the tokenizer's {}", name, c.n_vocab, n_vocab);
  return c;
}

namespace {

// The tokenizer's vocabulary, its size padded with unused placeholders to `size` (0: the next
// multiple of 64).
TokenizerVocab load_vocab(const std::string& path, size_t size) {
  TokenizerVocab v;
  if (path.empty()) {
    v = byte_level_vocab(320);
  } else if (path.size() > 5 && path.ends_with(".gguf")) {
    v = tokenizer_vocab_from_gguf(GgufFile::open(path));
  } else if (path.ends_with(".json")) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    HfTokenizerJson h = parse_hf_tokenizer_json(ss.str(), path);
    v = std::move(h.vocab);
    if (h.pattern == kLlama3Pattern)
      v.pre = "llama-bpe";
    else if (h.pattern == kGpt2Pattern)
      v.pre = "gpt-2";
    else
      fail("{}: pre-tokenizer regex is neither LLaMA-3's nor GPT-2's; not supported", path);
  } else {
    fail("--tokenizer: '{}' must be a tokenizer.json or a GGUF model", path);
  }
  const size_t n = size ? size : (v.tokens.size() + 63) / 64 * 64;
  if (v.tokens.size() > n)
    fail("{}: {} tokens for a model vocabulary of {}", path.empty() ? "the byte-level tokenizer" : path,
         v.tokens.size(), n);
  if (v.token_types.empty()) v.token_types.assign(v.tokens.size(), static_cast<int32_t>(TokenType::Normal));
  v.token_types.resize(n, static_cast<int32_t>(TokenType::Unused));
  for (size_t i = v.tokens.size(); i < n; ++i) v.tokens.push_back("[PAD" + std::to_string(i) + "]");
  for (size_t i = 0; i < n; ++i)
    if (v.tokens[i].empty()) {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.token_types[i] = static_cast<int32_t>(TokenType::Unused);
    }
  return v;
}

nlohmann::json settings_json(const TrainOptions& o, const ModelConfig& c) {
  return {{"config", config_to_json(c)},
          {"tied", o.tied},
          {"quantize", o.quantize},
          {"steps", o.steps},
          {"batch", o.batch},
          {"seq", o.seq},
          {"accum", o.accum},
          {"schedule", schedule_name(o.sched.kind)},
          {"lr", o.sched.lr},
          {"wd", o.sched.wd},
          {"warmup", o.sched.warmup},
          {"clip", o.clip},
          {"seed", o.seed},
          {"eval_frac", o.eval_frac},
          {"init", o.init}};
}

// The loss-curve log (one JSON object per line) without the entries past `step` (a run killed
// after its last checkpoint logged steps that the resumed run does again).
void trim_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  in.close();
  std::ofstream(path, std::ios::trunc) << kept;
}

// Every logical matrix must fit the export's ternary type (I2_S: whole 128-weight blocks, TQ*: rows
// of whole 256-weight blocks): said before training, not after it.
void check_exportable(const ModelConfig& c, DType t) {
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff;
  const std::pair<int64_t, int64_t> shapes[] = {{qd, d}, {kvd, d}, {d, qd}, {ff, d}, {d, ff}};
  for (const auto& [rows, cols] : shapes)
    if (!ternary_fits(t, rows, cols))
      fail(
          "train: a {} x {} matrix of this config cannot be stored as {} (choose sizes that are multiples of "
          "256, "
          "or another --type)",
          rows, cols, dtype_name(t));
}

// loss.png from the log's train and eval losses.
void plot_log(const std::string& log, const std::string& png) {
  std::ifstream in(log);
  std::vector<LossPoint> tr, ev;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    const double t = j.value("tokens", 0.0);
    tr.push_back({t, j.value("loss", 0.0)});
    if (j.contains("eval_loss") && j["eval_loss"].is_number())
      ev.push_back({t, j["eval_loss"].get<double>()});
  }
  write_png(png, plot_loss_curve(tr, ev));
}

}  // namespace

void run_training(const TrainOptions& o, const std::function<void(const TrainEvent&)>& report_all,
                  const std::atomic<bool>* stop) {
  const bool primary = o.rank == 0;  // writes the files and reports (TrainOptions::rank)
  auto report = [&](const TrainEvent& e) {
    if (primary) report_all(e);
  };
  if (o.out_dir.empty()) fail("train: an output folder (-o) is required");
  if (o.steps <= 0 || o.batch <= 0 || o.seq <= 1 || o.accum <= 0)
    fail("train: steps, batch and accumulation must be positive and the sequence longer than 1");
  if (o.threads <= 0) fail("train: threads must be positive");
  if (o.sched.warmup >= o.steps)
    fail(
        "train: --warmup {} is not shorter than the run's {} steps: the learning rate would still be rising "
        "at "
        "the end, and the schedule's decay would never start",
        o.sched.warmup, o.steps);
  if (primary) fs::create_directories(o.out_dir);
  const std::string ckpt = (fs::path(o.out_dir) / "checkpoint.bin").string();
  const std::string shard = (fs::path(o.out_dir) / "tokens.bin").string();
  const std::string log = (fs::path(o.out_dir) / "train_log.jsonl").string();

  // Starting from an HF checkpoint: its config and (unless --tokenizer) its tokenizer.json.
  TrainModel init;
  if (!o.init.empty() && !o.resume) init = load_hf_model(o.init, o.quantize);
  const std::string tok_path =
      o.tokenizer.empty() && !o.init.empty() ? (fs::path(o.init) / "tokenizer.json").string() : o.tokenizer;
  const ModelConfig init_cfg = o.init.empty() ? ModelConfig{} : hf_config(o.init);
  if (o.vocab < 0) fail("--vocab: {} rows", o.vocab);
  if (o.vocab > 0 && !o.init.empty() && o.vocab != init_cfg.n_vocab)
    fail("--vocab {}: {} has a vocabulary of {}", o.vocab, o.init, init_cfg.n_vocab);
  const TokenizerVocab vocab =
      load_vocab(tok_path, static_cast<size_t>(o.init.empty() ? o.vocab : init_cfg.n_vocab));
  const int64_t n_vocab = static_cast<int64_t>(vocab.tokens.size());
  ModelConfig cfg = o.init.empty() ? train_config(o.config, n_vocab) : init_cfg;
  if (!o.init.empty() && (cfg.act != FfnAct::kRelu2 || !cfg.sub_norms))
    fail("--init: {} is not a relu2 BitNet with sub-norms", o.init);
  cfg.n_ctx_train = std::max<int64_t>(o.seq, 1);
  if (o.quantize) check_exportable(cfg, o.ternary_type);
  if (o.resume && !fs::exists(ckpt)) fail("--resume: {} has no checkpoint.bin", o.out_dir);
  // An earlier run's checkpoint is not replaced by a new run without being asked.
  if (!o.resume && !o.overwrite && fs::exists(ckpt))
    fail("train: {} holds an earlier run's checkpoint.bin: --resume continues it, --overwrite starts again "
         "there, or choose another -o",
         o.out_dir);

  // Data: tokenized once into the shard (kept for a resumed run).
  TokenShard ts;
  bool in_memory = false;
  const bool shard_kept = o.resume && fs::exists(shard);
  if (!shard_kept) {
    const Tokenizer tok = Tokenizer::from_vocab(vocab);
    const auto files = list_text_files(o.data);
    std::vector<int32_t> ids = tokenize_files(tok, files);
    if (primary) {
      write_token_shard(shard, ids, static_cast<int32_t>(n_vocab));
      report({.kind = TrainEvent::kInfo,
              .tokens = static_cast<int64_t>(ids.size()),
              .text = "tokenized " + std::to_string(files.size()) + " files into " + shard});
    } else {
      ts = TokenShard::from_ids(std::move(ids), static_cast<int32_t>(n_vocab));
      in_memory = true;
    }
  }
  if (!in_memory) ts = TokenShard::open(shard, static_cast<int32_t>(n_vocab));
  const DataSplit split = split_shard(ts, o.eval_frac, o.seq);

  TrainModel m;
  AdamWState opt;
  Checkpoint ck;
  ck.settings = settings_json(o, cfg);
  if (o.resume) {
    Checkpoint saved;
    load_checkpoint(ckpt, m, opt, saved);
    if (saved.settings != ck.settings)
      fail("--resume: {} was written with other settings:\n  checkpoint: {}\n  this run:   {}", ckpt,
           saved.settings.dump(), ck.settings.dump());
    ck = saved;
    if (primary) trim_log(log, ck.step);
    // The run goes on with the tokens it started with: --data is not read again where the shard
    // is there (a run resumed with other files would otherwise look like it used them).
    if (shard_kept)
      report({.kind = TrainEvent::kInfo,
              .step = ck.step,
              .tokens = ts.size(),
              .text = "resuming at step " + std::to_string(ck.step) + " with the " + std::to_string(ts.size()) +
                      " tokens of " + shard + " (the data files are not read again)"});
  } else {
    if (!o.init.empty()) {
      m = std::move(init);
      m.cfg = cfg;
    } else {
      m = make_train_model(cfg, o.tied, o.quantize, o.seed);
    }
    ck.rng = o.seed * 0x9E3779B97F4A7C15ull + 1;
    if (primary) std::ofstream(log, std::ios::trunc);
  }
  ScheduleConfig sc = o.sched;
  sc.steps = o.steps;

  TrainBackend be = o.backend ? o.backend(m, opt) : cpu_backend(m, opt, o.threads);
  report({.kind = TrainEvent::kInfo, .text = "training on " + be.name});
  std::vector<int32_t> inputs, targets, in1, tg1;
  Rng rng;
  rng.state = ck.rng;
  std::ofstream logf;
  if (primary) logf.open(log, std::ios::app);

  auto evaluate = [&]() -> double {
    const int64_t nw = std::min(o.eval_windows, eval_windows(split, o.seq));
    if (nw == 0) return std::nan("");
    double sum = 0;
    int64_t count = 0;
    std::vector<int32_t> in(static_cast<size_t>(o.batch * o.seq)), tg(in.size());
    for (int64_t w0 = 0; w0 < nw; w0 += o.batch) {
      const int64_t nb = std::min(o.batch, nw - w0);
      for (int64_t b = 0; b < nb; ++b)
        eval_window(split, o.seq, w0 + b, in.data() + b * o.seq, tg.data() + b * o.seq);
      sum += be.eval(in.data(), tg.data(), nb, o.seq);
      count += nb * o.seq;
    }
    return sum / static_cast<double>(count);
  };
  auto save = [&]() {
    be.to_host();  // on every rank: the backend's gathers are collective
    ck.rng = rng.state;
    if (!primary) return;
    save_checkpoint(ckpt, m, opt, ck);
    report({.kind = TrainEvent::kSaved, .step = ck.step, .steps = o.steps, .text = ckpt});
  };

  const auto t_start = std::chrono::steady_clock::now();
  const int64_t first = ck.step;
  const int64_t step_tokens = o.accum * o.batch * o.seq;
  const float grad_scale = 1.0f / static_cast<float>(step_tokens);
  while (ck.step < o.steps) {
    if (stop && stop->load()) {
      save();
      return;
    }
    inputs.clear();
    targets.clear();
    for (int64_t a = 0; a < o.accum; ++a) {  // the data order is the same on every backend
      draw_batch(split, o.batch, o.seq, rng, in1, tg1);
      inputs.insert(inputs.end(), in1.begin(), in1.end());
      targets.insert(targets.end(), tg1.begin(), tg1.end());
    }
    const float lr = lr_at(sc, ck.step), wd = wd_at(sc, ck.step);
    const StepStats st =
        be.step(inputs.data(), targets.data(), o.accum, o.batch, o.seq, grad_scale, o.clip, lr, wd);
    const double loss = st.loss_sum / static_cast<double>(step_tokens), gn = st.grad_norm;
    // Checked before the step counts (and before a checkpoint could hold its update): a
    // non-finite gradient with a finite loss has already moved the weights in memory.
    if (!std::isfinite(loss))
      fail("train: the loss is {} at step {} (diverged: lower --lr?)", loss, ck.step + 1);
    if (!std::isfinite(gn))
      fail("train: the gradient norm is {} at step {} (diverged: lower --lr?)", gn, ck.step + 1);
    ++ck.step;
    ck.tokens += step_tokens;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double tps = static_cast<double>((ck.step - first) * step_tokens) / std::max(secs, 1e-9);
    TrainEvent e{.kind = TrainEvent::kStep,
                 .step = ck.step,
                 .steps = o.steps,
                 .tokens = ck.tokens,
                 .loss = loss,
                 .lr = lr,
                 .grad_norm = gn,
                 .tokens_per_second = tps,
                 .eta_seconds = static_cast<double>((o.steps - ck.step) * step_tokens) / std::max(tps, 1e-9),
                 .text = {}};
    ojson line = {{"step", ck.step}, {"tokens", ck.tokens}, {"loss", loss}, {"lr", lr}, {"grad_norm", gn}};
    if (o.eval_frac > 0 && o.eval_every > 0 && (ck.step % o.eval_every == 0 || ck.step == o.steps)) {
      const double el = evaluate();
      line["eval_loss"] = el;
      report({.kind = TrainEvent::kEval,
              .step = ck.step,
              .steps = o.steps,
              .tokens = ck.tokens,
              .eval_loss = el,
              .eval_ppl = std::exp(el),
              .text = {}});
    }
    if (primary) {
      logf << line.dump() << "\n";
      logf.flush();
    }
    if (primary && line.contains("eval_loss")) plot_log(log, (fs::path(o.out_dir) / "loss.png").string());
    report(e);
    const bool last = ck.step == o.steps;
    const bool stopping = o.stop_after > 0 && ck.step - first >= o.stop_after;
    if (last || stopping || (o.save_every > 0 && ck.step % o.save_every == 0)) save();
    if (stopping && !last) return;
  }
  be.to_host();
  if (!primary) return;
  if (o.hf_dtype) {
    const std::string hf = (fs::path(o.out_dir) / "hf").string();
    export_hf(m, vocab, hf, *o.hf_dtype);
    report({.kind = TrainEvent::kExported, .step = ck.step, .steps = o.steps, .text = hf});
  }
  if (o.quantize) {
    const std::string out = (fs::path(o.out_dir) / "model.gguf").string();
    export_gguf(m, vocab, o.ternary_type, o.embd_type, "bitnet trained (" + o.config + ")").write(out);
    report({.kind = TrainEvent::kExported, .step = ck.step, .steps = o.steps, .text = out});
  } else if (!o.hf_dtype) {
    report({.kind = TrainEvent::kInfo,
            .step = ck.step,
            .text = "a float run writes no model.gguf (its weights are not ternary); --hf f32|bf16 exports them"});
  }
}

}  // namespace bitnet::train
