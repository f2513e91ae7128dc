#pragma once
// `bitnet train`'s loop: data -> token shard, steps of (gradient accumulation, clipping, AdamW
// with the schedule), held-out evaluation, checkpoints, and the GGUF export at the end. On CPU a
// run resumed from a checkpoint gives the same losses, bit for bit, as one never interrupted.
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"
#include "training/backend.h"
#include "training/schedule.h"

namespace bitnet::train {

struct TrainOptions {
  std::vector<std::string> data;  // text files or folders
  std::string tokenizer;          // tokenizer.json / .tiktoken / model.gguf; empty: byte-level
  // Rows of the model's vocabulary: the tokenizer's tokens, then unused placeholders (as GPT-2's
  // 50,257 are padded to 50,304); 0: the next multiple of 64. Smaller than the tokenizer: an error.
  int64_t vocab = 0;
  std::string config = "tiny";  // tiny | small | gpt2-small | FILE.json
  std::string init;             // an HF BitNet folder (float master weights) to start from
  std::string out_dir;
  int64_t steps = 1000, batch = 8, seq = 128, accum = 1;
  ScheduleConfig sched;  // lr, wd, warmup, kind (steps is set from `steps`)
  float clip = 1.0f;     // global gradient-norm clip; 0: off
  uint64_t seed = 1;
  double eval_frac = 0.05;
  int64_t eval_every = 100, eval_windows = 16;
  int64_t save_every = 100;
  bool resume = false;
  bool overwrite = false;  // start again in an out_dir that holds a checkpoint (else refused)
  bool quantize = true;  // false: --float
  bool tied = false;
  int threads = 2;
  // I2_S and F32: the engine then computes the trainer's logits (smaller types round the values).
  DType ternary_type = DType::I2_S, embd_type = DType::F32;
  std::optional<DType> hf_dtype;  // also write OUT/hf (F32 or BF16 master weights)
  // This process's rank when several processes train one model (data parallel across hosts, the
  // backend's collectives joining them): every rank runs the same loop, so the data order and the
  // collective calls match, but only rank 0 reports and writes files (the token shard, the log,
  // checkpoints, exports); the others hold the tokens in memory.
  int rank = 0;
  // Where the steps run; empty: the CPU with `threads` threads (training/backend.h).
  BackendFactory backend;
  // Stop (as if interrupted, after saving) once this many steps have run in this process; 0: no
  // limit. For tests of resuming.
  int64_t stop_after = 0;
};

// What the loop reports: a step, an evaluation, a checkpoint, the export.
struct TrainEvent {
  enum Kind { kStep, kEval, kSaved, kExported, kInfo } kind = kStep;
  int64_t step = 0, steps = 0, tokens = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_second = 0, eta_seconds = 0;
  double eval_loss = 0, eval_ppl = 0;
  std::string text;  // a path or a message
};

// The named configs sized for a vocabulary; a FILE.json holds ModelConfig fields
// (training/checkpoint.h config_to_json's keys; missing keys take the tiny config's values).
ModelConfig train_config(const std::string& name_or_file, int64_t n_vocab);

// Runs the loop; `stop` (e.g. set by SIGINT) makes it save a checkpoint and return early.
void run_training(const TrainOptions& o, const std::function<void(const TrainEvent&)>& report,
                  const std::atomic<bool>* stop = nullptr);

}  // namespace bitnet::train
