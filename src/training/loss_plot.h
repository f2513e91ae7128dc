#pragma once
// The loss-curve picture: train loss (blue) and held-out loss (orange) against training tokens,
// with axis ticks labelled in a small built-in pixel font. Rewritten at each evaluation.
#include <string>
#include <vector>

#include "core/png.h"

namespace bitnet::train {

struct LossPoint {
  double tokens = 0, loss = 0;
};

Image plot_loss_curve(const std::vector<LossPoint>& train, const std::vector<LossPoint>& eval,
                      int width = 800, int height = 500);

}  // namespace bitnet::train
