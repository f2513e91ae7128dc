// The fused decode step (infer_decode.h): one persistent block per SM runs every layer.
//
// Per layer, with a grid-wide barrier after each phase:
//   1. every block: RMSNorm + int8 quantization of x (the whole row, in registers); its qkv rows
//   2. attention scores: units (token, KV head, key range) spread over the blocks; a unit ropes
//      its queries (and, where its range holds the new position, the new key, which it stores
//      with the value in the cache)
//   3. attention values: units as in 2; each takes the softmax over all of its row's scores, its
//      range's probabilities and weighted values; the last unit of a (token, KV head) to finish
//      adds the ranges' partial outputs in range order
//   4. every block: sub-norm + quantization of the attention output; its o rows, added to x
//   5. every block: norm + quantization of x; its gate and up rows, act(gate) * up into h
//   6. every block: sub-norm + quantization of h; its down rows, added to x
// The weights of the block's rows of each matrix are streamed into a ring of shared-memory
// slots, each filled by one bulk copy (two for a gate|up piece) that completes on the slot's
// mbarrier; a slot is refilled with the next piece as soon as its rows are computed, so the
// copies run ahead through barriers and attention.
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>

#include "cuda/check.h"
#include "cuda/infer_decode.h"
#include "cuda/infer_device.cuh"
#include "cuda/reduce.cuh"

namespace bitnet::cuda::infer {

const char* const kDecodeTimerNames[kDecodeTimers] = {
    "fused: norm + quantization",
    "fused: waiting for weights",
    "fused: ternary products",
    "fused: grid barriers",
    "fused: attention (one key range: all of it; more: scores)",
    "fused: attention values (more than one key range)"};

namespace {

enum Timer { kTQuant, kTWait, kTRows, kTBarrier, kTScores, kTValues };

// Profiling: thread 0 of block 0 adds the cycles since its last tick to `timing[part]`.
struct Ticker {
  unsigned long long* timing;
  long long last;
  __device__ void operator()(int part) {
    if (timing == nullptr || blockIdx.x != 0 || threadIdx.x != 0) return;
    const long long now = clock64();
    timing[part] += static_cast<unsigned long long>(now - last);
    last = now;
  }
};

constexpr int kThreads = 512, kWarps = kThreads / 32;
constexpr int kPer = 16;  // row values per thread in the quantization: k <= 8,192
constexpr int64_t kSlotBytes = 24 * 1024;
constexpr int64_t kMinWorkBytes = 64 * 1024;
// Attention scratch in the work area (floats): cos/sin, queries, the new key, the value
// groups' partial outputs; then the probabilities of a range (G * chunk).
// Keys per attention unit (token, KV head, key range) below which a step takes fewer ranges: a
// range of 256 keys is about as fast to read as a grid barrier and the ranges' sum take.
constexpr int64_t kKeysPerRange = 256;
constexpr int64_t kAttnFixedFloats = 128 + 8 * 128 + 128 + 4096;
constexpr size_t kReservedSmem = 2048;  // beyond the ring and the work area: all of the below
constexpr int kMaxSlots = 24;
constexpr int64_t kMaxScales = 2048;  // row scales of a layer per block
// After the ring and the work area: dq [8], the slots' mbarriers, then the layers' pointers.
constexpr size_t kDynamicExtra = 32 + 8 * kMaxSlots;
static_assert(sizeof(DecodeLayer) % 8 == 0);

// ---- shared-memory ring: bulk copies completing on mbarriers -----------------------------------

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_expect(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ bool mbar_try(uint64_t* bar, unsigned parity) {
  unsigned ok;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
      : "=r"(ok)
      : "r"(smem_addr(bar)), "r"(parity)
      : "memory");
  return ok != 0;
}
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
}
// Orders this thread's (and, after a block barrier, the block's) generic accesses of shared memory
// before later bulk copies into it.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// ---- grid barrier (all blocks resident: a cooperative launch) -----------------------------------

__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// bar[0] counts arrivals, bar[1] is the generation. The last block to arrive resets the count
// and advances the generation; the others wait for it. Thread 0 of each block keeps the
// generation it waits past in `gen` (read once at the start: it cannot move before every block
// has arrived), so a barrier costs one atomic and the polling. Nothing is reset between launches.
__device__ __forceinline__ unsigned arrive(unsigned* p) {
  unsigned old;
  asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(p) : "memory");
  return old;
}

__device__ void grid_sync(unsigned* bar, unsigned& gen) {
  __syncthreads();
  if (threadIdx.x == 0) {
    if (arrive(bar) == gridDim.x - 1) {
      atomicExch(bar, 0u);
      st_release(bar + 1, gen + 1);
    } else {
      while (ld_acquire(bar + 1) == gen) {
      }
    }
    ++gen;
  }
  __syncthreads();
}

