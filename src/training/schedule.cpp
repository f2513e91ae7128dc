#include "training/schedule.h"

#include <algorithm>
#include <cmath>

namespace bitnet::train {

std::optional<Schedule> schedule_from_name(std::string_view s) {
  if (s == "two-stage") return Schedule::kTwoStage;
  if (s == "cosine") return Schedule::kCosine;
  if (s == "constant") return Schedule::kConstant;
  return std::nullopt;
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::kTwoStage:
      return "two-stage";
    case Schedule::kCosine:
      return "cosine";
    case Schedule::kConstant:
      return "constant";
  }
  return "?";
}

namespace {
// Linear from a to b as f goes from 0 to 1.
float lerp(float a, float b, double f) {
  return static_cast<float>(a + (b - a) * std::clamp(f, 0.0, 1.0));
}
}  // namespace

float lr_at(const ScheduleConfig& s, int64_t step) {
  if (step < s.warmup) return s.lr * static_cast<float>(step + 1) / static_cast<float>(s.warmup);
  const int64_t mid = s.steps / 2;
  switch (s.kind) {
    case Schedule::kConstant:
      return s.lr;
    case Schedule::kCosine: {
      // The run's last step (steps - 1) is at the floor.
      const double f = std::clamp(
          static_cast<double>(step - s.warmup) / std::max<int64_t>(1, s.steps - 1 - s.warmup), 0.0, 1.0);
      return s.lr * static_cast<float>(0.1 + 0.9 * 0.5 * (1.0 + std::cos(3.141592653589793 * f)));
    }
    case Schedule::kTwoStage:
      if (step < mid)
        return lerp(s.lr, 0.8f * s.lr,
                    static_cast<double>(step - s.warmup) / std::max<int64_t>(1, mid - s.warmup));
      return lerp(0.4f * s.lr, 0.04f * s.lr,
                  static_cast<double>(step - mid) / std::max<int64_t>(1, s.steps - 1 - mid));
  }
  return s.lr;
}

float wd_at(const ScheduleConfig& s, int64_t step) {
  if (s.kind == Schedule::kTwoStage && step >= s.steps / 2) return 0.0f;
  return s.wd;
}

}  // namespace bitnet::train
