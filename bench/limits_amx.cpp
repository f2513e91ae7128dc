// AMX-INT8 ceiling: four independent 16x16 int32 accumulator tiles fed by tiles already loaded
// (tdpbssd only, no memory traffic): 16 x 16 x 64 = 16,384 MAC per instruction.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace bitnet {

double amx_peak_macs_per_call() { return 4.0 * 16384; }

uint64_t amx_peak_kernel(int64_t iters) {
  struct alignas(64) Config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  asm volatile("" : : "m"(cfg) : "memory");  // keep the stores (see gemm_amx.cpp)
  _tile_loadconfig(&cfg);
  alignas(64) static thread_local int8_t src[4][1024];
  for (int i = 0; i < 4 * 1024; ++i) src[i / 1024][i % 1024] = static_cast<int8_t>(i * 7);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, src[0], 64);
  _tile_loadd(5, src[1], 64);
  _tile_loadd(6, src[2], 64);
  _tile_loadd(7, src[3], 64);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  alignas(64) int32_t out[256];
  _tile_stored(0, out, 64);
  _tile_release();
  return static_cast<uint64_t>(out[0]) + static_cast<uint64_t>(out[255]);
}

}  // namespace bitnet