// ---- the block's rows of a matrix ---------------------------------------------------------------

// Rows [r0, r1) of piece `piece` (of `pieces`) of this block's share of n rows.
__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

__device__ __forceinline__ void piece_rows(int64_t n, int pieces, int piece, int64_t& r0, int64_t& r1) {
  const int64_t a = n * blockIdx.x / gridDim.x, e = n * (blockIdx.x + 1) / gridDim.x;
  const int64_t per = (e - a + pieces - 1) / pieces;
  r0 = min64(e, a + piece * per);
  r1 = min64(e, r0 + per);
}

__device__ __forceinline__ const DevTernary& layer_matrix(const DecodeLayer& L, int mat) {
  return mat == 0 ? L.qkv : mat == 1 ? L.o : mat == 2 ? L.gate_up : L.down;
}

struct Ring {
  const DecodeLayer* layers;  // the layers' pointers, copied into shared memory at the start
  uint8_t* slots;
  uint64_t* bars;
  int n_slots;
  int64_t slot_bytes;
  int per_layer;  // items (pieces) per layer
  int64_t total;  // items per step
  int64_t next;   // the next item to consume (every thread)
};

// Thread 0: starts the copy of item k into its slot.
__device__ void issue(const DecodeArgs& a, const DecodePlan& p, const Ring& r, int64_t k) {
  const int il = static_cast<int>(k / r.per_layer);
  int piece = static_cast<int>(k % r.per_layer), mat = 0;
  while (piece >= p.pieces[mat]) piece -= p.pieces[mat++];
  const DevTernary& w = layer_matrix(r.layers[il], mat);
  const bool paired = mat == 2;
  const int64_t n = paired ? w.n / 2 : w.n, rb = w.k_pad / 4;
  int64_t r0, r1;
  piece_rows(n, p.pieces[mat], piece, r0, r1);
  const int s = static_cast<int>(k % r.n_slots);
  uint8_t* dst = r.slots + s * r.slot_bytes;
  const unsigned bytes = static_cast<unsigned>((r1 - r0) * rb);
  mbar_expect(r.bars + s, paired ? 2 * bytes : bytes);
  if (bytes == 0) return;
  const uint8_t* src = reinterpret_cast<const uint8_t*>(w.w);
  bulk_copy(dst, src + r0 * rb, bytes, r.bars + s);
  if (paired) bulk_copy(dst + bytes, src + (n + r0) * rb, bytes, r.bars + s);
}

// ---- the layer's small operands: row scales in shared memory, the next layer in L2 ---------------

__device__ __forceinline__ void cp_async4(float* dst, const float* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;" ::: "memory");
}

// This block's rows [a, e) of a matrix of n (logical) rows.
__device__ __forceinline__ void block_span(int64_t n, int64_t& a, int64_t& e) {
  a = n * blockIdx.x / gridDim.x;
  e = n * (blockIdx.x + 1) / gridDim.x;
}

// Where matrix mat's scales start in the block's scale array: qkv, o, gate then up, down.
__device__ __forceinline__ int scale_offset(const DecodeLayer& L, int mat) {
  int off = 0;
  for (int i = 0; i < mat; ++i) {
    const DevTernary& w = layer_matrix(L, i);
    int64_t a, e;
    block_span(i == 2 ? w.n / 2 : w.n, a, e);
    off += static_cast<int>((i == 2 ? 2 : 1) * (e - a));
  }
  return off;
}

// Starts the copies of the block's row scales of every matrix of layer L into scl (cp.async;
// quantize_rows waits for them before its last barrier).
__device__ void load_scales(const DecodeLayer& L, float* scl) {
  int off = 0;
  for (int mat = 0; mat < 4; ++mat) {
    const DevTernary& w = layer_matrix(L, mat);
    const bool paired = mat == 2;
    const int64_t n = paired ? w.n / 2 : w.n;
    int64_t a, e;
    block_span(n, a, e);
    const int cnt = static_cast<int>(e - a);
    for (int i = threadIdx.x; i < cnt; i += kThreads) {
      cp_async4(scl + off + i, w.row_scale + a + i);
      if (paired) cp_async4(scl + off + cnt + i, w.row_scale + n + a + i);
    }
    off += paired ? 2 * cnt : cnt;
  }
  asm volatile("cp.async.commit_group;" ::: "memory");
}

// This block's share of `bytes` at p, fetched into L2 (no registers wait for it).
__device__ void prefetch_l2(const void* p, int64_t bytes) {
  if (p == nullptr) return;
  const char* c = static_cast<const char*>(p);
  const int64_t lines = (bytes + 127) / 128, step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t l = blockIdx.x + static_cast<int64_t>(gridDim.x) * threadIdx.x; l < lines; l += step)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + l * 128));
}

