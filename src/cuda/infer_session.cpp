#include "cuda/infer_session.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/device.h"
#include "cuda/infer_decode.h"
#include "cuda/infer_gemm_lt.h"
#include "cuda/infer_head_lt.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_weights.h"
#include "cuda/lt_plans.h"

namespace bitnet::cuda {

using infer::DevActs;

struct CudaState {
  DeviceModel w;
  cudaStream_t stream = nullptr;
  int sms = 132;
  Buffer<__half> k, v;
  infer::KvGeom kv;
  int64_t max_tok = 0, head_rows = 0, kpad_max = 0;
  Buffer<float> x, qkv, attn, gu, xn, logits, scratch, head_f, head_d;
  Buffer<int8_t> aq, head_q;
  Buffer<uint16_t> head_h;        // F16/BF16 head: activations in the weight type
  cublasLtHandle_t lt = nullptr;  // F16/BF16 head from kHeadLtMinRows rows (infer_head_lt.h), lt_gemm
  Buffer<unsigned char> lt_workspace;
  // Products of prompt chunks through cuBLASLt's int8 GEMM (infer_gemm_lt.h): the plans and
  // the expanded matrix (the sums go to gu). Not set (lt_gemm.lt null) with BITNET_CUDA_LT=0 or
  // where the route pays for no matrix (chunks of fewer than kTernaryLtMinTokens tokens).
  std::unique_ptr<LtPlans> lt_plans;
  Buffer<int8_t> lt_w8;
  TernaryLt lt_gemm;
  Buffer<float> adq;
  // Split-K scratch of the tensor-core GEMM (infer_kernels.h GemmSplitK): zero, and left zero.
  Buffer<int32_t> splitk_sums;
  Buffer<unsigned> splitk_counters;
  Buffer<double> inv_freq;  // theta^(-2i / rope_dim), as the CPU's rope_angles computes it
  Buffer<int32_t> tok, pos, slot, argmax;
  int32_t* h_in = nullptr;      // pinned: tokens, positions, slots (3 x max_tok)
  int32_t* h_argmax = nullptr;  // pinned
  // Pinned: a decode step's logits (max_seqs rows), copied at the link's full rate (a step of 64
  // on the 2B4T is 33 MB).
  float* h_logits = nullptr;
  // decode_top: the candidates of a step on the device and, pinned, on the host (values, ids and
  // log-sum-exps of max_seqs rows of up to kTopKMax), and the top-k passes' scratch (on first use).
  Buffer<unsigned char> top_dev, top_scratch;
  unsigned char* h_top = nullptr;
  std::map<int, cudaGraphExec_t> graphs;  // decode step per batch size
  std::map<int, int> warmed;              // batch sizes run once eagerly (before capture)
  Buffer<unsigned long long> sink;
  size_t bytes_before = 0, bytes_after = 0;
  bool prompt = false;  // this step's tokens are one sequence's, at consecutive positions
  bool profiling = false;
  std::vector<cudaEvent_t> events;  // recorded this step, with the section each one ends
  std::vector<int> event_section;
  size_t events_used = 0;
  std::vector<double> section_ms;
  // The fused decode kernel (infer_decode.h): its plan per batch size (index m), the layers'
  // pointers on the device and its scratch.
  std::vector<infer::DecodePlan> fused;
  infer::DecodeShape fused_shape;
  Buffer<infer::DecodeLayer> fused_layers;
  Buffer<float> fused_h, fused_scores, fused_parts;
  Buffer<unsigned> fused_counters, fused_barrier;
  Buffer<unsigned long long> fused_timing;  // profiling: block 0's cycles per part of the kernel

  ~CudaState() {
    for (auto& [b, g] : graphs) (void)cudaGraphExecDestroy(g);
    for (cudaEvent_t e : events) (void)cudaEventDestroy(e);
    if (h_in) (void)cudaFreeHost(h_in);
    if (h_argmax) (void)cudaFreeHost(h_argmax);
    if (h_logits) (void)cudaFreeHost(h_logits);
    if (h_top) (void)cudaFreeHost(h_top);
    if (stream) (void)cudaStreamDestroy(stream);
    if (lt) (void)cublasLtDestroy(lt);
  }
  DevActs acts(int64_t k) { return {aq.data(), adq.data(), k, (k + 63) / 64 * 64}; }
  infer::GemmSplitK splitk() {
    return {splitk_sums.data(), splitk_counters.data(), splitk_sums.size(), splitk_counters.size(), 0};
  }
};

namespace infer {
bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("BITNET_CUDA_PDL");
    return e == nullptr || std::string(e) != "0";
  }();
  return on;
}
// BITNET_CUDA_FUSED=1: the fused decode kernel in every session (bench comparisons).
bool fused_forced() {
  static const bool on = [] {
    const char* e = std::getenv("BITNET_CUDA_FUSED");
    return e != nullptr && std::string(e) == "1";
  }();
  return on;
}
}  // namespace infer

