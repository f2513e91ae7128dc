#include "inference/forward.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/available_memory.h"
#include "core/error.h"
#include "core/half.h"
#include "core/memory.h"
#include "ops/layer_ops.h"
#include "ops/vec.h"
#include "quant/act_quant.h"
#include "quant/gate_up.h"
#include "quant/gemm.h"
#include "quant/head.h"

namespace bitnet {

Session::Session(const Model& model, const SessionOptions& opts)
    : model_(model), opts_(opts), pool_(opts.threads) {
  const ModelConfig& c = model.cfg;
  if (opts.n_ctx <= 0) fail("context size must be positive, got {}", opts.n_ctx);
  if (opts.n_seq <= 0) fail("number of sequences must be positive, got {}", opts.n_seq);
  // The caches' size, in double so that a huge context cannot wrap the count around; refused
  // where it passes the memory available (the kernel's estimate, or the container's limit) rather
  // than zero-filled page by page until the machine swaps or the OOM killer ends the process.
  const double kv_bytes = 2.0 * static_cast<double>(opts.n_seq) * static_cast<double>(c.n_layer) *
                          (static_cast<double>(opts.n_ctx) + kKeyTile) * static_cast<double>(c.kv_dim()) *
                          (opts.kv_f16 ? 2 : 4);
  const double have = static_cast<double>(available_memory_bytes());
  if (kv_bytes > (have > 0 ? have : 1e18))
    fail(
        "a KV cache of {} sequence{} x {} positions needs {:.1f} GiB; {:.1f} GiB of memory is available "
        "({:.1f} GiB installed)",
        opts.n_seq, opts.n_seq == 1 ? "" : "s", opts.n_ctx, kv_bytes / (1 << 30), have / (1 << 30),
        static_cast<double>(physical_memory_bytes()) / (1 << 30));
  n_past_.assign(static_cast<size_t>(opts.n_seq), 0);
  const size_t cache = static_cast<size_t>(opts.n_seq * c.n_layer * ctx_pad() * c.kv_dim());
  if (opts.kv_f16) {
    k16_.assign(cache, 0);
    v16_.assign(cache, 0);
  } else {
    k_cache_.assign(cache, 0.0f);
    v_cache_.assign(cache, 0.0f);
  }
}

const char* StepProfile::name(int s) {
  static const char* names[kCount] = {"attn norm+quant", "qkv gemv/gemm",           "rope + kv store",
                                      "attention",       "sub-norm+quant",          "o gemv/gemm",
                                      "ffn norm+quant",  "gate|up gemv/gemm",       "relu2*up norm+quant",
                                      "down gemv/gemm",  "embedding + rope angles", "output norm + head"};
  return s >= 0 && s < kCount ? names[s] : "?";
}

static int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Session::mark(StepProfile::Section s, int64_t& t0) {
  if (!profiling_) return;
  const int64_t t = now_ns();
  profile_.seconds[s] += static_cast<double>(t - t0) * 1e-9;
  t0 = t;
}

size_t Session::check_seq(int seq) const {
  if (seq < 0 || seq >= opts_.n_seq)
    fail("sequence {} does not exist (the session has {})", seq, opts_.n_seq);
  return static_cast<size_t>(seq);
}

void Session::truncate(int seq, int64_t n) {
  int64_t& past = n_past_[check_seq(seq)];
  BN_CHECK(n >= 0 && n <= past, "truncate to {} of {}", n, past);
  past = n;
}

// Per-token work (norms, activation quantization, RoPE, residual adds) runs split over tokens;
// each token's result is computed by one thread in one order, so logits do not depend on the
// thread count. A single token (decode) runs inline on the caller. Each thread starts on its own
// half (or share) of the tokens, in chunks of about 1/8 of it, and takes what is left of the
// others' once done (ThreadPool::parallel_for_stealing): a thread slowed by another tenant no
// longer holds up every section.
static int64_t token_grain(const ThreadPool& pool, int64_t n) {
  return std::max<int64_t>(1, n / (8 * pool.size()));
}
template <typename F>
static void per_token(ThreadPool& pool, int64_t n, F&& f) {
  pool.parallel_for_stealing(n, token_grain(pool, n), [&](int, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) f(t);
  });
}