// Layer il's norms, row scales and the step's keys and values (read within a few microseconds by
// every block, and evicted from L2 by the weights streamed since the last step).
__device__ void prefetch_layer(const DecodeArgs& a, const DecodeLayer& L, int il, int m) {
  const DecodeShape& sh = a.shape;
  const int64_t qd = sh.n_head * sh.head_dim;
  prefetch_l2(L.qkv.row_scale, (L.qkv.n + L.o.n + L.gate_up.n + L.down.n) * 4);
  prefetch_l2(L.attn_norm, sh.d * 4);
  prefetch_l2(L.attn_sub_norm, qd * 4);
  prefetch_l2(L.ffn_norm, sh.d * 4);
  prefetch_l2(L.ffn_sub_norm, sh.ff * 4);
  for (int t = 0; t < m; ++t)
    for (int64_t h = 0; h < sh.n_head_kv; ++h) {
      const int64_t at = a.kv.at(a.slot[t], il, h, 0), bytes = (a.pos[t] + 1) * sh.head_dim * 2;
      prefetch_l2(a.kv.k + at, bytes);
      prefetch_l2(a.kv.v + at, bytes);
    }
}

// ---- quantization of a row (every block, the whole row) -----------------------------------------

// Row i of the int8 activations in shared memory is stored per 64-column chunk c and 16-column
// part j at ((j * chunks + c) * 16): lane c of a warp reading part j of its chunk reads 16
// consecutive bytes after its neighbour's (no bank conflicts).
__device__ __forceinline__ int act_offset(int i, int chunks) {
  return ((i & 63) >> 4) * chunks * 16 + (i >> 6) * 16 + (i & 15);
}

// Tokens t < m of `in` (row stride ld, k <= kPer * kThreads values): RMSNorm with `norm` (null:
// none), then act_quant's per-token int8 quantization into act (k_pad bytes a token) and
// dq[t] = 1 / s. The row stays in registers between the passes.
__device__ __noinline__ void quantize_rows(const float* in, int64_t ld, int m, int k, int k_pad,
                                           const float* norm, float eps, int8_t* act, float* dq) {
  const int chunks = k_pad / 64, tid = static_cast<int>(threadIdx.x);
  for (int t = 0; t < m; ++t) {
    const float* row = in + t * ld;
    float v[kPer], nw[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = tid + i * kThreads;
      v[i] = idx < k ? __ldcg(row + idx) : 0.0f;
      nw[i] = norm && idx < k ? __ldg(norm + idx) : 0.0f;  // loaded before the reduction waits
    }
    double ss = 0;
#pragma unroll
    for (int i = 0; i < kPer; ++i) ss += static_cast<double>(v[i]) * v[i];
    float amax = 0;
    if (norm) {
      ss = dev::block_reduce(ss, dev::Sum{}, 0.0);
      const float mean = static_cast<float>(ss / static_cast<double>(k));
      const float scale = 1.0f / sqrtf(mean + eps);
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int idx = tid + i * kThreads;
        if (idx < k) v[i] = v[i] * scale * nw[i];
        amax = fmaxf(amax, fabsf(v[i]));
      }
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) amax = fmaxf(amax, fabsf(v[i]));
    }
    amax = dev::block_reduce(amax, dev::Max{}, 0.0f);
    const float s = 127.0f / fmaxf(amax, 1e-5f);
    int8_t* q = act + t * k_pad;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = tid + i * kThreads;
      if (idx < k)
        q[act_offset(idx, chunks)] = static_cast<int8_t>(fminf(fmaxf(rintf(v[i] * s), -128.0f), 127.0f));
    }
    for (int idx = k + tid; idx < k_pad; idx += kThreads) q[act_offset(idx, chunks)] = 0;
    if (tid == 0) dq[t] = 1.0f / s;
  }
  cp_async_wait_all();  // the layer's row scales (load_scales), for the products that follow
  __syncthreads();
}

// ---- products of the block's rows from the ring ---------------------------------------------------