namespace {

enum Section {
  kEmbed,
  kFusedLayers,
  kNormQuant,
  kQkv,
  kRopeKv,
  kAttention,
  kSubNormQuant,
  kWo,
  kFfnNormQuant,
  kGateUp,
  kActSubNormQuant,
  kDown,
  kHead,
  kSections
};
const char* const kSectionNames[kSections] = {"embedding",
                                              "layers (fused decode kernel)",
                                              "attn norm+quant",
                                              "qkv",
                                              "rope + kv store",
                                              "attention",
                                              "sub-norm+quant",
                                              "o",
                                              "ffn norm+quant",
                                              "gate|up",
                                              "act+sub-norm+quant",
                                              "down",
                                              "head (norm, prepare, dot, argmax)"};

size_t used_device_bytes() {
  size_t free_b = 0, total_b = 0;
  BN_CUDA(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

// Ranges of keys per (token, KV head) in attention. Prompts (sms == 0): as few as the kernel's
// shared memory allows (one, up to 6,144 positions). Decode: enough to keep every SM reading at
// long contexts, but one range per 1,024 positions of context at most (at short contexts the
// one-block kernel is one launch where the split is three). Fixed per batch size and context, so
// a captured graph stays valid as the cache fills.
int attention_splits(int64_t n_ctx, int64_t tokens, int64_t n_head_kv, int sms) {
  const int64_t min_s = (n_ctx + infer::attention_max_chunk() - 1) / infer::attention_max_chunk();
  if (sms == 0) return static_cast<int>(min_s);
  const int64_t want = (2 * sms + tokens * n_head_kv - 1) / (tokens * n_head_kv);
  const int64_t by_len = (n_ctx + 1023) / 1024;
  return static_cast<int>(std::max<int64_t>(min_s, std::min<int64_t>({want, by_len, 64})));
}

}  // namespace

CudaSession::CudaSession(const Model& model, const CudaSessionOptions& opts)
    : model_(model), opts_(opts), st_(std::make_unique<CudaState>()) {
  require_device();
  const ModelConfig& c = model.cfg;
  if (opts.n_ctx <= 0) fail("context size must be positive, got {}", opts.n_ctx);
  if (opts.max_seqs < 1) fail("cuda: at least one sequence slot, got {}", opts.max_seqs);
  if (!infer::attention_supported(c.head_dim, c.n_head / c.n_head_kv))
    fail("cuda: attention with head_dim {} and {} query heads per KV head is not built (32/64/128; 1/2/4/8)",
         c.head_dim, c.n_head / c.n_head_kv);
  const int64_t widest = std::max({c.n_embd, c.n_ff, c.q_dim() + 2 * c.kv_dim() + c.rope_dim});
  if (widest > infer::row_kernels_max_floats())
    fail("cuda: rows of {} values are wider than the norm and RoPE kernels' shared memory ({} floats)",
         widest, infer::row_kernels_max_floats());
  CudaState& s = *st_;
  s.sms = devices().front().multiprocessors;
  s.bytes_before = used_device_bytes();
  BN_CUDA(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  s.w = upload_model(model);
  {
    // The K and V caches (f16), in double so that a huge context cannot wrap the count around:
    // refused by size where they pass the GPU's memory left free by the weights, rather than by a
    // failed allocation (the activations' few MB are not counted).
    const double kv_bytes = 2.0 * 2.0 * static_cast<double>(opts.max_seqs) * static_cast<double>(c.n_layer) *
                            static_cast<double>(opts.n_ctx) * static_cast<double>(c.kv_dim());
    size_t free_b = 0, total_b = 0;
    BN_CUDA(cudaMemGetInfo(&free_b, &total_b));
    if (kv_bytes > static_cast<double>(free_b))
      fail(
          "cuda: a KV cache of {} slot{} x {} positions needs {:.1f} GiB; the GPU has {:.1f} GiB free of "
          "{:.1f} with the weights on it",
          opts.max_seqs, opts.max_seqs == 1 ? "" : "s", opts.n_ctx, kv_bytes / (1 << 30),
          static_cast<double>(free_b) / (1 << 30), static_cast<double>(total_b) / (1 << 30));
  }
  const int64_t kvd = c.kv_dim(), qkv_n = c.q_dim() + 2 * kvd;
  s.kv.n_layer = c.n_layer;
  s.kv.n_head_kv = c.n_head_kv;
  s.kv.n_ctx = opts.n_ctx;
  s.kv.head_dim = c.head_dim;
  const size_t cache = static_cast<size_t>(opts.max_seqs * c.n_layer * opts.n_ctx * kvd);
  s.k.resize(cache);
  s.v.resize(cache);
  s.k.fill_bytes(0, s.stream);
  s.v.fill_bytes(0, s.stream);
  s.kv.k = s.k.data();
  s.kv.v = s.v.data();
  s.max_tok = std::max<int64_t>(std::max<int64_t>(1, opts.n_ubatch), opts.max_seqs);
  s.head_rows = std::max<int64_t>(8, opts.max_seqs);
  const int64_t T = s.max_tok;
  s.kpad_max = (std::max({c.n_embd, c.q_dim(), c.n_ff}) + 63) / 64 * 64;
  s.x.resize(static_cast<size_t>(T * c.n_embd));
  s.qkv.resize(static_cast<size_t>(T * qkv_n));
  s.attn.resize(static_cast<size_t>(T * c.q_dim()));
  s.gu.resize(static_cast<size_t>(T * 2 * c.n_ff));
  s.aq.resize(static_cast<size_t>(T * s.kpad_max));
  s.adq.resize(static_cast<size_t>(T));
  // Split-K: products of up to 128 tokens (the batch sizes whose grids leave SMs idle), unless
  // BITNET_CUDA_SPLITK=0.
  if (const char* e = std::getenv("BITNET_CUDA_SPLITK"); e == nullptr || std::string(e) != "0") {
    s.splitk_sums.resize(static_cast<size_t>(std::min<int64_t>(T, 128) * std::max(qkv_n, 2 * c.n_ff)));
    s.splitk_counters.resize(8192);
    s.splitk_sums.fill_bytes(0, s.stream);
    s.splitk_counters.fill_bytes(0, s.stream);
  }
  s.xn.resize(static_cast<size_t>(s.head_rows * c.n_embd));
  s.logits.resize(static_cast<size_t>(s.head_rows * c.n_vocab));
  s.head_f.resize(static_cast<size_t>(s.head_rows * c.n_embd));
  s.head_q.resize(static_cast<size_t>(s.head_rows * c.n_embd));
  s.head_d.resize(static_cast<size_t>(s.head_rows * c.n_embd / 32));
  const int htype = s.w.head().type;
  if ((htype == infer::kHeadF16 || htype == infer::kHeadBF16) && s.head_rows >= kHeadLtMinRows) {
    s.head_h.resize(static_cast<size_t>(s.head_rows * c.n_embd));
    BN_CUBLAS(cublasLtCreate(&s.lt));
    s.lt_workspace.resize(size_t{4} << 20);
  }
  // cuBLASLt's int8 route for the matrices where it pays at a full chunk of T tokens, and for
  // gate|up from kTernaryLtMinTokens (its sums go straight to the gated norm, run_layers): the
  // expanded-matrix scratch holds the largest of them, and the sums go to the gate|up buffer,
  // which no product reads (sized for the widest product's sums).
  if (const char* e = std::getenv("BITNET_CUDA_LT"); e == nullptr || std::string(e) != "0") {
    const int64_t kd = (c.n_embd + 63) / 64 * 64, kq = (c.q_dim() + 63) / 64 * 64,
                  kf = (c.n_ff + 63) / 64 * 64;
    const int64_t mats[][2] = {{qkv_n, kd}, {c.n_embd, kq}, {2 * c.n_ff, kd}, {c.n_embd, kf}};
    int64_t w8 = 0;
    for (const auto& mk : mats)
      if (ternary_lt_pays(static_cast<int>(T), mk[0], s.sms)) w8 = std::max(w8, mk[0] * mk[1]);
    if (T >= kTernaryLtMinTokens) w8 = std::max(w8, mats[2][0] * mats[2][1]);
    if (w8 > 0) {
      if (s.lt == nullptr) BN_CUBLAS(cublasLtCreate(&s.lt));
      if (s.lt_workspace.empty()) s.lt_workspace.resize(size_t{4} << 20);
      s.lt_plans = std::make_unique<LtPlans>();
      s.lt_w8.resize(static_cast<size_t>(w8));
      s.gu.resize(static_cast<size_t>(T * std::max({2 * c.n_ff, qkv_n, c.n_embd})));
      s.lt_gemm = {s.lt,
                   s.lt_plans.get(),
                   s.lt_workspace.data(),
                   s.lt_workspace.bytes(),
                   s.lt_w8.data(),
                   s.lt_w8.bytes(),
                   reinterpret_cast<int32_t*>(s.gu.data()),
                   s.gu.size(),
                   s.sms};
    }
  }
  size_t scratch = 0;  // attention scratch: the largest of decode at every batch and a prompt step
  for (int b = 1; b <= opts.max_seqs; ++b)
    scratch = std::max(scratch,
                       infer::attention_scratch_floats(b, c.n_head, c.head_dim, opts.n_ctx,
                                                       attention_splits(opts.n_ctx, b, c.n_head_kv, s.sms)));
  scratch =
      std::max(scratch, infer::attention_scratch_floats(T, c.n_head, c.head_dim, opts.n_ctx,
                                                        attention_splits(opts.n_ctx, T, c.n_head_kv, 0)));
  s.scratch.resize(std::max<size_t>(scratch, 1));
  s.tok.resize(static_cast<size_t>(T));
  s.pos.resize(static_cast<size_t>(T));
  s.slot.resize(static_cast<size_t>(T));
  s.argmax.resize(static_cast<size_t>(s.head_rows));
  s.sink.resize(1);
  std::vector<double> inv(static_cast<size_t>(c.rope_dim / 2));
  for (int64_t i = 0; i < c.rope_dim / 2; ++i)
    inv[static_cast<size_t>(i)] = std::pow(static_cast<double>(c.rope_theta),
                                           -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim));
  s.inv_freq.upload(inv);
  BN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&s.h_in), static_cast<size_t>(3 * T) * 4));
  BN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&s.h_argmax), static_cast<size_t>(s.head_rows) * 4));
  BN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&s.h_logits),
                         static_cast<size_t>(opts.max_seqs) * static_cast<size_t>(c.n_vocab) * 4));
  BN_CUDA(cudaStreamSynchronize(s.stream));
  if (opts.fused_decode || infer::fused_forced()) setup_fused();
  BN_CUDA(cudaStreamSynchronize(s.stream));
  s.bytes_after = used_device_bytes();
  n_past_.assign(static_cast<size_t>(opts.max_seqs), 0);
}

