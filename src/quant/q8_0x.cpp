#include "quant/q8_0x.h"

#include <cstring>

#include "core/error.h"

namespace bitnet {

void repack_q8_0x_rows(const uint8_t* src, int64_t rows, int64_t n, uint8_t* dst) {
  if (n <= 0 || n % kQ8xValues)
    fail("Q8_0X: row of {} values is not a whole number of {}-value superblocks", n, kQ8xValues);
  const int64_t sbs = rows * (n / kQ8xValues);  // rows are whole superblocks: one flat run
  for (int64_t s = 0; s < sbs; ++s) {
    const uint8_t* in = src + s * kQ8xBytes;
    uint8_t* out = dst + s * kQ8xBytes;
    for (int64_t b = 0; b < kQ8xBlocks; ++b) {
      const uint8_t* blk = in + b * 34;
      std::memcpy(out + 2 * b, blk, 2);
      for (int64_t i = 0; i < 32; ++i)
        out[kQ8xScaleBytes + q8x_quant_offset(32 * b + i)] = static_cast<uint8_t>(blk[2 + i] ^ 0x80);
    }
  }
}

}  // namespace bitnet
