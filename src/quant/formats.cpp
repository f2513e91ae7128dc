#include "quant/formats.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace bitnet {
namespace {

inline uint8_t code_of(int8_t w) { return static_cast<uint8_t>(w + 1); }

[[noreturn]] void bad_code(const std::string& fmt_name, const std::string& what, int64_t idx,
                           unsigned code) {
  fail("{} tensor{}{}: invalid ternary code {} at element {}", fmt_name, what.empty() ? "" : " ",
       what, code, idx);
}

void check_ternary(const int8_t* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    BN_CHECK(w[i] >= -1 && w[i] <= 1, "value {} at {} is not ternary", w[i], i);
}

// 5 trits, first most significant, to one byte: ceil(v * 256 / 243).
inline uint8_t pack_trits(const uint8_t* t, int count) {
  unsigned v = 0;
  for (int i = 0; i < count; ++i) v = v * 3 + t[i];
  for (int i = count; i < 5; ++i) v *= 3;
  return static_cast<uint8_t>((v * 256 + 242) / 243);
}

inline uint8_t trit(uint8_t byte, int n) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const uint8_t q = static_cast<uint8_t>(byte * kPow3[n]);
  return static_cast<uint8_t>((static_cast<unsigned>(q) * 3) >> 8);
}

}  // namespace

// ---- I2_S -------------------------------------------------------------------------------------

size_t i2s_bytes(int64_t n) {
  if (n <= 0 || n % kI2sBlock) fail("I2_S needs a multiple of {} elements, got {}", kI2sBlock, n);
  return static_cast<size_t>(n / 4 + 32);
}

void pack_i2s(const int8_t* w, int64_t n, float scale, uint8_t* out) {
  const size_t bytes = i2s_bytes(n);
  check_ternary(w, n);
  std::memset(out, 0, bytes);
  for (int64_t b = 0; b < n / kI2sBlock; ++b)
    for (int j = 0; j < kI2sBlock; ++j)
      out[32 * b + j % 32] |= static_cast<uint8_t>(code_of(w[kI2sBlock * b + j]) << (6 - 2 * (j / 32)));
  std::memcpy(out + n / 4, &scale, sizeof(float));
}

void unpack_i2s_codes(const uint8_t* in, int64_t n, int8_t* w, const std::string& what, int64_t first) {
  if (n < 0 || n % kI2sBlock) fail("I2_S needs a multiple of {} elements, got {}", kI2sBlock, n);
  // Branch-free over each block (this runs over every weight at load); code 3 is looked for
  // afterwards only in a block that has one.
  for (int64_t b = 0; b < n / kI2sBlock; ++b) {
    unsigned bad = 0;
    for (int q = 0; q < 4; ++q)
      for (int p = 0; p < 32; ++p) {
        const unsigned c = (in[32 * b + p] >> (6 - 2 * q)) & 3;
        bad |= c == 3;
        w[kI2sBlock * b + 32 * q + p] = static_cast<int8_t>(static_cast<int>(c) - 1);
      }
    if (bad)
      for (int j = 0; j < kI2sBlock; ++j)
        if (w[kI2sBlock * b + j] == 2) bad_code("I2_S", what, first + kI2sBlock * b + j, 3);
  }
}

void unpack_i2s(const uint8_t* in, int64_t n, int8_t* w, float* scale, const std::string& what) {
  i2s_bytes(n);
  unpack_i2s_codes(in, n, w, what, 0);
  std::memcpy(scale, in + n / 4, sizeof(float));
}

// ---- TQ2_0 and TQ1_0 ----------------------------------------------------------------------------
// Both are 256-weight blocks of packed codes with the fp16 scale d in the last two bytes; only the
// code layout inside a block differs, so one skeleton serves both.

namespace {

size_t tq_bytes(const char* name, size_t block_bytes, int64_t n) {
  if (n <= 0 || n % kTqBlock) fail("{} needs a multiple of {} elements, got {}", name, kTqBlock, n);
  return static_cast<size_t>(n / kTqBlock) * block_bytes;
}

template <size_t kBytes, typename PackCodes>
void pack_tq(const char* name, const int8_t* w, int64_t n, float scale, uint8_t* out, PackCodes pack_codes) {
  const size_t bytes = tq_bytes(name, kBytes, n);
  check_ternary(w, n);
  std::memset(out, 0, bytes);
  const uint16_t d = f32_to_f16(scale);
  for (int64_t b = 0; b < n / kTqBlock; ++b) {
    uint8_t* blk = out + b * kBytes;
    pack_codes(w + b * kTqBlock, blk);
    std::memcpy(blk + kBytes - 2, &d, 2);
  }
}

// unpack_codes(blk, x, b) decodes block b's codes (validating them) into x.
template <size_t kBytes, typename UnpackCodes>
void unpack_tq(const char* name, const uint8_t* in, int64_t n, int8_t* w, float* block_scales,
               UnpackCodes unpack_codes) {
  tq_bytes(name, kBytes, n);
  for (int64_t b = 0; b < n / kTqBlock; ++b) {
    const uint8_t* blk = in + b * kBytes;
    unpack_codes(blk, w + b * kTqBlock, b);
    uint16_t d;
    std::memcpy(&d, blk + kBytes - 2, 2);
    block_scales[b] = f16_to_f32(d);
  }
}

}  // namespace

