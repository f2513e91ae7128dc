// The k largest logits of each row, and each row's log-sum-exp, on the device: what sampling needs
// of a decode step (top-k, top-p, min-p and temperature over the k candidates, logprobs from the
// log-sum-exp), so a step copies k pairs a sequence to the host instead of the whole vocabulary
// (128,256 floats on the 2B4T), and the host no longer scans it.
//
// A candidate is one 64-bit key whose unsigned order is the sampler's order (inference/sampler.h
// top_k_logits): the logit's bits made monotonic in the high word, the complement of the id in the
// low one, so a larger logit comes first and equal logits go to the lower id. A block sorts 4,096
// keys in shared memory (bitonic, descending) and keeps the first kp; passes over the row's groups
// of 4,096 repeat until one group is left. The result is the CPU's list exactly: same values, same
// order, ties included.
#include <cfloat>
#include <cstdint>

#include "cuda/infer_kernels.h"
#include "cuda/infer_launch.cuh"
#include "cuda/reduce.cuh"

namespace bitnet::cuda::infer {
namespace {

constexpr int kSortN = 4096;  // keys a block sorts
constexpr int kSortThreads = 1024;

__device__ __forceinline__ uint64_t cand_key(float v, uint32_t id) {
  uint32_t b = __float_as_uint(v);
  if ((b << 1) == 0) b = 0;  // -0 and +0 compare equal in the sampler: one key, ties by id
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (uint64_t{b} << 32) | (0xFFFFFFFFu - id);
}

__device__ __forceinline__ float key_value(uint64_t key) {
  uint32_t b = static_cast<uint32_t>(key >> 32);
  b = (b & 0x80000000u) ? (b & 0x7FFFFFFFu) : ~b;
  return __uint_as_float(b);
}

__device__ __forceinline__ int32_t key_id(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

// Sorts s[0, kSortN) descending; every thread of the block takes part.
__device__ void bitonic_desc(uint64_t* s) {
  for (unsigned size = 2; size <= kSortN; size <<= 1) {
    for (unsigned stride = size >> 1; stride > 0; stride >>= 1) {
      for (unsigned t = threadIdx.x; t < kSortN / 2; t += blockDim.x) {
        const unsigned lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
        const uint64_t a = s[lo], b = s[hi];
        if ((lo & size) == 0 ? a < b : a > b) {
          s[lo] = b;
          s[hi] = a;
        }
      }
      __syncthreads();
    }
  }
}

// Block (g, r) sorts items [g kSortN, (g + 1) kSortN) of row r: logits (raw, ids = column) or
// keys of an earlier pass (count per row), missing items as key 0 (after every real one). It
// writes its first kp keys to out[r][g kp ..] or, as the last pass (one block a row), the first k
// as values (read from logits) and ids.
template <bool kRaw>
__global__ void __launch_bounds__(kSortThreads)
    topk_pass(const float* logits, int64_t ld, const uint64_t* in, int64_t count, int kp, uint64_t* out,
              int k, float* val, int32_t* id) {
  pdl_launch();
  pdl_wait();
  __shared__ uint64_t s[kSortN];
  const int64_t r = blockIdx.y, base = static_cast<int64_t>(blockIdx.x) * kSortN;
  for (int i = threadIdx.x; i < kSortN; i += blockDim.x) {
    const int64_t j = base + i;
    uint64_t key = 0;
    if (j < count) {
      if constexpr (kRaw)
        key = cand_key(logits[r * ld + j], static_cast<uint32_t>(j));
      else
        key = in[r * count + j];
    }
    s[i] = key;
  }
  __syncthreads();
  bitonic_desc(s);
  if (out) {
    for (int i = threadIdx.x; i < kp; i += blockDim.x)
      out[r * static_cast<int64_t>(gridDim.x) * kp + static_cast<int64_t>(blockIdx.x) * kp + i] = s[i];
  } else {
    // The value read back from the row, not rebuilt from the key: the key holds -0 as +0.
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
      const int32_t j = key_id(s[i]);
      val[r * k + i] = s[i] != 0 ? logits[r * ld + j] : key_value(s[i]);
      id[r * k + i] = j;
    }
  }
}

// out[r] = max + log(sum exp(x - max)) over row r, in float (the CPU sums in double: logprobs
// agree to float rounding).
__global__ void __launch_bounds__(1024)
    log_sum_exp_kernel(const float* logits, int64_t n, int64_t ld, float* out) {
  pdl_launch();
  pdl_wait();
  const float* x = logits + blockIdx.x * ld;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, x[i]);
  mx = dev::block_reduce(mx, dev::Max{}, -INFINITY);
  float sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += expf(x[i] - mx);
  sum = dev::block_reduce(sum, dev::Sum{}, 0.0f);
  if (threadIdx.x == 0) out[blockIdx.x] = mx + logf(sum);
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Keys each pass keeps of a block: k rounded up to a power of two.
int keep_of(int k) {
  int kp = 1;
  while (kp < k) kp <<= 1;
  return kp;
}

}  // namespace

size_t topk_scratch_bytes(int m, int64_t n, int k) {
  if (m <= 0 || k <= 0 || k > kTopKMax) return 0;
  return 2 * static_cast<size_t>(m) * static_cast<size_t>(ceil_div(n, kSortN)) * keep_of(k) *
         sizeof(uint64_t);
}

void topk_rows(const float* logits, int m, int64_t n, int64_t ld, int k, void* scratch, float* val,
               int32_t* id, float* log_z, cudaStream_t s) {
  if (m <= 0) return;
  const int kp = keep_of(k);
  uint64_t* buf[2] = {static_cast<uint64_t*>(scratch),
                      static_cast<uint64_t*>(scratch) + static_cast<size_t>(m) * ceil_div(n, kSortN) * kp};
  int64_t groups = ceil_div(n, kSortN);
  const dim3 block(kSortThreads);
  if (groups == 1) {
    launch(topk_pass<true>, dim3(1, m), block, 0, s, logits, ld, nullptr, n, kp, nullptr, k, val, id);
  } else {
    launch(topk_pass<true>, dim3(static_cast<unsigned>(groups), m), block, 0, s, logits, ld, nullptr, n, kp,
           buf[0], k, val, id);
    // Each later pass merges kSortN / kp lists (>= 16) into one.
    int cur = 0;
    for (int64_t count = groups * kp;; count = groups * kp, cur ^= 1) {
      groups = ceil_div(count, kSortN);
      uint64_t* dst = groups == 1 ? nullptr : buf[cur ^ 1];
      launch(topk_pass<false>, dim3(static_cast<unsigned>(groups), m), block, 0, s, logits, ld, buf[cur],
             count, kp, dst, k, val, id);
      if (groups == 1) break;
    }
  }
  BN_CUDA_LAUNCHED();
  if (log_z) {
    launch(log_sum_exp_kernel, m, 1024, 0, s, logits, n, ld, log_z);
    BN_CUDA_LAUNCHED();
  }
}

}  // namespace bitnet::cuda::infer