// Plans of the fused decode kernel for 1 .. max_seqs (at most 8) sequences a step, and its
// buffers for the largest of them.
void CudaSession::setup_fused() {
  CudaState& s = *st_;
  const ModelConfig& c = model_.cfg;
  infer::DecodeShape& sh = s.fused_shape;
  sh = {c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.rope_dim, opts_.n_ctx};
  int dev = 0, coop = 0;
  BN_CUDA(cudaGetDevice(&dev));
  BN_CUDA(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
  if (!coop) return;  // every step takes the per-op kernels
  const size_t smem_optin = devices().front().shared_per_block_optin;
  s.fused.assign(1, infer::DecodePlan{});
  size_t scores = 0, parts = 0;
  const int top = std::min(opts_.max_seqs, infer::kFusedMaxTokens);
  for (int m = 1; m <= top; ++m) {
    s.fused.push_back(infer::plan_fused_decode(sh, m, s.sms, smem_optin));
    const infer::DecodePlan& p = s.fused.back();
    if (!p.ok) continue;
    scores = std::max(scores, infer::fused_scores_floats(sh, p));
    parts = std::max(parts, infer::fused_parts_floats(sh, p));
  }
  std::vector<infer::DecodeLayer> layers;
  for (const DeviceLayer& L : s.w.layers)
    layers.push_back({L.wqkv, L.wo, L.gate_up, L.down, L.attn_norm.data(),
                      L.attn_sub_norm.empty() ? nullptr : L.attn_sub_norm.data(), L.ffn_norm.data(),
                      L.ffn_sub_norm.empty() ? nullptr : L.ffn_sub_norm.data()});
  s.fused_layers.upload(layers);
  s.fused_h.resize(static_cast<size_t>(top * c.n_ff));
  s.fused_scores.resize(std::max<size_t>(scores, 1));
  s.fused_parts.resize(std::max<size_t>(parts, 1));
  s.fused_counters.resize(static_cast<size_t>(top * c.n_head_kv));
  s.fused_counters.fill_bytes(0, s.stream);
  s.fused_barrier.resize(2);
  s.fused_barrier.fill_bytes(0, s.stream);
  s.fused_timing.resize(infer::kDecodeTimers);
}

// decode_gemv for steps of up to decode_gemv_max sequences where its shared memory holds the
// widest input. BITNET_CUDA_DECODE_GEMV=0 asks for the separate norm, RoPE and product kernels,
// =N (1 - 8) for decode_gemv up to N sequences a step.
bool CudaSession::decode_gemv_ok(int m) const {
  static const int env = [] {
    const char* e = std::getenv("BITNET_CUDA_DECODE_GEMV");
    return e == nullptr ? -1 : std::atoi(e);
  }();
  const ModelConfig& c = model_.cfg;
  const int max = env >= 0 ? env : opts_.decode_gemv_max;
  return m <= max && infer::decode_gemv_supported(m, std::max({c.n_embd, c.q_dim(), c.n_ff}));
}

bool CudaSession::fused_decode_ok(int m) const {
  const CudaState& s = *st_;
  return m >= 1 && m < static_cast<int>(s.fused.size()) && s.fused[static_cast<size_t>(m)].ok;
}

CudaSession::~CudaSession() = default;

size_t CudaSession::kv_cache_bytes() const {
  return st_->k.bytes() + st_->v.bytes();
}
size_t CudaSession::device_bytes() const {
  return st_->bytes_after - st_->bytes_before;
}
size_t CudaSession::decode_weight_bytes() const {
  return st_->w.ternary.bytes() + st_->w.head().bytes();
}
void CudaSession::synchronize() {
  BN_CUDA(cudaStreamSynchronize(st_->stream));
}

void CudaSession::truncate_seq(int seq, int64_t n) {
  BN_CHECK(seq >= 0 && seq < opts_.max_seqs && n >= 0 && n <= n_past_[static_cast<size_t>(seq)],
           "truncate sequence {} to {}", seq, n);
  n_past_[static_cast<size_t>(seq)] = n;
}

// The layers over m tokens whose ids, positions and slots are on the device; the residual stream
// ends in x.
void CudaSession::run_layers(int m, int splits, bool decode) {
  CudaState& s = *st_;
  const ModelConfig& c = model_.cfg;
  const int64_t d = c.n_embd, qd = c.q_dim(), ff = c.n_ff, qkv_n = qd + 2 * c.kv_dim();
  cudaStream_t str = s.stream;
  auto product = [&](const infer::DevTernary& w, const DevActs& a, float* y, int64_t ldy, bool add) {
    infer::ternary_product(w, a, m, y, ldy, add, str, s.splitk(), &s.lt_gemm);
  };
  const float* none = nullptr;
  const int act = c.act == FfnAct::kRelu2 ? 0 : 1;
  mark(-1);
  infer::embed_rows(s.w.embd.data.data(), s.w.embd.scales.data(), s.w.embd.type, d, s.tok.data(), m,
                    s.x.data(), str);
  mark(kEmbed);
  // Decode (each token in its own sequence slot): the fused kernel where it supports the shape.
  // Not for a prompt's tokens: they read each other's new keys within the step.
  if (decode && fused_decode_ok(m)) {
    infer::DecodeArgs a;
    a.layers = s.fused_layers.data();
    a.shape = s.fused_shape;
    a.eps = c.rms_eps;
    a.act = act;
    a.neox = c.rope == RopeStyle::kNeox;
    a.inv_freq = s.inv_freq.data();
    a.kv = s.kv;
    a.pos = s.pos.data();
    a.slot = s.slot.data();
    a.x = s.x.data();
    a.qkv = s.qkv.data();
    a.attn = s.attn.data();
    a.h = s.fused_h.data();
    a.scores = s.fused_scores.data();
    a.parts = s.fused_parts.data();
    a.counters = s.fused_counters.data();
    a.barrier = s.fused_barrier.data();
    a.timing = s.profiling ? s.fused_timing.data() : nullptr;
    infer::fused_decode(a, s.fused[static_cast<size_t>(m)], str);
    mark(kFusedLayers);
    return;
  }
  // Decode of up to 8 tokens: four kernels a layer and the attention (decode_gemv brings each
  // product's norm + quantization and the op after it into the product's kernel).
  if (decode && decode_gemv_ok(m)) {
    const bool neox = c.rope == RopeStyle::kNeox;
    for (int64_t il = 0; il < c.n_layer; ++il) {
      const DeviceLayer& L = s.w.layers[static_cast<size_t>(il)];
      infer::DecodeGemvOut rk;
      rk.kind = infer::DecodeEpilogue::kRopeKv;
      rk.y = s.qkv.data();
      rk.ldy = qkv_n;
      rk.pos = s.pos.data();
      rk.slot = s.slot.data();
      rk.inv_freq = s.inv_freq.data();
      rk.n_head = c.n_head;
      rk.rope_dim = c.rope_dim;
      rk.il = il;
      rk.neox = neox;
      rk.kv = s.kv;
      infer::decode_gemv(L.wqkv, {s.x.data(), d, 1, 0, 0, L.attn_norm.data(), c.rms_eps}, m, rk, str);
      mark(kQkv);
      infer::DecodeGemvIn attn_in{
          s.attn.data(), qd, 1, 0, 0, L.attn_sub_norm.empty() ? none : L.attn_sub_norm.data(), c.rms_eps};
      if (splits > 1) {
        attn_in.x = infer::attention_parts(s.qkv.data(), m, s.pos.data(), s.slot.data(), c.n_head, s.kv, il,
                                           splits, s.scratch.data(), str);
        attn_in.splits = splits;
        attn_in.n_head = c.n_head;
        attn_in.head_dim = c.head_dim;
      } else {
        infer::attention(s.qkv.data(), m, s.pos.data(), s.slot.data(), c.n_head, s.kv, il, 1,
                         s.scratch.data(), s.attn.data(), str);
      }
      mark(kAttention);
      infer::DecodeGemvOut add;
      add.kind = infer::DecodeEpilogue::kAdd;
      add.y = s.x.data();
      add.ldy = d;
      infer::decode_gemv(L.wo, attn_in, m, add, str);
      mark(kWo);
      infer::DecodeGemvOut gate;
      gate.kind = infer::DecodeEpilogue::kGated;
      gate.y = s.gu.data();  // act(gate) * up, ff values a token
      gate.ldy = ff;
      gate.ff = ff;
      gate.act = act;
      infer::decode_gemv(L.gate_up, {s.x.data(), d, 1, 0, 0, L.ffn_norm.data(), c.rms_eps}, m, gate, str);
      mark(kGateUp);
      infer::decode_gemv(
          L.down,
          {s.gu.data(), ff, 1, 0, 0, L.ffn_sub_norm.empty() ? none : L.ffn_sub_norm.data(), c.rms_eps}, m,
          add, str);
      mark(kDown);
    }
    return;
  }
  // Products through cuBLASLt (prompt chunks) may leave their int32 sums in gu for the op after
  // them, which reads them directly (no epilogue pass): qkv's for RoPE + KV store, gate|up's for
  // the gated norm, and o's and down's for the next norm, which adds them to the residual as it
  // reads it (norm_quant_residual_acc: one pass over x and one launch fewer). The last layer's
  // down goes to x (the head's norm reads it). gate|up takes the route from kTernaryLtMinTokens
  // (without its epilogue pass it is the faster one, infer_gemm_lt.h); the others where it pays.
  int32_t* sums = reinterpret_cast<int32_t*>(s.gu.data());
  auto lt_sums = [&](const infer::DevTernary& w, const DevActs& a, bool where_it_pays) {
    return m >= kTernaryLtMinTokens && (!where_it_pays || ternary_lt_pays(m, w.n, s.sms)) &&
           ternary_acc_lt(s.lt_gemm, w, a, m, sums, str);
  };
  const infer::DevTernary* pending = nullptr;  // the product whose sums wait in gu for the next norm
  const float* pending_dq = nullptr;           // its input's 1/s
  auto sums_to_norm = [&](const infer::DevTernary& w, const DevActs& a) {
    if (!lt_sums(w, a, true)) return false;
    pending = &w;
    pending_dq = a.dq;
    return true;
  };
  auto norm_x = [&](const float* norm, const DevActs& out) {
    if (pending)
      infer::norm_quant_residual_acc(sums, pending->row_scale, pending_dq, s.x.data(), m, norm, c.rms_eps,
                                     out, str);
    else
      infer::norm_quant(s.x.data(), d, m, norm, c.rms_eps, false, 0, out, str);
    pending = nullptr;
  };
  const bool neox = c.rope == RopeStyle::kNeox;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const DeviceLayer& L = s.w.layers[static_cast<size_t>(il)];
    const DevActs ad = s.acts(d), aqd = s.acts(qd), aff = s.acts(ff);
    norm_x(L.attn_norm.data(), ad);
    mark(kNormQuant);
    if (lt_sums(L.wqkv, ad, true)) {
      mark(kQkv);
      infer::rope_kv_store_acc(sums, L.wqkv.row_scale, ad.dq, s.qkv.data(), m, s.pos.data(), s.slot.data(),
                               c.n_head, c.rope_dim, s.inv_freq.data(), neox, s.kv, il, str);
    } else {
      product(L.wqkv, ad, s.qkv.data(), qkv_n, false);
      mark(kQkv);
      infer::rope_kv_store(s.qkv.data(), m, s.pos.data(), s.slot.data(), c.n_head, c.rope_dim,
                           s.inv_freq.data(), neox, s.kv, il, str);
    }
    mark(kRopeKv);
    if (s.prompt)
      infer::attention_prompt(s.qkv.data(), m, s.pos.data(), s.slot.data(), c.n_head, s.kv, il, s.attn.data(),
                              str);
    else
      infer::attention(s.qkv.data(), m, s.pos.data(), s.slot.data(), c.n_head, s.kv, il, splits,
                       s.scratch.data(), s.attn.data(), str);
    mark(kAttention);
    infer::norm_quant(s.attn.data(), qd, m, L.attn_sub_norm.empty() ? none : L.attn_sub_norm.data(),
                      c.rms_eps, false, 0, aqd, str);
    mark(kSubNormQuant);
    if (!sums_to_norm(L.wo, aqd)) product(L.wo, aqd, s.x.data(), d, true);
    mark(kWo);
    norm_x(L.ffn_norm.data(), ad);
    mark(kFfnNormQuant);
    const float* sub = L.ffn_sub_norm.empty() ? none : L.ffn_sub_norm.data();
    if (lt_sums(L.gate_up, ad, false)) {
      mark(kGateUp);
      infer::norm_quant_gated_acc(sums, L.gate_up.row_scale, ad.dq, 2 * ff, m, sub, c.rms_eps, act, aff, str);
    } else {
      product(L.gate_up, ad, s.gu.data(), 2 * ff, false);
      mark(kGateUp);
      infer::norm_quant(s.gu.data(), 2 * ff, m, sub, c.rms_eps, true, act, aff, str);
    }
    mark(kActSubNormQuant);
    if (il + 1 == c.n_layer || !sums_to_norm(L.down, aff)) product(L.down, aff, s.x.data(), d, true);
    mark(kDown);
  }
}