// acc[t] = sum over the row of w * x_t (exact): the row's 2-bit codes (c = w + 1) in shared memory,
// signed (c - 1 per byte) and multiplied by the activations with dp4a; every lane gets the sums.
template <int MT>
__device__ __forceinline__ void row_dot(const uint4* wrow, int64_t chunks, const int8_t* act, int64_t k_pad,
                                        int m, int (&acc)[MT]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int t = 0; t < MT; ++t) acc[t] = 0;
  for (int64_t c = lane; c < chunks; c += 32) {
    const uint4 wv = wrow[c];
    const uint32_t ws[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int w[4];
#pragma unroll
      for (int s = 0; s < 4; ++s)
        w[s] = static_cast<int>(__vsub4((ws[j] >> (2 * s)) & 0x03030303u, 0x01010101u));
#pragma unroll
      for (int t = 0; t < MT; ++t) {
        if (t >= m) break;
        const int4 xv = *reinterpret_cast<const int4*>(act + t * k_pad + (j * chunks + c) * 16);
        acc[t] = __dp4a(w[0], xv.x, acc[t]);
        acc[t] = __dp4a(w[1], xv.y, acc[t]);
        acc[t] = __dp4a(w[2], xv.z, acc[t]);
        acc[t] = __dp4a(w[3], xv.w, acc[t]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < MT; ++t)
    for (int o = 16; o > 0; o >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
}

enum Epilogue { kStore, kAdd, kGated };

// The block's rows of matrix `mat` of layer il, piece by piece from the ring, against the int8
// activations in act / dq: y[t][row] = float(acc) * (row_scale * dq[t]), stored, added, or (gate
// and up rows together) act(gate) * up stored.
template <int MT, int kEpi>
__device__ void block_rows(const DecodeArgs& a, const DecodePlan& p, Ring& r, int il, int mat,
                           const int8_t* act, const float* dq, int m, float* y, int64_t ldy, const float* scl,
                           Ticker& tick) {
  const DevTernary& w = layer_matrix(r.layers[il], mat);
  const bool paired = kEpi == kGated;
  const int64_t n = paired ? w.n / 2 : w.n, rb = w.k_pad / 4, chunks = w.k_pad / 64;
  int64_t span0, span1;
  block_span(n, span0, span1);
  const float* sc_rows = scl + scale_offset(r.layers[il], mat) - span0;  // [row]: gate / plain
  const float* su_rows = sc_rows + (span1 - span0);                      // [row]: up
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  for (int piece = 0; piece < p.pieces[mat]; ++piece, ++r.next) {
    const int s = static_cast<int>(r.next % r.n_slots);
    while (!mbar_try(r.bars + s, static_cast<unsigned>((r.next / r.n_slots) & 1))) {
    }
    tick(kTWait);
    int64_t r0, r1;
    piece_rows(n, p.pieces[mat], piece, r0, r1);
    const uint8_t* base = r.slots + s * r.slot_bytes;
    const int64_t rows = r1 - r0;
    for (int64_t i = warp; i < rows; i += kWarps) {
      const int64_t row = r0 + i;
      // The epilogue's operands, loaded before the products hide their latency.
      const float sc = sc_rows[row], su = paired ? su_rows[row] : 0.0f;
      const int tl = lane < m ? lane : 0;
      const float dql = dq[tl];
      float* o = y + tl * ldy + row;
      const float prev = kEpi == kAdd && lane < m ? __ldcg(o) : 0.0f;
      int acc[MT];
      row_dot<MT>(reinterpret_cast<const uint4*>(base + i * rb), chunks, act, w.k_pad, m, acc);
      int mine = acc[0];
#pragma unroll
      for (int t = 1; t < MT; ++t)
        if (lane == t) mine = acc[t];
      if constexpr (kEpi == kGated) {
        int up[MT];
        row_dot<MT>(reinterpret_cast<const uint4*>(base + (rows + i) * rb), chunks, act, w.k_pad, m, up);
        int mine_up = up[0];
#pragma unroll
        for (int t = 1; t < MT; ++t)
          if (lane == t) mine_up = up[t];
        if (lane < m) {
          const float g = static_cast<float>(mine) * (sc * dql);
          const float u = static_cast<float>(mine_up) * (su * dql);
          *o = gated(g, u, a.act);
        }
      } else if (lane < m) {
        const float v = static_cast<float>(mine) * (sc * dql);
        *o = kEpi == kAdd ? prev + v : v;
      }
    }
    __syncthreads();  // the slot's rows are read: refill it
    if (threadIdx.x == 0 && r.next + r.n_slots < r.total) {
      fence_proxy_async();
      issue(a, p, r, r.next + r.n_slots);
    }
    tick(kTRows);
  }
}

// ---- attention ------------------------------------------------------------------------------------

struct Unit {
  int t, kvh, range;
  int64_t pos, n_kv, j0, j1;
};

__device__ __forceinline__ Unit unit_at(const DecodeArgs& a, int u, int splits) {
  Unit x;
  const int per_tok = static_cast<int>(a.shape.n_head_kv) * splits;
  x.t = u / per_tok;
  x.kvh = u % per_tok / splits;
  x.range = u % splits;
  x.pos = a.pos[x.t];
  x.n_kv = x.pos + 1;
  const int64_t chunk = (x.n_kv + splits - 1) / splits;
  x.j0 = min64(x.n_kv, x.range * chunk);
  x.j1 = min64(x.n_kv, x.j0 + chunk);
  return x;
}

__device__ __forceinline__ float half_round(float v) {
  return __half2float(__float2half_rn(v));
}
__device__ __forceinline__ float ld_half(const __half* p) {
  return __half2float(__ushort_as_half(__ldcg(reinterpret_cast<const unsigned short*>(p))));
}

// Attention scratch in the work area (floats): cos/sin [0, 128), queries [G][hd] at 128, the
// new key [hd] at 1152; scores or probabilities [G][len] at kAttnFixedFloats.
constexpr int kCs = 0, kQ = 128, kK = 128 + 1024;

// A unit's queries roped (angles as the CPU's rope_angles, in double), and where its range holds
// the new position, the new key roped and stored with its value in the cache; then the scores of
// the range's keys into sc[g * ld + j - base], four keys a warp in flight.
__device__ void unit_scores(const DecodeArgs& a, int il, const Unit& x, float* work, float* sc, int64_t ld,
                            int64_t base, bool shared_out) {
  const DecodeShape& sh = a.shape;
  const int hd = static_cast<int>(sh.head_dim), G = static_cast<int>(sh.n_head / sh.n_head_kv);
  const int half = static_cast<int>(sh.rope_dim / 2), D = hd / 32;
  const int64_t qd = sh.n_head * hd, kvd = sh.n_head_kv * hd, ldq = qd + 2 * kvd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  float* cs = work + kCs;
  float* qh = work + kQ;
  float* kh = work + kK;
  const bool has_new = x.pos >= x.j0 && x.pos < x.j1;
  const float* row = a.qkv + x.t * ldq;
  for (int i = threadIdx.x; i < half; i += kThreads) {
    double sn, cn;
    sincos(static_cast<double>(x.pos) * a.inv_freq[i], &sn, &cn);
    cs[i] = static_cast<float>(cn);
    cs[64 + i] = static_cast<float>(sn);
  }
  for (int i = threadIdx.x; i < G * hd; i += kThreads) qh[i] = __ldcg(row + x.kvh * G * hd + i);
  if (has_new)
    for (int i = threadIdx.x; i < hd; i += kThreads) kh[i] = __ldcg(row + qd + x.kvh * hd + i);
  __syncthreads();
  const int pairs = (G + (has_new ? 1 : 0)) * half;
  for (int j = threadIdx.x; j < pairs; j += kThreads) {
    const int hh = j / half, i = j % half;
    float* v = hh < G ? qh + hh * hd : kh;
    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
    const float x0 = v[ia], x1 = v[ib], c = cs[i], sn = cs[64 + i];
    v[ia] = x0 * c - x1 * sn;
    v[ib] = x0 * sn + x1 * c;
  }
  __syncthreads();
  const int64_t kvbase = a.kv.at(a.slot[x.t], il, x.kvh, 0);
  if (has_new) {
    for (int i = threadIdx.x; i < hd; i += kThreads) {
      a.kv.k[kvbase + x.pos * hd + i] = __float2half_rn(kh[i]);
      a.kv.v[kvbase + x.pos * hd + i] = __float2half_rn(__ldcg(row + qd + kvd + x.kvh * hd + i));
    }
    __syncthreads();
  }
  float q[8][4];
#pragma unroll
  for (int g = 0; g < 8; ++g)
#pragma unroll
    for (int d = 0; d < 4; ++d) q[g][d] = g < G && d < D ? half_round(qh[g * hd + lane * D + d]) : 0.0f;
  const __half* K = a.kv.k + kvbase;
  for (int64_t j = x.j0 + warp; j < x.j1; j += 4 * kWarps) {
    float kf[4][4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int d = 0; d < 4; ++d) {
        const int64_t jj = j + u * kWarps;
        kf[u][d] = d < D && jj < x.j1 ? ld_half(K + jj * hd + lane * D + d) : 0.0f;
      }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t jj = j + u * kWarps;
      if (jj >= x.j1) break;
#pragma unroll
      for (int g = 0; g < 8; ++g) {
        if (g >= G) break;
        float sv = 0;
#pragma unroll
        for (int d = 0; d < 4; ++d)
          if (d < D) sv = fmaf(q[g][d], kf[u][d], sv);
        for (int o = 16; o > 0; o >>= 1) sv += __shfl_xor_sync(0xffffffffu, sv, o);
        if (lane == 0) sc[g * ld + jj - base] = sv * scale;
      }
    }
  }
  (void)shared_out;
  __syncthreads();
}

// A unit's softmax over all n_kv scores of each of its query heads (as attention(): max, the sum
// of exponentials in double, probabilities rounded to half) from all[g * ld + j], its range's
// probabilities into pr [G][len] (in place when all is pr), then each output value in key order
// (the per-op kernels' order): into attn when the range is the only one, else as the range's
// partial output, the last unit of the (token, KV head) adding the partials in range order.
template <bool kShared>
__device__ void unit_values(const DecodeArgs& a, int il, const Unit& x, int splits, float* work,
                            const float* all, int64_t ld) {
  const DecodeShape& sh = a.shape;
  const int hd = static_cast<int>(sh.head_dim), G = static_cast<int>(sh.n_head / sh.n_head_kv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  float* pr = work + kAttnFixedFloats;
  const int64_t len = x.j1 - x.j0;
  auto ld_s = [&](const float* p) { return kShared ? *p : __ldcg(p); };
  for (int g = warp; g < G; g += kWarps) {
    const float* sg = all + g * ld;
    float mx = -FLT_MAX;
    for (int64_t j = lane; j < x.n_kv; j += 32) mx = fmaxf(mx, ld_s(sg + j));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0;
    for (int64_t j = lane; j < x.n_kv; j += 32) sum += expf(ld_s(sg + j) - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = lane; j < len; j += 32)
      pr[g * len + j] = half_round(expf(ld_s(sg + x.j0 + j) - mx) * inv);
  }
  __syncthreads();
  const __half* V = a.kv.v + a.kv.at(a.slot[x.t], il, x.kvh, 0) + x.j0 * hd;
  float* parts = a.parts + (x.t * sh.n_head + x.kvh * G) * splits * hd;
  float* out = a.attn + x.t * sh.n_head * hd + x.kvh * G * hd;
  for (int i = threadIdx.x; i < G * hd; i += kThreads) {
    const int g = i / hd, d = i % hd;
    const float* p = pr + g * len;
    float o = 0;
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {  // eight values' loads in flight, then their products in key order
      float v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) v[u] = ld_half(V + (j + u) * hd + d);
#pragma unroll
      for (int u = 0; u < 8; ++u) o = fmaf(p[j + u], v[u], o);
    }
    for (; j < len; ++j) o = fmaf(p[j], ld_half(V + j * hd + d), o);
    if (splits == 1)
      out[g * hd + d] = o;
    else
      parts[(g * splits + x.range) * hd + d] = o;
  }
  if (splits == 1) {
    __syncthreads();  // pr is reused by the block's next unit
    return;
  }
  __shared__ int last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(a.counters + x.t * sh.n_head_kv + x.kvh, 1u) == static_cast<unsigned>(splits - 1);
  }
  __syncthreads();
  if (last) {
    __threadfence();
    for (int i = threadIdx.x; i < G * hd; i += kThreads) {
      const int g = i / hd, d = i % hd;
      float sv = 0;
      for (int k = 0; k < splits; ++k) sv += __ldcg(parts + (g * splits + k) * hd + d);
      out[g * hd + d] = sv;
    }
    if (threadIdx.x == 0) a.counters[x.t * sh.n_head_kv + x.kvh] = 0;
  }
  __syncthreads();
}

// The attention of every (token, KV head): with one key range, each unit's scores stay in shared
// memory and one phase does it all; with more, scores go through global memory and a barrier
// separates them from the softmax (which needs every range's scores).
template <typename Barrier>
__device__ __noinline__ void attention(const DecodeArgs& a, int il, int m, int splits, float* work,
                                       Barrier& barrier, Ticker& tick) {
  const DecodeShape& sh = a.shape;
  const int G = static_cast<int>(sh.n_head / sh.n_head_kv);
  const int units = m * static_cast<int>(sh.n_head_kv) * splits;
  if (splits == 1) {
    float* pr = work + kAttnFixedFloats;
    for (int u = blockIdx.x; u < units; u += gridDim.x) {
      const Unit x = unit_at(a, u, 1);
      unit_scores(a, il, x, work, pr, x.n_kv, 0, true);
      unit_values<true>(a, il, x, 1, work, pr, x.n_kv);
    }
    tick(kTScores);
    return;
  }
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit x = unit_at(a, u, splits);
    if (x.j0 < x.j1)
      unit_scores(a, il, x, work, a.scores + (x.t * sh.n_head + x.kvh * G) * sh.n_ctx, sh.n_ctx, 0, false);
  }
  tick(kTScores);
  barrier();
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit x = unit_at(a, u, splits);
    unit_values<false>(a, il, x, splits, work, a.scores + (x.t * sh.n_head + x.kvh * G) * sh.n_ctx, sh.n_ctx);
  }
  tick(kTValues);
}