// Decode at long context. The job split of attention() below leaves each thread whole KV heads
// (5 heads on 2 threads: one thread gets 3) or, halving the groups, reads each head's cache twice.
// Here the keys of every KV head are split across jobs for the scores (which do not depend on the
// split, vec.h), then the value columns for softmax + PV, where each job recomputes its KV head's
// softmax rows (the same function of the same scores: the same probabilities) and every output
// element is the same chain over keys in order. Results equal the job path's bit for bit; the cost
// is one more join per layer, so short contexts keep the job path.
constexpr int64_t kSplitMinKeys = 512;

void Session::attention_decode_split(int64_t il, const float* qkv, float* attn) {
  const ModelConfig& c = model_.cfg;
  const int64_t seq = runs_[0].seq;
  const int64_t hd = c.head_dim, group = c.n_head / c.n_head_kv, n_kv = runs_[0].pos0 + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int nt = pool_.size();
  const int64_t lds = (n_kv + kKeyTile - 1) / kKeyTile * kKeyTile, tiles = lds / kKeyTile;
  float* scores = layer_arena_.alloc<float>(static_cast<size_t>(c.n_head * lds));  // [n_head][lds]
  float* qr = layer_arena_.alloc<float>(static_cast<size_t>(c.n_head * hd));
  uint16_t* q16 = layer_arena_.alloc<uint16_t>(static_cast<size_t>(hd));
  for (int64_t h = 0; h < c.n_head; ++h) {  // the query meets half keys as a half
    f32_to_f16_row(qkv + h * hd, q16, hd);
    f16_to_f32_row(q16, qr + h * hd, hd);
  }
  const int64_t splits = std::min(tiles, std::max<int64_t>(1, (4 * nt + c.n_head_kv - 1) / c.n_head_kv));
  pool_.run([&](int tid) {
    for (int64_t job = tid; job < c.n_head_kv * splits; job += nt) {
      const int64_t kvh = job / splits, sp = job % splits;
      const int64_t j0 = tiles * sp / splits * kKeyTile,
                    j1 = std::min(n_kv, tiles * (sp + 1) / splits * kKeyTile);
      if (j1 <= j0) continue;
      dot_f16_tiles(k16_.data() + kv_at(seq, il, kvh, 0) + static_cast<size_t>(j0 * hd), j1 - j0,
                    qr + kvh * group * hd, hd, static_cast<int>(group), hd, scale,
                    scores + kvh * group * lds + j0, lds);
    }
  });
  constexpr int64_t kCols = 64;  // value columns per job
  const int64_t slices = (hd + kCols - 1) / kCols;
  float* probs_all = layer_arena_.alloc<float>(static_cast<size_t>(nt * group * lds));
  pool_.run([&](int tid) {
    float* p = probs_all + static_cast<int64_t>(tid) * group * lds;
    for (int64_t job = tid; job < c.n_head_kv * slices; job += nt) {
      const int64_t kvh = job / slices, c0 = job % slices * kCols, w = std::min(kCols, hd - c0);
      for (int64_t g = 0; g < group; ++g) {
        std::copy(scores + (kvh * group + g) * lds, scores + (kvh * group + g) * lds + n_kv, p + g * lds);
        softmax_row(p + g * lds, n_kv, true);
      }
      float* o = attn + kvh * group * hd + c0;
      for (int64_t g = 0; g < group; ++g) std::fill(o + g * hd, o + g * hd + w, 0.0f);
      axpy_f16_rows(p, lds, v16_.data() + kv_at(seq, il, kvh, 0) + static_cast<size_t>(c0), hd, n_kv,
                    static_cast<int>(group), w, o, hd);
    }
  });
}