// Logits of `rows` residual rows starting at row `from` into s.logits (and their argmax).
static void head(CudaState& s, const Model& model, int rows, int from, bool greedy) {
  const ModelConfig& c = model.cfg;
  const DeviceTable& h = s.w.head();
  infer::rms_norm_rows(s.x.data() + static_cast<int64_t>(from) * c.n_embd, rows, c.n_embd,
                       s.w.output_norm.data(), c.rms_eps, s.xn.data(), s.stream);
  const infer::HeadActsDev a{s.head_f.data(), s.head_h.data(), s.head_q.data(), s.head_d.data()};
  infer::head_prepare(h.type, s.xn.data(), rows, c.n_embd, a, s.stream);
  const bool lt = s.lt != nullptr && !s.head_h.empty() && rows >= kHeadLtMinRows &&
                  head_gemm_lt(s.lt, s.lt_workspace.data(), s.lt_workspace.bytes(), h.type, h.data.data(),
                               h.rows, h.cols, s.head_h.data(), rows, s.logits.data(), c.n_vocab, s.stream);
  if (!lt)
    infer::head_matmul(h.type, h.data.data(), h.scales.data(), h.rows, h.cols, a, rows, s.logits.data(),
                       c.n_vocab, s.stream);
  if (greedy) infer::argmax_rows(s.logits.data(), rows, c.n_vocab, c.n_vocab, s.argmax.data(), s.stream);
}

