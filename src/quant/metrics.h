#pragma once
// Quality of a quantized tensor against its original, and statistics of ternary codes.
#include <cstddef>
#include <cstdint>

namespace bitnet {

struct QuantError {
  double mse = 0;          // mean (a - b)^2
  double sqnr_db = 0;      // 10 log10(sum a^2 / sum (a-b)^2); +inf when exact
  double cosine = 0;       // <a,b> / (|a| |b|); 1 when both are zero
  double max_abs_err = 0;
};
QuantError quant_error(const float* ref, const float* approx, size_t n);

struct TernaryStats {
  size_t n = 0, neg = 0, zero = 0, pos = 0;
  double sparsity() const { return n ? static_cast<double>(zero) / static_cast<double>(n) : 0.0; }
};
TernaryStats ternary_stats(const int8_t* q, size_t n);

struct ScaleStats {
  size_t count = 0;
  double min = 0, max = 0, mean = 0;
};
ScaleStats scale_stats(const float* s, size_t n);

}  // namespace bitnet
