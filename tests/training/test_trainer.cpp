// The trainer above its ops: the whole model's gradient against finite differences, learning,
// AdamW and the schedules, the GGUF export against the engine's logits, checkpoints (round trip,
// corruption), and resuming bit for bit, also after SIGKILL between checkpoints.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/thread_pool.h"
#include "inference/forward.h"
#include "io/gguf.h"
#include "model/convert_hf.h"
#include "model/load_gguf.h"
#include "training/adamw.h"
#include "training/checkpoint.h"
#include "training/data.h"
#include "training/export.h"
#include "training/export_hf.h"
#include "training/model.h"
#include "training/schedule.h"
#include "training/small_config.h"
#include "training/trainer.h"

namespace bitnet::train {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(r.below(static_cast<uint64_t>(vocab)));
  return t;
}

fs::path temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("bitnet_train_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST(TrainModel, FloatGradientMatchesFiniteDifferences) {
  const int64_t V = 37, B = 2, S = 5;
  for (const bool tied : {false, true}) {
    TrainModel m = make_train_model(small_config(V), tied, /*quantize=*/false, 3);
    // Larger weights than the init so every path carries signal.
    Rng r(9);
    for (float& p : m.params) p += 0.1f * r.normal();
    const auto in = random_tokens(B * S, V, 1), tg = random_tokens(B * S, V, 2);
    Workspace ws;
    std::vector<float> g(m.params.size(), 0.0f);
    forward_backward(nullptr, m, in.data(), tg.data(), B, S, 1.0f, &g, ws);
    auto loss = [&] {
      return forward_backward(nullptr, m, in.data(), tg.data(), B, S, 1.0f, nullptr, ws).loss_sum;
    };
    // A sample of parameters from every tensor.
    int checked = 0;
    for (const ParamTensor& t : m.tensors) {
      for (int k = 0; k < 3; ++k) {
        const int64_t i = t.offset + static_cast<int64_t>(r.below(static_cast<uint64_t>(t.size())));
        const float keep = m.params[static_cast<size_t>(i)];
        const float h = 1e-2f;
        m.params[static_cast<size_t>(i)] = keep + h;
        const double lp = loss();
        m.params[static_cast<size_t>(i)] = keep - h;
        const double lm = loss();
        m.params[static_cast<size_t>(i)] = keep;
        const double fd = (lp - lm) / (2 * h), an = g[static_cast<size_t>(i)];
        EXPECT_NEAR(an, fd, 2e-2 * std::max(1.0, std::abs(fd))) << t.name << " [" << i - t.offset << "]";
        ++checked;
      }
    }
    EXPECT_GT(checked, 20);
  }
}

TEST(TrainModel, ResultsDoNotDependOnThreads) {
  const int64_t V = 37, B = 2, S = 7;
  const TrainModel m = make_train_model(small_config(V), false, true, 4);
  const auto in = random_tokens(B * S, V, 1), tg = random_tokens(B * S, V, 2);
  Workspace w1, w3;
  std::vector<float> g1(m.params.size(), 0.0f), g3(m.params.size(), 0.0f);
  ThreadPool p3(3);
  const double l1 = forward_backward(nullptr, m, in.data(), tg.data(), B, S, 0.5f, &g1, w1).loss_sum;
  const double l3 = forward_backward(&p3, m, in.data(), tg.data(), B, S, 0.5f, &g3, w3).loss_sum;
  EXPECT_EQ(l1, l3);
  EXPECT_EQ(g1, g3);
}

