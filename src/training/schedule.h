#pragma once
// Learning-rate and weight-decay schedules, as functions of the step (0-based) and the run length.
#include <cstdint>
#include <optional>
#include <string_view>

namespace bitnet::train {

enum class Schedule : uint8_t {
  kTwoStage,  // BitNet b1.58: linear warm-up; stage 1 decays lr linearly to 0.8 lr at the midpoint,
              // where it is cut to 0.4 lr and decays linearly to 0.04 lr at the last step (stage 2);
              // weight decay wd in stage 1, 0 in stage 2
  kCosine,    // linear warm-up, cosine decay to 0.1 lr at the last step; constant weight decay
  kConstant,  // linear warm-up, then constant; constant weight decay
};
std::optional<Schedule> schedule_from_name(std::string_view s);  // "two-stage", "cosine", "constant"
const char* schedule_name(Schedule s);

struct ScheduleConfig {
  Schedule kind = Schedule::kTwoStage;
  float lr = 1.5e-3f;
  float wd = 0.1f;
  int64_t warmup = 0;
  int64_t steps = 1;
};

float lr_at(const ScheduleConfig& s, int64_t step);
float wd_at(const ScheduleConfig& s, int64_t step);

}  // namespace bitnet::train