// ---- the kernel -----------------------------------------------------------------------------------

template <int MT>
__global__ void __launch_bounds__(kThreads, 1) decode_kernel(DecodeArgs a, DecodePlan p) {
  extern __shared__ __align__(128) uint8_t smem[];
  const DecodeShape& sh = a.shape;
  Ring r;
  r.slots = smem;
  r.n_slots = p.slots;
  r.slot_bytes = p.slot_bytes;
  r.per_layer = p.pieces[0] + p.pieces[1] + p.pieces[2] + p.pieces[3];
  r.total = static_cast<int64_t>(r.per_layer) * sh.n_layer;
  r.next = 0;
  float* work = reinterpret_cast<float*>(smem + p.slots * p.slot_bytes);
  int8_t* act = reinterpret_cast<int8_t*>(work);
  float* dq = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(work) + p.work_bytes);
  r.bars = reinterpret_cast<uint64_t*>(dq + kFusedMaxTokens);
  DecodeLayer* layers = reinterpret_cast<DecodeLayer*>(r.bars + kMaxSlots);
  r.layers = layers;
  {
    const int words = static_cast<int>(sh.n_layer * sizeof(DecodeLayer) / 8);
    const uint64_t* src = reinterpret_cast<const uint64_t*>(a.layers);
    uint64_t* dst = reinterpret_cast<uint64_t*>(layers);
    for (int i = threadIdx.x; i < words; i += kThreads) dst[i] = src[i];
  }
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.slots; ++s) mbar_init(r.bars + s);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    fence_proxy_async();
  }
  __syncthreads();
  if (threadIdx.x == 0)
    for (int64_t k = 0; k < p.slots && k < r.total; ++k) issue(a, p, r, k);
  const int m = p.m;
  const int64_t d = sh.d, qd = sh.n_head * sh.head_dim, ff = sh.ff;
  const int64_t ld_qkv = qd + 2 * sh.n_head_kv * sh.head_dim;
  // Key ranges per (token, KV head) for this step: one per kKeysPerRange keys of the longest
  // sequence (at most the plan's), the same in every block.
  int64_t longest = 0;
  for (int t = 0; t < m; ++t) longest = longest > a.pos[t] + 1 ? longest : a.pos[t] + 1;
  const int splits = static_cast<int>(min64(p.splits, (longest + kKeysPerRange - 1) / kKeysPerRange));
  Ticker tick{a.timing, clock64()};
  unsigned gen = threadIdx.x == 0 ? ld_acquire(a.barrier + 1) : 0;
  auto barrier = [&] {
    grid_sync(a.barrier, gen);
    tick(kTBarrier);
  };
  float* scl = reinterpret_cast<float*>(layers + sh.n_layer);  // the layer's row scales
  if (m > 0) prefetch_layer(a, r.layers[0], 0, m);
  for (int il = 0; il < sh.n_layer; ++il) {
    const DecodeLayer& L = r.layers[il];
    load_scales(L, scl);
    if (il + 1 < sh.n_layer) prefetch_layer(a, r.layers[il + 1], il + 1, m);
    quantize_rows(a.x, d, m, static_cast<int>(d), static_cast<int>(L.qkv.k_pad), L.attn_norm, a.eps, act, dq);
    tick(kTQuant);
    block_rows<MT, kStore>(a, p, r, il, 0, act, dq, m, a.qkv, ld_qkv, scl, tick);
    barrier();
    attention(a, il, m, splits, work, barrier, tick);
    barrier();
    quantize_rows(a.attn, qd, m, static_cast<int>(qd), static_cast<int>(L.o.k_pad), L.attn_sub_norm, a.eps,
                  act, dq);
    tick(kTQuant);
    block_rows<MT, kAdd>(a, p, r, il, 1, act, dq, m, a.x, d, scl, tick);
    barrier();
    quantize_rows(a.x, d, m, static_cast<int>(d), static_cast<int>(L.gate_up.k_pad), L.ffn_norm, a.eps, act,
                  dq);
    tick(kTQuant);
    block_rows<MT, kGated>(a, p, r, il, 2, act, dq, m, a.h, ff, scl, tick);
    barrier();
    quantize_rows(a.h, ff, m, static_cast<int>(ff), static_cast<int>(L.down.k_pad), L.ffn_sub_norm, a.eps,
                  act, dq);
    tick(kTQuant);
    block_rows<MT, kAdd>(a, p, r, il, 3, act, dq, m, a.x, d, scl, tick);
    barrier();
  }
}

