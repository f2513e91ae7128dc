#include "training/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace bitnet::train {

namespace {

// 3 x 5 glyphs, one row per 3 bits (top row first).
struct Glyph {
  char c;
  uint8_t rows[5];
};
constexpr Glyph kFont[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'k', {4, 5, 6, 5, 5}}, {'M', {5, 7, 7, 5, 5}}, {'G', {7, 4, 5, 5, 7}}, {'a', {0, 7, 1, 7, 7}},
    {'e', {0, 7, 7, 4, 7}}, {'i', {2, 0, 2, 2, 2}}, {'l', {6, 2, 2, 2, 7}}, {'n', {0, 6, 5, 5, 5}},
    {'o', {0, 7, 5, 5, 7}}, {'r', {0, 7, 4, 4, 4}}, {'s', {0, 7, 6, 1, 7}}, {'t', {2, 7, 2, 2, 3}},
    {'v', {0, 5, 5, 5, 2}}, {' ', {0, 0, 0, 0, 0}},
};

void text(Image& img, int x, int y, const std::string& s, uint32_t color, int scale = 2) {
  for (char c : s) {
    for (const Glyph& g : kFont)
      if (g.c == c)
        for (int r = 0; r < 5; ++r)
          for (int b = 0; b < 3; ++b)
            if (g.rows[r] >> (2 - b) & 1)
              for (int dy = 0; dy < scale; ++dy)
                for (int dx = 0; dx < scale; ++dx) img.set(x + b * scale + dx, y + r * scale + dy, color);
    x += 4 * scale;
  }
}

void line(Image& img, double x0, double y0, double x1, double y1, uint32_t color) {
  const int n = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
  for (int i = 0; i <= n; ++i) {
    const double f = static_cast<double>(i) / n;
    const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * f)),
              y = static_cast<int>(std::lround(y0 + (y1 - y0) * f));
    img.set(x, y, color);
    img.set(x, y + 1, color);
  }
}

std::string tokens_label(double t) {
  char b[32];
  if (t >= 1e9)
    std::snprintf(b, sizeof b, "%.3gG", t / 1e9);
  else if (t >= 1e6)
    std::snprintf(b, sizeof b, "%.3gM", t / 1e6);
  else if (t >= 1e3)
    std::snprintf(b, sizeof b, "%.3gk", t / 1e3);
  else
    std::snprintf(b, sizeof b, "%.0f", t);
  return b;
}

}  // namespace

Image plot_loss_curve(const std::vector<LossPoint>& train, const std::vector<LossPoint>& eval, int width,
                      int height) {
  Image img(width, height);
  const int left = 60, right = 20, top = 40, bottom = 40;
  const int pw = width - left - right, ph = height - top - bottom;
  double x_max = 1, y_min = 1e30, y_max = -1e30;
  for (const auto* v : {&train, &eval})
    for (const LossPoint& p : *v)
      if (std::isfinite(p.loss)) {
        x_max = std::max(x_max, p.tokens);
        y_min = std::min(y_min, p.loss);
        y_max = std::max(y_max, p.loss);
      }
  if (y_min > y_max) y_min = 0, y_max = 1;
  if (y_max - y_min < 1e-6) y_max = y_min + 1;
  const double pad = 0.05 * (y_max - y_min);
  y_min = std::max(0.0, y_min - pad);
  y_max += pad;
  auto px = [&](double t) { return left + t / x_max * pw; };
  auto py = [&](double l) { return top + (y_max - l) / (y_max - y_min) * ph; };
  const uint32_t axis = 0x404040, grid = 0xE0E0E0, blue = 0x1F77B4, orange = 0xFF7F0E;
  for (int i = 0; i <= 5; ++i) {  // horizontal grid and loss ticks
    const double l = y_min + (y_max - y_min) * i / 5;
    const int y = static_cast<int>(py(l));
    for (int x = left; x < left + pw; ++x) img.set(x, y, grid);
    char b[16];
    std::snprintf(b, sizeof b, "%.2f", l);
    text(img, 4, y - 5, b, axis);
  }
  for (int i = 0; i <= 4; ++i) {  // token ticks
    const double t = x_max * i / 4;
    const int x = static_cast<int>(px(t));
    for (int y = top; y < top + ph; ++y) img.set(x, y, grid);
    const std::string s = tokens_label(t);
    text(img, std::min(x - static_cast<int>(s.size()) * 4, width - 8 * static_cast<int>(s.size())),
         top + ph + 8, s, axis);
  }
  for (int x = left; x <= left + pw; ++x) img.set(x, top + ph, axis);
  for (int y = top; y <= top + ph; ++y) img.set(left, y, axis);
  auto curve = [&](const std::vector<LossPoint>& v, uint32_t color) {
    for (size_t i = 1; i < v.size(); ++i)
      if (std::isfinite(v[i - 1].loss) && std::isfinite(v[i].loss))
        line(img, px(v[i - 1].tokens), py(v[i - 1].loss), px(v[i].tokens), py(v[i].loss), color);
    if (v.size() == 1)
      line(img, px(v[0].tokens) - 2, py(v[0].loss), px(v[0].tokens) + 2, py(v[0].loss), color);
  };
  curve(train, blue);
  curve(eval, orange);
  text(img, left, 12, "train loss", blue);
  text(img, left + 120, 12, "eval loss", orange);
  text(img, width - right - 6 * 8, 12, "tokens", axis);
  return img;
}

}  // namespace bitnet::train