// Causal attention of n new tokens (queries in qkv) over the cache, into attn [n][q_dim].
// One job is a token (a prompt: two consecutive tokens) and a group of query heads sharing a KV
// head, so each cached key and value is read and converted once per job. With few jobs (decode),
// groups are halved so that the threads stay busy. Results do not depend on that split (vec.h).
//
// Scores run across 16 keys at a time over the tiled half keys (dot_f16_tiles): fma chains with no
// horizontal sums, in the same order for a decoded token and for a prompt's tokens, so a token's
// logits do not depend on whether it came alone or in a prompt.
void Session::attention(int64_t il, int64_t n, const float* qkv, float* attn) {
  const ModelConfig& c = model_.cfg;
  if (n == 1 && opts_.kv_f16 && runs_[0].pos0 + 1 >= kSplitMinKeys)
    return attention_decode_split(il, qkv, attn);
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, qkv_n = qd + 2 * kvd;
  const int64_t group = c.n_head / c.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t n_kv_max = 0;
  for (const Run& r : runs_) n_kv_max = std::max(n_kv_max, r.pos0 + r.n);
  const bool f16 = opts_.kv_f16;
  const int nt = pool_.size();
  int64_t gs = group;  // query heads per job
  while (gs % 2 == 0 && n * c.n_head_kv * (group / gs) < 2 * nt) gs /= 2;
  const int64_t per_kv = group / gs;
  // Prompts over the half cache pair consecutive tokens in a job: their 2 x gs queries share each
  // key and value load and conversion (vec.h: the kernels' results do not depend on G). The pair's
  // first token has one key less: it gets no score past its own position, and the last key's
  // values are added to the second token alone, after the shared keys, in the same order.
  const int64_t tpj = n > 1 && f16 && gs == group ? 2 : 1;  // tokens per job
  // Jobs are numbered run after run (a pair never spans two sequences); job_end[r] ends run r's.
  const int64_t jobs_per_unit = c.n_head_kv * per_kv;
  int64_t* job_end = layer_arena_.alloc<int64_t>(runs_.size());
  int64_t jobs = 0;
  for (size_t r = 0; r < runs_.size(); ++r) job_end[r] = jobs += (runs_[r].n + tpj - 1) / tpj * jobs_per_unit;
  const int64_t lds = (n_kv_max + kKeyTile - 1) / kKeyTile * kKeyTile;
  const int64_t G = tpj * gs;  // queries per job
  float* scores_all = layer_arena_.alloc<float>(static_cast<size_t>(nt * G * lds));
  float* q_all = layer_arena_.alloc<float>(static_cast<size_t>(nt * G * hd));
  float* o_all = layer_arena_.alloc<float>(static_cast<size_t>(nt * G * hd));
  uint16_t* q16_all = layer_arena_.alloc<uint16_t>(static_cast<size_t>(nt * hd));
  // Jobs are claimed from a counter, the last tokens' (the most keys) first, so the threads end
  // together even when one of them is slowed down by another tenant.
  alignas(64) std::atomic<int64_t> claimed{0};
  pool_.run([&](int tid) {
    float* scores = scores_all + static_cast<int64_t>(tid) * G * lds;
    float* qr = q_all + static_cast<int64_t>(tid) * G * hd;
    float* ob = o_all + static_cast<int64_t>(tid) * G * hd;
    uint16_t* q16 = q16_all + static_cast<int64_t>(tid) * hd;
    for (int64_t cl = claimed.fetch_add(1, std::memory_order_relaxed); cl < jobs;
         cl = claimed.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t job = jobs - 1 - cl;
      const size_t ri = static_cast<size_t>(std::upper_bound(job_end, job_end + runs_.size(), job) - job_end);
      const Run& run = runs_[ri];
      const int64_t local = job - (ri == 0 ? 0 : job_end[ri - 1]);
      // t0: the job's first token within its run; rows are run.row0 + t0 + u.
      const int64_t t0 = local / jobs_per_unit * tpj, rest = local % jobs_per_unit;
      const int64_t kvh = rest / per_kv, h0 = kvh * group + (rest % per_kv) * gs;
      const int64_t nu = std::min(tpj, run.n - t0), gq = nu * gs;      // tokens and queries in this job
      const int64_t n_kv0 = run.pos0 + t0 + 1, n_kv = n_kv0 + nu - 1;  // causal: first and last token
      const int64_t row0 = run.row0 + t0;
      const size_t head_base = kv_at(run.seq, il, kvh, 0);
      // Query row u * gs + g is head h0 + g of token t0 + u; outputs go to ob in the same order.
      std::fill(ob, ob + gq * hd, 0.0f);
      if (f16) {
        // The query meets half keys as a half, like ggml's f16 dot product.
        for (int64_t u = 0; u < nu; ++u)
          for (int64_t g = 0; g < gs; ++g) {
            f32_to_f16_row(qkv + (row0 + u) * qkv_n + (h0 + g) * hd, q16, hd);
            f16_to_f32_row(q16, qr + (u * gs + g) * hd, hd);
          }
        dot_f16_tiles(k16_.data() + head_base, n_kv, qr, hd, static_cast<int>(gq), hd, scale, scores, lds);
      } else {
        for (int64_t g = 0; g < gs; ++g)
          for (int64_t j = 0; j < n_kv; ++j)
            scores[g * lds + j] = dot_f32(qkv + row0 * qkv_n + (h0 + g) * hd,
                                          k_cache_.data() + head_base + static_cast<size_t>(j * hd), hd) *
                                  scale;
      }
      // ggml multiplies half values by the probabilities rounded to half.
      for (int64_t u = 0; u < nu; ++u)
        for (int64_t g = 0; g < gs; ++g) softmax_row(scores + (u * gs + g) * lds, n_kv0 + u, f16);
      if (f16) {
        const uint16_t* v = v16_.data() + head_base;
        axpy_f16_rows(scores, lds, v, hd, n_kv0, static_cast<int>(gq), hd, ob, hd);
        if (nu == 2)  // the second token's own key
          axpy_f16_rows(scores + gs * lds + n_kv0, lds, v + n_kv0 * hd, hd, 1, static_cast<int>(gs), hd,
                        ob + gs * hd, hd);
      } else {
        for (int64_t g = 0; g < gs; ++g)
          for (int64_t j = 0; j < n_kv; ++j)
            axpy_f32(scores[g * lds + j], v_cache_.data() + head_base + static_cast<size_t>(j * hd),
                     ob + g * hd, hd);
      }
      for (int64_t u = 0; u < nu; ++u)
        std::copy(ob + u * gs * hd, ob + (u + 1) * gs * hd, attn + (row0 + u) * qd + h0 * hd);
    }
  });
}