int64_t pad64(int64_t k) {
  return (k + 63) / 64 * 64;
}

}  // namespace

DecodePlan plan_fused_decode(const DecodeShape& s, int m, int sms, size_t smem_optin) {
  DecodePlan p;
  p.m = m;
  auto no = [&](const char* why) {
    p.ok = false;
    p.why = why;
    return p;
  };
  if (m < 1 || m > kFusedMaxTokens) return no("more than 8 tokens a step");
  if (s.head_dim != 32 && s.head_dim != 64 && s.head_dim != 128) return no("head_dim other than 32, 64, 128");
  if (s.n_head_kv < 1 || s.n_head % s.n_head_kv) return no("query heads not a multiple of KV heads");
  const int64_t G = s.n_head / s.n_head_kv;
  if (G != 1 && G != 2 && G != 4 && G != 8) return no("a query-head group other than 1, 2, 4, 8");
  if (s.rope_dim > s.head_dim || s.rope_dim % 2) return no("rope_dim above head_dim or odd");
  const int64_t qd = s.n_head * s.head_dim;
  const int64_t kmax = std::max({s.d, qd, s.ff});
  if (kmax > kPer * kThreads) return no("rows wider than 8,192 values");
  p.blocks = sms;
  p.slot_bytes = kSlotBytes;
  p.work_bytes = std::max<int64_t>(kMinWorkBytes, (m * pad64(kmax) + 127) / 128 * 128);
  const int64_t layer_bytes = s.n_layer * static_cast<int64_t>(sizeof(DecodeLayer));
  if (layer_bytes > 32 * 1024) return no("more layers than the kernel keeps in shared memory");
  const int64_t ring = static_cast<int64_t>(smem_optin) - p.work_bytes - static_cast<int64_t>(kReservedSmem) -
                       layer_bytes - kMaxScales * 4;
  // The block's row scales of a layer: qkv, o, gate and up, down rows.
  const int64_t scales = (qd + 2 * s.n_head_kv * s.head_dim + sms - 1) / sms + (s.d + sms - 1) / sms +
                         2 * ((s.ff + sms - 1) / sms) + (s.d + sms - 1) / sms;
  if (scales > kMaxScales) return no("more rows per block than the kernel keeps scales for");
  p.slots = static_cast<int>(std::clamp<int64_t>(ring / p.slot_bytes, 0, kMaxSlots));
  if (p.slots < 2) return no("too little shared memory for two weight slots");
  const int64_t rows_n[4] = {qd + 2 * s.n_head_kv * s.head_dim, s.d, s.ff, s.d};
  const int64_t row_bytes[4] = {pad64(s.d) / 4, pad64(qd) / 4, 2 * (pad64(s.d) / 4), pad64(s.ff) / 4};
  for (int i = 0; i < 4; ++i) {
    const int64_t per_slot = p.slot_bytes / row_bytes[i];
    if (per_slot < 1) return no("a weight row larger than a shared-memory slot");
    const int64_t rows_max = (rows_n[i] + sms - 1) / sms;
    p.pieces[i] = static_cast<int>(std::max<int64_t>(1, (rows_max + per_slot - 1) / per_slot));
  }
  // Key ranges: enough units to keep every block reading keys, and few enough keys per range for
  // the probabilities' scratch.
  const int64_t chunk_cap = (p.work_bytes / 4 - kAttnFixedFloats) / G;
  if (chunk_cap < kKeysPerRange) return no("too little shared memory for a range of keys");
  const int64_t by_smem = (s.n_ctx + chunk_cap - 1) / chunk_cap;
  const int64_t by_units = std::max<int64_t>(1, sms / (m * s.n_head_kv));
  p.splits = static_cast<int>(std::max(by_smem, std::min<int64_t>(by_units, s.n_ctx)));
  p.smem = static_cast<size_t>(p.slots * p.slot_bytes + p.work_bytes + layer_bytes) + kDynamicExtra +
           kMaxScales * sizeof(float);
  p.ok = true;
  return p;
}