void CudaSession::step(int m, bool decode_graph, int head_rows, int head_from, bool greedy) {
  CudaState& s = *st_;
  const ModelConfig& c = model_.cfg;
  // Prompts: one key range per query (the exact softmax, as the CPU's); decode: split ranges.
  const int splits = decode_graph ? attention_splits(opts_.n_ctx, m, c.n_head_kv, s.sms)
                                  : attention_splits(opts_.n_ctx, m, c.n_head_kv, 0);
  s.prompt = !decode_graph;
  if (!decode_graph || !opts_.graphs || s.profiling) {
    run_layers(m, splits, decode_graph);
    if (head_rows > 0) {
      head(s, model_, head_rows, head_from, greedy);
      mark(kHead);
    }
    collect_profile();
    return;
  }
  // Decode: the same launches as a graph, captured after one eager run (which also sets the
  // kernels' attributes) and replayed; inputs come through the device buffers, so a replay
  // needs no new parameters. Greedy and logits steps share the graph (argmax is cheap).
  auto it = s.graphs.find(m);
  if (it == s.graphs.end()) {
    if (!s.warmed[m]++) {
      run_layers(m, splits, true);
      head(s, model_, m, 0, true);
      return;
    }
    cudaGraph_t g = nullptr;
    BN_CUDA(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal));
    run_layers(m, splits, true);
    head(s, model_, m, 0, true);
    BN_CUDA(cudaStreamEndCapture(s.stream, &g));
    cudaGraphExec_t exec = nullptr;
    BN_CUDA(cudaGraphInstantiate(&exec, g, 0));
    (void)cudaGraphDestroy(g);
    it = s.graphs.emplace(m, exec).first;
  }
  BN_CUDA(cudaGraphLaunch(it->second, s.stream));
}