size_t tq2_0_bytes(int64_t n) {
  return tq_bytes("TQ2_0", kTq2Bytes, n);
}

void pack_tq2_0(const int8_t* w, int64_t n, float scale, uint8_t* out) {
  pack_tq<kTq2Bytes>("TQ2_0", w, n, scale, out, [](const int8_t* x, uint8_t* blk) {
    for (int h = 0; h < 2; ++h)
      for (int m = 0; m < 32; ++m)
        for (int s = 0; s < 4; ++s)
          blk[32 * h + m] |= static_cast<uint8_t>(code_of(x[128 * h + m + 32 * s]) << (2 * s));
  });
}

void unpack_tq2_0(const uint8_t* in, int64_t n, int8_t* w, float* block_scales, const std::string& what,
                  int64_t first) {
  unpack_tq<kTq2Bytes>("TQ2_0", in, n, w, block_scales, [&](const uint8_t* blk, int8_t* x, int64_t b) {
    unsigned bad = 0;
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s)
        for (int m = 0; m < 32; ++m) {
          const unsigned c = (blk[32 * h + m] >> (2 * s)) & 3;
          bad |= c == 3;
          x[128 * h + m + 32 * s] = static_cast<int8_t>(static_cast<int>(c) - 1);
        }
    if (bad)
      for (int j = 0; j < kTqBlock; ++j)
        if (x[j] == 2) bad_code("TQ2_0", what, first + b * kTqBlock + j, 3);
  });
}

size_t tq1_0_bytes(int64_t n) {
  return tq_bytes("TQ1_0", kTq1Bytes, n);
}

void pack_tq1_0(const int8_t* w, int64_t n, float scale, uint8_t* out) {
  pack_tq<kTq1Bytes>("TQ1_0", w, n, scale, out, [](const int8_t* x, uint8_t* blk) {
    uint8_t t[5];
    for (int m = 0; m < 32; ++m) {
      for (int i = 0; i < 5; ++i) t[i] = code_of(x[m + 32 * i]);
      blk[m] = pack_trits(t, 5);
    }
    for (int m = 0; m < 16; ++m) {
      for (int i = 0; i < 5; ++i) t[i] = code_of(x[160 + m + 16 * i]);
      blk[32 + m] = pack_trits(t, 5);
    }
    for (int j = 0; j < 4; ++j) {
      for (int i = 0; i < 4; ++i) t[i] = code_of(x[240 + j + 4 * i]);
      blk[48 + j] = pack_trits(t, 4);
    }
  });
}

void unpack_tq1_0(const uint8_t* in, int64_t n, int8_t* w, float* block_scales, const std::string&, int64_t) {
  // Every byte decodes to trits in {0,1,2} by construction ((q*3)>>8 <= 2), so nothing to reject
  // (and no element to name).
  unpack_tq<kTq1Bytes>("TQ1_0", in, n, w, block_scales, [](const uint8_t* blk, int8_t* x, int64_t) {
    for (int m = 0; m < 32; ++m)
      for (int i = 0; i < 5; ++i) x[m + 32 * i] = static_cast<int8_t>(trit(blk[m], i) - 1);
    for (int m = 0; m < 16; ++m)
      for (int i = 0; i < 5; ++i) x[160 + m + 16 * i] = static_cast<int8_t>(trit(blk[32 + m], i) - 1);
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 4; ++i) x[240 + j + 4 * i] = static_cast<int8_t>(trit(blk[48 + j], i) - 1);
  });
}

// ---- HF packed uint8 --------------------------------------------------------------------------

size_t hf_packed_rows(int64_t out) { return static_cast<size_t>((out + 3) / 4); }

void pack_hf(const int8_t* w, int64_t out, int64_t in, uint8_t* packed) {
  const int64_t R = static_cast<int64_t>(hf_packed_rows(out));
  check_ternary(w, out * in);
  std::memset(packed, 0, static_cast<size_t>(R * in));
  for (int64_t row = 0; row < out; ++row) {
    const int64_t r = row % R, s = row / R;
    for (int64_t c = 0; c < in; ++c)
      packed[r * in + c] |= static_cast<uint8_t>(code_of(w[row * in + c]) << (2 * s));
  }
}

void unpack_hf(const uint8_t* packed, int64_t out, int64_t in, int8_t* w, const std::string& what) {
  const int64_t R = static_cast<int64_t>(hf_packed_rows(out));
  for (int64_t row = 0; row < out; ++row) {
    const int64_t r = row % R, s = row / R;
    for (int64_t c = 0; c < in; ++c) {
      const unsigned code = (packed[r * in + c] >> (2 * s)) & 3;
      if (code == 3) bad_code("HF packed", what, row * in + c, code);
      w[row * in + c] = static_cast<int8_t>(static_cast<int>(code) - 1);
    }
  }
}

}  // namespace bitnet
