#include "quant/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace bitnet {

QuantError quant_error(const float* ref, const float* approx, size_t n) {
  QuantError e;
  double se = 0, sa = 0, sb = 0, dot = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = ref[i], b = approx[i], d = a - b;
    se += d * d;
    sa += a * a;
    sb += b * b;
    dot += a * b;
    e.max_abs_err = std::max(e.max_abs_err, std::fabs(d));
  }
  e.mse = n ? se / static_cast<double>(n) : 0.0;
  e.sqnr_db = se == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(sa / se);
  e.cosine = (sa == 0 && sb == 0) ? 1.0 : (sa == 0 || sb == 0) ? 0.0 : dot / std::sqrt(sa * sb);
  return e;
}

TernaryStats ternary_stats(const int8_t* q, size_t n) {
  TernaryStats s;
  s.n = n;
  for (size_t i = 0; i < n; ++i) {
    if (q[i] < 0) ++s.neg;
    else if (q[i] == 0) ++s.zero;
    else ++s.pos;
  }
  return s;
}

ScaleStats scale_stats(const float* v, size_t n) {
  ScaleStats s;
  s.count = n;
  if (!n) return s;
  s.min = s.max = v[0];
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    s.min = std::min<double>(s.min, v[i]);
    s.max = std::max<double>(s.max, v[i]);
    sum += v[i];
  }
  s.mean = sum / static_cast<double>(n);
  return s;
}

}  // namespace bitnet