// The same with a scratch row of `width` floats per thread (for values needed only on the way to
// their quantization), from `arena`.
template <typename F>
static void per_token_scratch(ThreadPool& pool, Arena& arena, int64_t n, int64_t width, F&& f) {
  float* scratch = arena.alloc<float>(static_cast<size_t>(pool.size() * width));
  if (n == 1 || pool.size() == 1) {
    for (int64_t t = 0; t < n; ++t) f(t, scratch);
    return;
  }
  pool.parallel_for_stealing(n, token_grain(pool, n), [&](int tid, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) f(t, scratch + tid * width);
  });
}

QuantizedActs Session::norm_quant(const float* x, int64_t n, int64_t width, const std::vector<float>& norm) {
  const ModelConfig& c = model_.cfg;
  QuantizedActs q = alloc_quantized_acts(layer_arena_, n, width);
  per_token_scratch(pool_, layer_arena_, n, width, [&](int64_t t, float* h) {
    rms_norm(x + t * width, norm.data(), width, c.rms_eps, h);
    quantize_act_row(h, q, t);
  });
  return q;
}

QuantizedActs Session::sub_norm_quant(float* x, int64_t n, int64_t width, const std::vector<float>& norm) {
  const ModelConfig& c = model_.cfg;
  QuantizedActs q = alloc_quantized_acts(layer_arena_, n, width);
  per_token(pool_, n, [&](int64_t t) {
    float* a = x + t * width;
    if (!norm.empty()) rms_norm(a, norm.data(), width, c.rms_eps, a);
    quantize_act_row(a, q, t);
  });
  return q;
}

void Session::rope_kv_store(int64_t il, int64_t n, float* qkv, const float* rope_cs) {
  const ModelConfig& c = model_.cfg;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, qkv_n = qd + 2 * kvd;
  const bool f16 = opts_.kv_f16;
  per_token(pool_, n, [&](int64_t t) {
    float* q = qkv + t * qkv_n;
    float* k = q + qd;
    const int64_t pos = row_pos_[t], seq = row_seq_[t];
    const float* cs = rope_cs + t * c.rope_dim;
    rope_apply(q, c.n_head, hd, c.rope_dim, cs, cs + c.rope_dim / 2, c.rope);
    rope_apply(k, c.n_head_kv, hd, c.rope_dim, cs, cs + c.rope_dim / 2, c.rope);
    for (int64_t h = 0; h < c.n_head_kv; ++h) {
      const size_t at = kv_at(seq, il, h, pos);
      if (f16) {
        f32_to_f16_strided(k + h * hd, k16_.data() + k_at(seq, il, h, pos), kKeyTile, hd);
        f32_to_f16_row(k + kvd + h * hd, v16_.data() + at, hd);
      } else {
        std::memcpy(k_cache_.data() + at, k + h * hd, static_cast<size_t>(hd) * 4);
        std::memcpy(v_cache_.data() + at, k + kvd + h * hd, static_cast<size_t>(hd) * 4);
      }
    }
  });
}