const float* CudaSession::forward_seq(int seq, std::span<const int32_t> tokens, bool all_logits) {
  const ModelConfig& c = model_.cfg;
  CudaState& s = *st_;
  if (seq < 0 || seq >= opts_.max_seqs) fail("cuda: sequence {} of {} slots", seq, opts_.max_seqs);
  const int64_t n = static_cast<int64_t>(tokens.size());
  int64_t& past = n_past_[static_cast<size_t>(seq)];
  if (n == 0) fail("forward: no tokens");
  if (past + n > opts_.n_ctx)
    fail("context overflow: {} cached + {} new tokens > context size {}", past, n, opts_.n_ctx);
  for (int32_t id : tokens)
    if (id < 0 || id >= c.n_vocab) fail("token id {} is out of range (vocabulary of {})", id, c.n_vocab);
  logits_.resize(static_cast<size_t>((all_logits ? n : 1) * c.n_vocab));
  for (int64_t c0 = 0; c0 < n; c0 += s.max_tok) {
    const int m = static_cast<int>(std::min(s.max_tok, n - c0));
    if (c0 > 0) BN_CUDA(cudaStreamSynchronize(s.stream));  // the last chunk's copies left h_in
    for (int i = 0; i < m; ++i) {
      s.h_in[i] = tokens[static_cast<size_t>(c0 + i)];
      s.h_in[s.max_tok + i] = static_cast<int32_t>(past + i);
      s.h_in[2 * s.max_tok + i] = seq;
    }
    BN_CUDA(cudaMemcpyAsync(s.tok.data(), s.h_in, m * 4, cudaMemcpyHostToDevice, s.stream));
    BN_CUDA(cudaMemcpyAsync(s.pos.data(), s.h_in + s.max_tok, m * 4, cudaMemcpyHostToDevice, s.stream));
    BN_CUDA(cudaMemcpyAsync(s.slot.data(), s.h_in + 2 * s.max_tok, m * 4, cudaMemcpyHostToDevice, s.stream));
    const bool last = c0 + m == n;
    const bool single = m == 1 && !all_logits;
    step(m, single, single ? 1 : 0, 0, false);
    past += m;
    if (single) {
      if (last)
        BN_CUDA(cudaMemcpyAsync(logits_.data(), s.logits.data(), c.n_vocab * 4, cudaMemcpyDeviceToHost,
                                s.stream));
      continue;
    }
    // Head rows in groups of the logits buffer: every token with all_logits, else the last one.
    const int first = all_logits ? 0 : (last ? m - 1 : m);
    mark(-1);
    for (int r0 = first; r0 < m; r0 += static_cast<int>(s.head_rows)) {
      const int rows = static_cast<int>(std::min<int64_t>(s.head_rows, m - r0));
      head(s, model_, rows, r0, false);
      float* dst = logits_.data() + (all_logits ? (c0 + r0) * c.n_vocab : 0);
      BN_CUDA(cudaMemcpyAsync(dst, s.logits.data(), static_cast<size_t>(rows * c.n_vocab) * 4,
                              cudaMemcpyDeviceToHost, s.stream));
    }
    mark(kHead);
    collect_profile();
  }
  BN_CUDA(cudaStreamSynchronize(s.stream));
  return logits_.data();
}

