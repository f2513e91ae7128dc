#pragma once
// `--device cpu|cuda` for the inference commands (run, chat, perplexity, bench). The default
// (auto) is CUDA when this build has it and a GPU is present, said once on stderr; `--device cuda`
// without one is an error naming the reason, never a silent CPU run.
//
// `--tp N` / `--tp-devices LIST`: tensor-parallel inference (src/cuda/infer_tp.h). `--tp N` runs
// N ranks on GPUs 0 .. N-1 (an error where there are fewer); `--tp-devices 0,1` names the GPUs,
// and one GPU repeated (`0,0`) puts every rank on it (same-device collectives: the TP code path on
// one GPU). `--tp 1` is the single-GPU session; `--tp-devices 0` is one NCCL rank.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "inference/engine.h"
#include "model/model.h"

namespace bitnet::cli {

void add_device_option(CLI::App* cmd, std::string& device);
// Resolves "auto"; throws for "cuda" where it cannot run.
bool use_cuda(const std::string& device);

struct TpOption {
  int tp = 0;  // 0: not given
  std::string devices;
  CLI::Option* devices_opt = nullptr;  // its count says whether --tp-devices was given (even empty)
  bool devices_given() const { return devices_opt != nullptr && devices_opt->count() > 0; }
  bool given() const { return tp != 0 || devices_given(); }
};
void add_tp_options(CLI::App* cmd, TpOption& o);
// The ranks' GPUs: empty for the single-GPU session (neither option, or --tp 1). Throws a clear
// error for a bad list, --tp larger than the GPU count, both options disagreeing, or tensor parallel
// on the CPU (cuda false).
std::vector<int> tp_devices(const TpOption& o, bool cuda);

// One line on stderr where n_ctx passes the context the model was trained on (its file's
// context_length): positions past it were never seen in training, and text degrades there.
void warn_past_trained_context(const ModelConfig& c, int64_t n_ctx);

// A Session (CPU, `threads`) or a CUDA session over n_ctx tokens; tensor parallel over `tp`'s GPUs
// where it is not empty; warns as above.
std::unique_ptr<Engine> make_engine(const Model& model, int64_t n_ctx, int threads, bool cuda,
                                    const std::vector<int>& tp = {});

}  // namespace bitnet::cli