// One layer of the architecture, step by step; each step is an op that owns its kernels and
// threading. The residual adds happen in the o and down products' epilogues (GemmOut::add:
// x += W a, the same float addition as a separate pass), so their outputs never go through memory
// on their own.
void Session::layer(int64_t il, int64_t n, float* x, const float* rope_cs) {
  const ModelConfig& c = model_.cfg;
  const LayerWeights& L = model_.layers[static_cast<size_t>(il)];
  const int64_t d = c.n_embd, qd = c.q_dim(), ff = c.n_ff, qkv_n = qd + 2 * c.kv_dim();
  int64_t t0 = profiling_ ? now_ns() : 0;

  // Attention block.
  const QuantizedActs qa = norm_quant(x, n, d, L.attn_norm);
  mark(StepProfile::kNormQuant, t0);
  float* qkv = layer_arena_.alloc<float>(static_cast<size_t>(n * qkv_n));
  ternary_gemm(&pool_, L.wqkv, qa, {nullptr, 0, qkv, qkv_n});
  mark(StepProfile::kQkv, t0);
  rope_kv_store(il, n, qkv, rope_cs);
  mark(StepProfile::kRopeKv, t0);
  float* attn = layer_arena_.alloc<float>(static_cast<size_t>(n * qd));
  attention(il, n, qkv, attn);
  mark(StepProfile::kAttention, t0);
  const QuantizedActs qo = sub_norm_quant(attn, n, qd, L.attn_sub_norm);
  mark(StepProfile::kSubNormQuant, t0);
  ternary_gemm(&pool_, L.wo, qo, {nullptr, 0, x, d, true});  // x += Wo a
  mark(StepProfile::kWo, t0);

  // Feed-forward block.
  const QuantizedActs qf = norm_quant(x, n, d, L.ffn_norm);
  mark(StepProfile::kFfnNormQuant, t0);
  float* act = layer_arena_.alloc<float>(static_cast<size_t>(n * ff));
  gate_up_act(pool_, layer_arena_, L.w_gate_up, qf, ff, c.act, act);
  mark(StepProfile::kGateUp, t0);
  const QuantizedActs qdown = sub_norm_quant(act, n, ff, L.ffn_sub_norm);
  mark(StepProfile::kGateAct, t0);
  ternary_gemm(&pool_, L.w_down, qdown, {nullptr, 0, x, d, true});  // x += Wdown a
  mark(StepProfile::kDown, t0);
}

const float* Session::forward(std::span<const int32_t> tokens, bool all_logits) {
  std::vector<BatchToken> batch(tokens.size());
  for (size_t t = 0; t < tokens.size(); ++t) batch[t] = {tokens[t], 0, all_logits || t + 1 == tokens.size()};
  return forward_batch(batch);
}