// Both decode entries: one step of B tokens, each in its own slot.
static void stage_decode(CudaState& s, std::vector<int64_t>& n_past, int64_t n_ctx, int64_t n_vocab,
                         std::span<const int32_t> tokens, std::span<const int32_t> seqs) {
  const size_t B = tokens.size();
  if (B == 0 || seqs.size() != B) fail("decode: {} tokens for {} sequences", B, seqs.size());
  if (static_cast<int64_t>(B) > static_cast<int64_t>(n_past.size()))
    fail("decode: {} sequences in one step, the session has {} slots", B, n_past.size());
  for (size_t i = 0; i < B; ++i) {
    const int32_t q = seqs[i];
    if (q < 0 || q >= static_cast<int32_t>(n_past.size()))
      fail("decode: sequence {} of {} slots", q, n_past.size());
    for (size_t j = 0; j < i; ++j)
      if (seqs[j] == q) fail("decode: sequence {} twice in one step", q);
    if (n_past[static_cast<size_t>(q)] + 1 > n_ctx)
      fail("context overflow: sequence {} is full ({})", q, n_ctx);
    if (tokens[i] < 0 || tokens[i] >= n_vocab)
      fail("token id {} is out of range (vocabulary of {})", tokens[i], n_vocab);
  }
  for (size_t i = 0; i < B; ++i) {
    s.h_in[i] = tokens[i];
    s.h_in[s.max_tok + static_cast<int64_t>(i)] = static_cast<int32_t>(n_past[static_cast<size_t>(seqs[i])]);
    s.h_in[2 * s.max_tok + static_cast<int64_t>(i)] = seqs[i];
  }
  BN_CUDA(cudaMemcpyAsync(s.tok.data(), s.h_in, B * 4, cudaMemcpyHostToDevice, s.stream));
  BN_CUDA(cudaMemcpyAsync(s.pos.data(), s.h_in + s.max_tok, B * 4, cudaMemcpyHostToDevice, s.stream));
  BN_CUDA(cudaMemcpyAsync(s.slot.data(), s.h_in + 2 * s.max_tok, B * 4, cudaMemcpyHostToDevice, s.stream));
  for (size_t i = 0; i < B; ++i) ++n_past[static_cast<size_t>(seqs[i])];
}

const float* CudaSession::decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs) {
  CudaState& s = *st_;
  const int64_t V = model_.cfg.n_vocab;
  stage_decode(s, n_past_, opts_.n_ctx, V, tokens, seqs);
  const int B = static_cast<int>(tokens.size());
  step(B, true, B, 0, true);
  BN_CUDA(cudaMemcpyAsync(s.h_logits, s.logits.data(), static_cast<size_t>(B * V) * 4, cudaMemcpyDeviceToHost,
                          s.stream));
  BN_CUDA(cudaStreamSynchronize(s.stream));
  return s.h_logits;
}

void CudaSession::decode_greedy(std::span<const int32_t> tokens, std::span<const int32_t> seqs,
                                int32_t* next) {
  CudaState& s = *st_;
  stage_decode(s, n_past_, opts_.n_ctx, model_.cfg.n_vocab, tokens, seqs);
  const int B = static_cast<int>(tokens.size());
  step(B, true, B, 0, true);
  BN_CUDA(cudaMemcpyAsync(s.h_argmax, s.argmax.data(), static_cast<size_t>(B) * 4, cudaMemcpyDeviceToHost,
                          s.stream));
  BN_CUDA(cudaStreamSynchronize(s.stream));
  std::copy(s.h_argmax, s.h_argmax + B, next);
}

static_assert(CudaSession::kDecodeTopMax == infer::kTopKMax);

