#pragma once
// Packed ternary storage formats other tools write. Each function converts between the packed
// bytes and plain int8 ternary values {-1, 0, +1}. Unpacking validates: a 2-bit code of 3 or a
// base-3 byte that decodes outside {0,1,2} is an error naming the element, never silent garbage.
//
// I2_S (bitnet.cpp, x86 layout, GGUF type 36)
//   Blocks of 128 weights in 32 bytes. Weight j of block b (0 <= j < 128) lives in byte
//   32*b + (j % 32) at bit shift 6 - 2*(j / 32). Code c = w + 1 (0, 1, 2 = -1, 0, +1).
//   After the n/4 packed bytes: one little-endian fp32 scale, then 28 bytes of padding
//   (tensor bytes = n/4 + 32). w_real = w * scale.
//
// TQ2_0 (ggml, GGUF type 35): 256-weight blocks of 66 bytes { uint8 qs[64]; fp16 d; }.
//   For half h (0, 1), byte 32*h + m (0 <= m < 32) holds weights 128*h + m + 32*n at bit shift 2*n
//   (n = 0..3), code c = w + 1. w_real = w * d.
//
// TQ1_0 (ggml, GGUF type 34): 256-weight blocks of 54 bytes { uint8 qs[48]; uint8 qh[4]; fp16 d; }.
//   Five trits per byte, first trit most significant: v = t0*81 + t1*27 + t2*9 + t3*3 + t4 with
//   t = w + 1, stored as ceil(v * 256 / 243) so trit n is recovered as ((uint8)(byte * 3^n) * 3) >> 8.
//     qs[m],      m < 32: weights m + 32*n          (n = 0..4)  -> weights   0..159
//     qs[32 + m], m < 16: weights 160 + m + 16*n    (n = 0..4)  -> weights 160..239
//     qh[j],      j < 4 : weights 240 + j + 4*n     (n = 0..3), fifth trit 0 -> weights 240..255
//   w_real = w * d.
//
// HF transformers packed uint8 (BitNet `pack_weights`): a weight [out, in] is stored as uint8
//   [R, in] with R = ceil(out / 4); packed row r holds rows r, r + R, r + 2R, r + 3R (those < out)
//   at bit offsets 0, 2, 4, 6, code c = w + 1; the scale lives in a separate `weight_scale` tensor.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet {

inline constexpr int64_t kI2sBlock = 128;
inline constexpr int64_t kTqBlock = 256;
inline constexpr size_t kTq2Bytes = 66;
inline constexpr size_t kTq1Bytes = 54;

size_t i2s_bytes(int64_t n);  // n / 4 + 32; n must be a multiple of 128
void pack_i2s(const int8_t* w, int64_t n, float scale, uint8_t* out);
// `what` names the tensor in error messages.
void unpack_i2s(const uint8_t* in, int64_t n, int8_t* w, float* scale, const std::string& what = "");
// Only the codes of elements [first, first + n) (n a multiple of 128), `in` pointing at their
// first block (byte first / 4 of the tensor); `first` only numbers elements in error messages.
void unpack_i2s_codes(const uint8_t* in, int64_t n, int8_t* w, const std::string& what, int64_t first);

size_t tq2_0_bytes(int64_t n);  // n must be a multiple of 256
// One scale for every block (a BitNet tensor has one); d stored as fp16.
void pack_tq2_0(const int8_t* w, int64_t n, float scale, uint8_t* out);
// block_scales (size n/256) receives each block's d as float.
// `first` numbers the elements in error messages when `in` is a slice of a larger tensor.
void unpack_tq2_0(const uint8_t* in, int64_t n, int8_t* w, float* block_scales,
                  const std::string& what = "", int64_t first = 0);

size_t tq1_0_bytes(int64_t n);
void pack_tq1_0(const int8_t* w, int64_t n, float scale, uint8_t* out);
// what / first as for TQ2_0, for one signature (quant/type_traits.h): TQ1_0 has no invalid codes.
void unpack_tq1_0(const uint8_t* in, int64_t n, int8_t* w, float* block_scales, const std::string& what = "",
                  int64_t first = 0);

size_t hf_packed_rows(int64_t out);  // ceil(out / 4)
void pack_hf(const int8_t* w, int64_t out, int64_t in, uint8_t* packed);
void unpack_hf(const uint8_t* packed, int64_t out, int64_t in, int8_t* w, const std::string& what = "");

}  // namespace bitnet
