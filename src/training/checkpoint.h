#pragma once
// Training checkpoints: everything a run needs to continue exactly where it stopped (weights,
// AdamW moments, step, the data sampler's RNG, the run's settings). Written atomically (a
// temporary file, fsync, rename, fsync of the folder), so a crash leaves the previous checkpoint
// whole. File: "BNCKPT01", uint64 header length, the header (JSON), then params, m and v as fp32,
// then a 64-bit FNV-1a of everything before it. A truncated, corrupt or mismatched checkpoint is
// a clear error.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "training/adamw.h"
#include "training/model.h"

namespace bitnet::train {

struct Checkpoint {
  nlohmann::json settings;  // the run's settings (model config, batch, schedule, ...)
  int64_t step = 0;         // optimizer steps done
  uint64_t rng = 0;         // data sampler state
  int64_t tokens = 0;       // training tokens seen
};

// The model config as JSON (every ModelConfig field) and back (validated).
nlohmann::ordered_json config_to_json(const ModelConfig& c);
ModelConfig config_from_json(const nlohmann::json& j, const std::string& what);

void save_checkpoint(const std::string& path, const TrainModel& m, const AdamWState& opt,
                     const Checkpoint& ck);
// Fills m (from the header's model config), opt and ck.
void load_checkpoint(const std::string& path, TrainModel& m, AdamWState& opt, Checkpoint& ck);

}  // namespace bitnet::train