void CudaSession::decode_top(std::span<const int32_t> tokens, std::span<const int32_t> seqs, int k,
                             float* val, int32_t* id, float* log_z) {
  CudaState& s = *st_;
  const int64_t V = model_.cfg.n_vocab;
  if (k < 1 || k > infer::kTopKMax || k > V)
    fail("decode_top: k = {} (1 to {}, at most the vocabulary of {})", k, infer::kTopKMax, V);
  stage_decode(s, n_past_, opts_.n_ctx, V, tokens, seqs);
  const int B = static_cast<int>(tokens.size());
  step(B, true, B, 0, true);
  // Room for max_seqs rows at kTopKMax: sized once, whatever k the steps ask for.
  const int rows = opts_.max_seqs;
  const size_t val_bytes = static_cast<size_t>(rows) * infer::kTopKMax * 4,
               lz_bytes = static_cast<size_t>(rows) * 4;
  const size_t top_bytes = 2 * val_bytes + lz_bytes;
  if (s.top_dev.bytes() < top_bytes) {
    s.top_dev.resize(top_bytes);
    s.top_scratch.resize(infer::topk_scratch_bytes(rows, V, infer::kTopKMax));
    BN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&s.h_top), top_bytes));
  }
  unsigned char* d = s.top_dev.data();
  auto* dv = reinterpret_cast<float*>(d);
  auto* di = reinterpret_cast<int32_t*>(d + val_bytes);
  auto* dz = reinterpret_cast<float*>(d + 2 * val_bytes);
  infer::topk_rows(s.logits.data(), B, V, V, k, s.top_scratch.data(), dv, di, log_z ? dz : nullptr, s.stream);
  const size_t n = static_cast<size_t>(B) * static_cast<size_t>(k);
  BN_CUDA(cudaMemcpyAsync(s.h_top, dv, n * 4, cudaMemcpyDeviceToHost, s.stream));
  BN_CUDA(cudaMemcpyAsync(s.h_top + val_bytes, di, n * 4, cudaMemcpyDeviceToHost, s.stream));
  if (log_z) BN_CUDA(cudaMemcpyAsync(s.h_top + 2 * val_bytes, dz, B * 4, cudaMemcpyDeviceToHost, s.stream));
  BN_CUDA(cudaStreamSynchronize(s.stream));
  std::memcpy(val, s.h_top, n * 4);
  std::memcpy(id, s.h_top + val_bytes, n * 4);
  if (log_z) std::memcpy(log_z, s.h_top + 2 * val_bytes, static_cast<size_t>(B) * 4);
}

void CudaSession::forward_top(int32_t token, int k, float* val, int32_t* id) {
  const int32_t seq = 0;
  decode_top(std::span(&token, 1), std::span(&seq, 1), k, val, id, nullptr);
}

void CudaSession::mark(int section) {
  CudaState& s = *st_;
  if (!s.profiling) return;
  if (s.events_used == s.events.size()) {
    cudaEvent_t e;
    BN_CUDA(cudaEventCreate(&e));
    s.events.push_back(e);
    s.event_section.push_back(0);
  }
  BN_CUDA(cudaEventRecord(s.events[s.events_used], s.stream));
  s.event_section[s.events_used++] = section;
}

void CudaSession::collect_profile() {
  CudaState& s = *st_;
  if (!s.profiling || s.events_used == 0) return;
  BN_CUDA(cudaEventSynchronize(s.events[s.events_used - 1]));
  s.section_ms.resize(kSections, 0.0);
  for (size_t i = 1; i < s.events_used; ++i) {
    float ms = 0;
    BN_CUDA(cudaEventElapsedTime(&ms, s.events[i - 1], s.events[i]));
    s.section_ms[static_cast<size_t>(s.event_section[i])] += ms;
  }
  s.events_used = 0;
}

void CudaSession::set_profiling(bool on) {
  CudaState& s = *st_;
  if (on && !s.profiling) {
    s.section_ms.assign(kSections, 0.0);  // kept after off, for profile()
    if (!s.fused_timing.empty()) s.fused_timing.fill_bytes(0, s.stream);
  }
  s.profiling = on;
}

std::vector<std::pair<const char*, double>> CudaSession::fused_profile() const {
  const CudaState& s = *st_;
  std::vector<std::pair<const char*, double>> out;
  if (s.fused_timing.empty() || s.section_ms.size() <= kFusedLayers) return out;
  BN_CUDA(cudaStreamSynchronize(s.stream));
  const std::vector<unsigned long long> c = s.fused_timing.download();
  double total = 0;
  for (unsigned long long v : c) total += static_cast<double>(v);
  if (total == 0) return out;
  for (int i = 0; i < infer::kDecodeTimers; ++i)
    out.emplace_back(infer::kDecodeTimerNames[i],
                     s.section_ms[kFusedLayers] * static_cast<double>(c[static_cast<size_t>(i)]) / total);
  return out;
}

std::vector<std::pair<const char*, double>> CudaSession::profile() const {
  std::vector<std::pair<const char*, double>> out;
  for (int i = 0; i < kSections; ++i)
    out.emplace_back(kSectionNames[i], i < static_cast<int>(st_->section_ms.size())
                                           ? st_->section_ms[static_cast<size_t>(i)]
                                           : 0.0);
  return out;
}

double CudaSession::read_probe_gbps(int reps) {
  CudaState& s = *st_;
  const DeviceTable& h = s.w.head();
  cudaEvent_t e0, e1;
  BN_CUDA(cudaEventCreate(&e0));
  BN_CUDA(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int r = 0; r < reps + 1; ++r) {
    BN_CUDA(cudaEventRecord(e0, s.stream));
    infer::read_probe(s.w.ternary.data(), s.w.ternary.bytes(), s.sink.data(), s.stream);
    infer::read_probe(h.data.data(), h.data.bytes() / 16 * 16, s.sink.data(), s.stream);
    BN_CUDA(cudaEventRecord(e1, s.stream));
    BN_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    BN_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (r > 0) best = std::min(best, ms);  // the first read warms up
  }
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
  return static_cast<double>(s.w.ternary.bytes() + h.data.bytes()) / (best * 1e-3) * 1e-9;
}

}  // namespace bitnet::cuda