TEST(TrainModel, QuantizedModelLearnsARepeatingSequence) {
  const int64_t V = 37, B = 4, S = 12;
  TrainModel m = make_train_model(small_config(V), false, true, 5);
  std::vector<int32_t> seqn(64);
  for (size_t i = 0; i < seqn.size(); ++i) seqn[i] = static_cast<int32_t>((i * 7 + i / 5) % V);
  std::vector<int32_t> in, tg;
  Workspace ws;
  AdamWState st;
  std::vector<float> g(m.params.size());
  double first = 0, last = 0;
  for (int step = 0; step < 120; ++step) {
    in.clear();
    tg.clear();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < S; ++t) {
        in.push_back(seqn[static_cast<size_t>((b * 9 + t + step) % 50)]);
        tg.push_back(seqn[static_cast<size_t>((b * 9 + t + step) % 50 + 1)]);
      }
    std::fill(g.begin(), g.end(), 0.0f);
    const double l =
        forward_backward(nullptr, m, in.data(), tg.data(), B, S, 1.0f / (B * S), &g, ws).loss_sum / (B * S);
    if (step == 0) first = l;
    last = l;
    adamw_step(m, g, st, {}, 1e-2f, 0.0f);
  }
  EXPECT_NEAR(first, std::log(static_cast<double>(V)), 0.3);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(AdamW, OneStepByHand) {
  TrainModel m = make_train_model(small_config(37), false, true, 1);
  const std::vector<float> p0 = m.params;
  std::vector<float> g(m.params.size(), 0.0f);
  g[0] = 0.5f;                              // embedding: no decay
  const int64_t wi = m.layers[0].wqkv + 3;  // a linear weight: decayed
  g[static_cast<size_t>(wi)] = -2.0f;
  AdamWState st;
  adamw_step(m, g, st, {}, 0.1f, 0.5f);
  // Step 1: m = (1 - b1) g, v = (1 - b2) g^2, mhat = g, vhat = g^2: p -= lr * g / (|g| + eps).
  EXPECT_NEAR(m.params[0], p0[0] - 0.1f * 0.5f / (0.5f + 1e-8f), 1e-6);
  EXPECT_NEAR(m.params[static_cast<size_t>(wi)], p0[static_cast<size_t>(wi)] * (1 - 0.1f * 0.5f) + 0.1f,
              1e-6);
  EXPECT_EQ(m.params[1], p0[1]);  // zero gradient, no decay: unchanged
  EXPECT_NEAR(m.params[static_cast<size_t>(wi + 1)], p0[static_cast<size_t>(wi + 1)] * (1 - 0.05f), 1e-7);
  EXPECT_EQ(st.step, 1);
}

TEST(Schedule, WarmupTwoStageAndCosine) {
  ScheduleConfig s{Schedule::kTwoStage, 1.0f, 0.1f, 10, 100};
  EXPECT_FLOAT_EQ(lr_at(s, 0), 0.1f);
  EXPECT_FLOAT_EQ(lr_at(s, 9), 1.0f);
  EXPECT_FLOAT_EQ(lr_at(s, 10), 1.0f);
  EXPECT_NEAR(lr_at(s, 49), 0.8f, 0.01f);
  EXPECT_FLOAT_EQ(lr_at(s, 50), 0.4f);  // the cut at the midpoint
  EXPECT_FLOAT_EQ(lr_at(s, 99), 0.04f);  // the run's last step is at the floor
  EXPECT_FLOAT_EQ(wd_at(s, 49), 0.1f);
  EXPECT_FLOAT_EQ(wd_at(s, 50), 0.0f);
  s.kind = Schedule::kCosine;
  EXPECT_NEAR(lr_at(s, 55), 0.55f, 0.01f);
  EXPECT_FLOAT_EQ(lr_at(s, 99), 0.1f);
  EXPECT_GT(lr_at(s, 98), lr_at(s, 99));
  EXPECT_FLOAT_EQ(wd_at(s, 99), 0.1f);
}

// The engine loads the exported GGUF and computes the trainer's logits.
TEST(Export, EngineLogitsEqualTrainerLogits) {
  const TokenizerVocab vocab = byte_level_vocab(320);
  ModelConfig c = small_config(320);
  c.n_embd = 64;  // I2_S rows are whole 128-weight blocks: 64 x 64 qualifies per tensor
  c.head_dim = 16;
  c.rope_dim = 16;
  c.n_ff = 128;
  for (const bool tied : {false, true}) {
    TrainModel m = make_train_model(c, tied, true, 11);
    Rng r(3);
    for (float& p : m.params) p += 0.05f * r.normal();
    const int64_t S = 9;
    const auto in = random_tokens(S, 320, 8), tg = random_tokens(S, 320, 9);
    Workspace ws;
    forward_backward(nullptr, m, in.data(), tg.data(), 1, S, 1.0f, nullptr, ws);
    const fs::path dir = temp_dir("export");
    const std::string path = (dir / "m.gguf").string();
    export_gguf(m, vocab, DType::I2_S, DType::F32, "test").write(path);
    const GgufFile f = GgufFile::open(path);
    const auto model = load_gguf_model(f);
    Session s(*model, {.n_ctx = 64, .threads = 2, .kv_f16 = false});
    const float* lg = s.forward(in, /*all_logits=*/true);
    double max_diff = 0, max_abs = 0;
    for (int64_t t = 0; t < S; ++t) {
      const float* a = lg + t * 320;
      const float* b = ws.logits.data() + t * 320;
      EXPECT_EQ(std::max_element(a, a + 320) - a, std::max_element(b, b + 320) - b) << "token " << t;
      for (int64_t v = 0; v < 320; ++v) {
        max_diff = std::max(max_diff, static_cast<double>(std::abs(a[v] - b[v])));
        max_abs = std::max(max_abs, static_cast<double>(std::abs(b[v])));
      }
    }
    EXPECT_LT(max_diff, 1e-4 * std::max(1.0, max_abs)) << "tied " << tied;
    EXPECT_GT(max_abs, 0.01);
    fs::remove_all(dir);
  }
}