size_t fused_scores_floats(const DecodeShape& s, const DecodePlan& p) {
  return static_cast<size_t>(p.m * s.n_head * s.n_ctx);
}
size_t fused_parts_floats(const DecodeShape& s, const DecodePlan& p) {
  return static_cast<size_t>(p.m * s.n_head * p.splits * s.head_dim);
}

namespace {
template <int MT>
void launch_decode(const DecodeArgs& a, const DecodePlan& p, cudaStream_t s) {
  static size_t opted = 0;  // the opt-in above 48 KB of shared memory, per instantiation
  if (p.smem > opted) {
    BN_CUDA(cudaFuncSetAttribute(decode_kernel<MT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(p.smem)));
    opted = p.smem;
  }
  // Cooperative: the launch fails rather than start fewer blocks than the barriers wait for.
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeCooperative;
  at[0].val.cooperative = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(p.blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = p.smem;
  cfg.stream = s;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  BN_CUDA(cudaLaunchKernelEx(&cfg, decode_kernel<MT>, a, p));
}
}  // namespace

void fused_decode(const DecodeArgs& a, const DecodePlan& p, cudaStream_t s) {
  if (p.m == 1)
    launch_decode<1>(a, p, s);
  else
    launch_decode<kFusedMaxTokens>(a, p, s);
}

}  // namespace bitnet::cuda::infer