const float* Session::forward_batch(std::span<const BatchToken> batch) {
  const ModelConfig& c = model_.cfg;
  const int64_t n = static_cast<int64_t>(batch.size());
  if (n == 0) fail("forward: no tokens");
  // Everything is checked before any work, so a bad batch leaves every cache untouched.
  std::vector<int64_t> added(static_cast<size_t>(opts_.n_seq), 0);
  int64_t n_out = 0;
  for (int64_t t = 0; t < n; ++t) {
    const BatchToken& b = batch[static_cast<size_t>(t)];
    const size_t s = check_seq(b.seq);
    if (b.token < 0 || b.token >= c.n_vocab)
      fail("token id {} is out of range (vocabulary of {})", b.token, c.n_vocab);
    if (added[s] > 0 && batch[static_cast<size_t>(t - 1)].seq != b.seq)
      fail("sequence {} appears in two runs of one batch (its tokens must be consecutive)", b.seq);
    ++added[s];
    n_out += b.logits ? 1 : 0;
  }
  for (size_t s = 0; s < added.size(); ++s)
    if (n_past_[s] + added[s] > opts_.n_ctx)
      fail("context overflow: {} cached + {} new tokens > context size {}{}", n_past_[s], added[s],
           opts_.n_ctx, opts_.n_seq > 1 ? fmt::format(" (sequence {})", s) : std::string());
  logits_.resize(static_cast<size_t>(n_out * c.n_vocab));
  // Long batches run in micro-batches: activation memory stays bounded by the micro-batch.
  const int64_t ub = std::max<int64_t>(1, opts_.n_ubatch);
  int64_t out_row = 0;
  for (int64_t c0 = 0; c0 < n; c0 += ub) {
    const auto chunk = batch.subspan(static_cast<size_t>(c0), static_cast<size_t>(std::min(ub, n - c0)));
    step(chunk, out_row);
    for (const BatchToken& b : chunk) out_row += b.logits ? 1 : 0;
  }
  if (profiling_) {
    profile_.tokens += n;
    ++profile_.calls;
  }
  return logits_.data();
}

void Session::step(std::span<const BatchToken> batch, int64_t out_row) {
  const ModelConfig& c = model_.cfg;
  const int64_t cn = static_cast<int64_t>(batch.size()), d = c.n_embd;
  int64_t t0 = profiling_ ? now_ns() : 0;
  arena_.reset();
  // Rows' sequences and positions, and the runs of consecutive rows of one sequence.
  int64_t* seqs = arena_.alloc<int64_t>(static_cast<size_t>(cn));
  int64_t* pos = arena_.alloc<int64_t>(static_cast<size_t>(cn));
  Run* runs = arena_.alloc<Run>(static_cast<size_t>(cn));
  size_t nr = 0;
  for (int64_t t = 0; t < cn; ++t) {
    const int64_t s = batch[static_cast<size_t>(t)].seq;
    if (nr == 0 || runs[nr - 1].seq != s) runs[nr++] = {s, n_past_[static_cast<size_t>(s)], t, 0};
    seqs[t] = s;
    pos[t] = runs[nr - 1].pos0 + runs[nr - 1].n++;
  }
  runs_ = {runs, nr};
  row_seq_ = seqs;
  row_pos_ = pos;
  float* x = arena_.alloc<float>(static_cast<size_t>(cn * d));
  for (int64_t t = 0; t < cn; ++t)
    embedding_row(model_.token_embd, batch[static_cast<size_t>(t)].token, x + t * d);
  // Each position's RoPE angles once for all layers and heads (transcendentals were 3 % of prefill).
  float* rope_cs = arena_.alloc<float>(static_cast<size_t>(cn * c.rope_dim));
  per_token(pool_, cn, [&](int64_t t) {
    float* cs = rope_cs + t * c.rope_dim;
    rope_angles(pos[t], c.rope_dim, c.rope_theta, cs, cs + c.rope_dim / 2);
  });
  mark(StepProfile::kEmbed, t0);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    layer_arena_.reset();
    layer(il, cn, x, rope_cs);
  }
  for (const Run& r : runs_) n_past_[static_cast<size_t>(r.seq)] += r.n;
  runs_ = {};
  // The head for the rows that want logits.
  int64_t* rows = arena_.alloc<int64_t>(static_cast<size_t>(cn));
  int64_t k = 0;
  for (int64_t t = 0; t < cn; ++t)
    if (batch[static_cast<size_t>(t)].logits) rows[k++] = t;
  if (k == 0) return;
  t0 = profiling_ ? now_ns() : 0;
  float* xn = arena_.alloc<float>(static_cast<size_t>(k * d));
  per_token(pool_, k, [&](int64_t i) {
    rms_norm(x + rows[i] * d, model_.output_norm.data(), d, c.rms_eps, xn + i * d);
  });
  head_matmul(&pool_, model_.output, xn, k, logits_.data() + out_row * c.n_vocab);
  mark(StepProfile::kHead, t0);
}

}  // namespace bitnet