TEST(Checkpoint, RoundTripAndCorruption) {
  const fs::path dir = temp_dir("ckpt");
  const std::string path = (dir / "c.bin").string();
  TrainModel m = make_train_model(small_config(37), false, true, 2);
  AdamWState st;
  std::vector<float> g(m.params.size(), 0.25f);
  adamw_step(m, g, st, {}, 1e-3f, 0.1f);
  Checkpoint ck{{{"batch", 4}}, 7, 123456789ull, 4096};
  save_checkpoint(path, m, st, ck);
  TrainModel m2;
  AdamWState st2;
  Checkpoint ck2;
  load_checkpoint(path, m2, st2, ck2);
  EXPECT_EQ(m2.params, m.params);
  EXPECT_EQ(st2.m, st.m);
  EXPECT_EQ(st2.v, st.v);
  EXPECT_EQ(st2.step, 1);
  EXPECT_EQ(ck2.step, 7);
  EXPECT_EQ(ck2.rng, 123456789ull);
  EXPECT_EQ(ck2.settings, ck.settings);
  // A flipped byte in the weights, a truncated file, garbage: clear errors.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  auto expect_error = [&](const std::string& content, const std::string& what) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    try {
      load_checkpoint(path, m2, st2, ck2);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x10;
  expect_error(flipped, "checksum");
  expect_error(bytes.substr(0, bytes.size() - 100), "truncated");
  expect_error("not a checkpoint at all", "not a bitnet training checkpoint");
  expect_error(bytes.substr(0, 30), "truncated");
  fs::remove_all(dir);
}

TEST(Data, ShardRoundTripAndErrors) {
  const fs::path dir = temp_dir("shard");
  const std::string path = (dir / "t.bin").string();
  const std::vector<int32_t> ids = random_tokens(1000, 50, 4);
  write_token_shard(path, ids, 50);
  const TokenShard s = TokenShard::open(path, 50);
  ASSERT_EQ(s.size(), 1000);
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), s.ids()));
  EXPECT_THROW(TokenShard::open(path, 49), Error);  // another vocabulary
  const DataSplit d = split_shard(s, 0.1, 16);
  EXPECT_EQ(d.eval_n, 100);
  EXPECT_EQ(eval_windows(d, 16), 6);
  Rng a(5), b(5);
  std::vector<int32_t> i1, t1, i2, t2;
  draw_batch(d, 3, 16, a, i1, t1);
  draw_batch(d, 3, 16, b, i2, t2);
  EXPECT_EQ(i1, i2);
  for (size_t k = 0; k + 1 < 16; ++k) EXPECT_EQ(t1[k], i1[k + 1]);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "BNTOKS01 short";
  EXPECT_THROW(TokenShard::open(path, 50), Error);
  fs::remove_all(dir);
}

// A small run on text: resumed runs give the uninterrupted run's losses bit for bit.
class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_dir("resume");
    fs::create_directories(root_ / "data");
    std::ofstream f(root_ / "data" / "a.txt");
    for (int i = 0; i < 60; ++i)
      f << "The quick brown fox " << i << " jumps over the lazy dog while the cat sleeps in the sun.\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  TrainOptions options(const std::string& out) const {
    TrainOptions o;
    o.data = {(root_ / "data").string()};
    o.out_dir = (root_ / out).string();
    o.config = (root_ / "cfg.json").string();
    std::ofstream(o.config) << R"({"n_embd": 32, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "n_ff": 48})";
    o.steps = 8;
    o.batch = 2;
    o.seq = 16;
    o.accum = 2;
    o.sched.warmup = 2;
    o.eval_every = 4;
    o.eval_windows = 2;
    o.save_every = 2;
    return o;
  }
  static std::vector<std::string> log_lines(const std::string& dir) {
    std::ifstream in(fs::path(dir) / "train_log.jsonl");
    std::vector<std::string> v;
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }
  fs::path root_;
};

TEST_F(Resume, StopAndResumeGivesTheSameLosses) {
  const TrainOptions full = options("full");
  run_training(full, [](const TrainEvent&) {});
  TrainOptions part = options("part");
  part.stop_after = 3;
  run_training(part, [](const TrainEvent&) {});
  EXPECT_EQ(log_lines(part.out_dir).size(), 3u);
  part.stop_after = 0;
  part.resume = true;
  std::string said;
  run_training(part, [&](const TrainEvent& e) {
    if (e.kind == TrainEvent::kInfo) said += e.text + "\n";
  });
  EXPECT_NE(said.find("resuming at step 3 with the"), std::string::npos) << said;
  EXPECT_NE(said.find("the data files are not read again"), std::string::npos) << said;
  const auto a = log_lines(full.out_dir), b = log_lines(part.out_dir);
  ASSERT_EQ(a.size(), 8u);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(fs::exists(fs::path(part.out_dir) / "model.gguf"));
  // Other settings than the checkpoint's: refused.
  TrainOptions other = options("part");
  other.resume = true;
  other.sched.lr = 1e-2f;
  EXPECT_THROW(run_training(other, [](const TrainEvent&) {}), Error);
}

// A step whose gradient norm is not finite (the loss still finite) ends the run before it counts:
// no checkpoint holds its update, and resuming gives the uninterrupted run's losses.
TEST_F(Resume, NonFiniteGradientNormStopsBeforeTheCheckpoint) {
  const TrainOptions full = options("full");
  run_training(full, [](const TrainEvent&) {});
  TrainOptions bad = options("bad");
  bad.save_every = 1;
  bad.backend = [](TrainModel& m, AdamWState& s) {
    TrainBackend b = cpu_backend(m, s, 1);
    b.step = [calls = 0, step = b.step](const int32_t* in, const int32_t* tg, int64_t accum, int64_t batch,
                                        int64_t seq, float scale, float clip, float lr, float wd) mutable {
      StepStats st = step(in, tg, accum, batch, seq, scale, clip, lr, wd);
      if (++calls == 4) st.grad_norm = std::numeric_limits<double>::quiet_NaN();
      return st;
    };
    return b;
  };
  EXPECT_THROW(run_training(bad, [](const TrainEvent&) {}), Error);
  EXPECT_EQ(log_lines(bad.out_dir).size(), 3u);
  bad.backend = {};
  bad.resume = true;
  run_training(bad, [](const TrainEvent&) {});
  EXPECT_EQ(log_lines(bad.out_dir), log_lines(full.out_dir));
}

// --vocab pads the byte-level tokenizer's 320 tokens to the model's rows; fewer rows fail.
TEST_F(Resume, VocabPadsTheTokenizer) {
  TrainOptions o = options("vocab");
  o.steps = 1;
  o.sched.warmup = 0;
  o.eval_every = 0;
  o.save_every = 0;
  o.vocab = 500;
  run_training(o, [](const TrainEvent&) {});
  const GgufFile f = GgufFile::open((fs::path(o.out_dir) / "model.gguf").string());
  EXPECT_EQ(load_gguf_model(f)->cfg.n_vocab, 500);
  o.vocab = 100;
  o.overwrite = true;  // the same folder: only the vocabulary is to be refused
  try {
    run_training(o, [](const TrainEvent&) {});
    ADD_FAILURE() << "--vocab 100 was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokens for a model vocabulary of 100"), std::string::npos)
        << e.what();
  }
}

// A new run in a folder that holds a checkpoint is refused (it would replace it) unless asked to
// start again there; --resume continues it.
TEST_F(Resume, ANewRunDoesNotReplaceACheckpointUnasked) {
  TrainOptions o = options("again");
  o.stop_after = 2;
  run_training(o, [](const TrainEvent&) {});
  const auto before = fs::last_write_time(fs::path(o.out_dir) / "checkpoint.bin");
  try {
    run_training(o, [](const TrainEvent&) {});
    ADD_FAILURE() << "the checkpoint was replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds an earlier run's checkpoint.bin"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(fs::last_write_time(fs::path(o.out_dir) / "checkpoint.bin"), before);
  EXPECT_EQ(log_lines(o.out_dir).size(), 2u);
  o.overwrite = true;
  o.stop_after = 1;
  run_training(o, [](const TrainEvent&) {});
  EXPECT_EQ(log_lines(o.out_dir).size(), 1u);  // started again
}

// A warm-up as long as the run (or longer) is refused before anything is written.
TEST_F(Resume, WarmupNotShorterThanTheRunIsRefused) {
  TrainOptions o = options("warm");
  o.sched.warmup = o.steps;
  try {
    run_training(o, [](const TrainEvent&) {});
    ADD_FAILURE() << "a warm-up of the whole run was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--warmup 8"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / "checkpoint.bin"));
  o.sched.warmup = o.steps - 1;
  o.stop_after = 1;
  run_training(o, [](const TrainEvent&) {});
  EXPECT_EQ(log_lines(o.out_dir).size(), 1u);
}

TEST_F(Resume, KilledBetweenCheckpointsResumesBitIdentically) {
  const TrainOptions full = options("full");
  run_training(full, [](const TrainEvent&) {});
  const TrainOptions part = options("killed");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Killed after step 5 was logged: its last checkpoint is step 4.
    try {
      run_training(part, [](const TrainEvent& e) {
        if (e.kind == TrainEvent::kStep && e.step == 5) raise(SIGKILL);
      });
    } catch (...) {
    }
    _exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(log_lines(part.out_dir).size(), 5u);
  TrainOptions resumed = part;
  resumed.resume = true;
  run_training(resumed, [](const TrainEvent&) {});
  EXPECT_EQ(log_lines(full.out_dir), log_lines(part.out_dir));
}

}  // namespace
}  // namespace bitnet::train

namespace bitnet::train {
namespace {

// trainer -> HF folder (F32) -> `bitnet convert` -> engine: the trainer's logits; the folder also
// starts a new run (--init) with the same weights.
TEST(ExportHf, ConvertRoundTripGivesTheTrainerLogits) {
  const TokenizerVocab vocab = byte_level_vocab(320);
  ModelConfig c = small_config(320);
  c.n_embd = 64;
  c.head_dim = 16;
  c.rope_dim = 16;
  c.n_ff = 128;
  for (const bool tied : {false, true}) {
    TrainModel m = make_train_model(c, tied, true, 21);
    Rng r(4);
    for (float& p : m.params) p += 0.05f * r.normal();
    const int64_t S = 7;
    const auto in = random_tokens(S, 320, 5), tg = random_tokens(S, 320, 6);
    Workspace ws;
    forward_backward(nullptr, m, in.data(), tg.data(), 1, S, 1.0f, nullptr, ws);
    const fs::path dir = temp_dir("hf");
    export_hf(m, vocab, (dir / "hf").string(), DType::F32);
    // transformers quantizes the master weights on load (online mode), as the trainer does.
    const auto cfg = nlohmann::json::parse(std::ifstream(dir / "hf/config.json"));
    EXPECT_EQ(cfg.at("quantization_config").at("quantization_mode"), "online");
    EXPECT_EQ(cfg.at("quantization_config").at("linear_class"), "autobitlinear");
    const TrainModel back = load_hf_model((dir / "hf").string(), true);
    EXPECT_EQ(back.params, m.params);
    EXPECT_EQ(back.tied, tied);
    ConvertOptions co;
    co.embd_type = DType::F32;
    convert_hf((dir / "hf").string(), co).write((dir / "m.gguf").string());
    const GgufFile f = GgufFile::open((dir / "m.gguf").string());
    const auto model = load_gguf_model(f);
    Session s(*model, {.n_ctx = 64, .threads = 2, .kv_f16 = false});
    const float* lg = s.forward(in, true);
    double max_diff = 0;
    for (int64_t i = 0; i < S * 320; ++i)
      max_diff = std::max(max_diff, static_cast<double>(std::abs(lg[i] - ws.logits[static_cast<size_t>(i)])));
    EXPECT_LT(max_diff, 1e-4);
    // The exported tokenizer.json tokenizes as the vocabulary does.
    const Tokenizer a = Tokenizer::from_vocab(vocab),
                    b = Tokenizer::from_hf_json_file((dir / "hf/tokenizer.json").string());
    const std::string text = "Hello, world! \xc3\xa9t\xc3\xa9 <|end_of_text|> 123";
    EXPECT_EQ(a.encode(text), b.encode(text));
    EXPECT_EQ(b.bos_id(), 256);
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace bitnet::train
