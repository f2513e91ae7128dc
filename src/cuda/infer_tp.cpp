#include "cuda/infer_tp.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/error.h"
#include "cuda/buffer.h"
#include "cuda/device.h"
#include "cuda/infer_head_lt.h"
#include "cuda/infer_kernels.h"
#include "cuda/infer_tp_kernels.h"
#include "cuda/infer_weights.h"
#include "cuda/tp_collective.h"
#include "model/tp_plan.h"

namespace bitnet::cuda {

namespace infer {
bool fused_forced();  // infer_session.cpp: BITNET_CUDA_FUSED=1
}  // namespace infer

using infer::DevActs;

namespace {

size_t used_device_bytes(int dev) {
  BN_CUDA(cudaSetDevice(dev));
  size_t free_b = 0, total_b = 0;
  BN_CUDA(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

// As CudaSession's attention_splits (infer_session.cpp), with the model's whole KV head count: the
// split of the keys, and so the attention's bits, are the single-GPU session's.
int attention_splits(int64_t n_ctx, int64_t tokens, int64_t n_head_kv, int sms) {
  const int64_t min_s = (n_ctx + infer::attention_max_chunk() - 1) / infer::attention_max_chunk();
  if (sms == 0) return static_cast<int>(min_s);
  const int64_t want = (2 * sms + tokens * n_head_kv - 1) / (tokens * n_head_kv);
  const int64_t by_len = (n_ctx + 1023) / 1024;
  return static_cast<int>(std::max<int64_t>(min_s, std::min<int64_t>({want, by_len, 64})));
}

}  // namespace

// One rank: its shard of the weights, its heads' KV cache and its buffers, on its GPU.
struct TpRankState {
  int device = 0;
  cudaStream_t stream = nullptr;
  TpRank part;
  int64_t lq = 0, lkv = 0, lff = 0;  // its query heads, KV heads, FFN rows
  DeviceModel w;
  Buffer<__half> k, v;
  infer::KvGeom kv;
  Buffer<float> x, qkv, attn, attn_all, attn_full, gu, gu_all, gu_full, scratch;
  Buffer<int8_t> aq;
  Buffer<float> adq;
  Buffer<int32_t> acc, tok, pos, slot;
};

struct TpState {
  std::vector<TpRankState> r;
  std::vector<cudaStream_t> streams;  // distinct (same-device: one), owned
  std::vector<int> stream_device;
  std::unique_ptr<TpCollective> coll;
  int sms = 132;
  int64_t max_tok = 0, head_rows = 0;
  infer::ColSegments attn_segs, gu_segs;  // for the step's m (set in run_layers)
  // Rank 0's head buffers, as CudaSession's.
  Buffer<float> xn, logits, head_f, head_d;
  Buffer<int8_t> head_q;
  Buffer<uint16_t> head_h;
  cublasLtHandle_t lt = nullptr;
  Buffer<unsigned char> lt_workspace;
  Buffer<int32_t> argmax;
  std::vector<Buffer<double>> inv_freq_r;  // RoPE's inverse frequencies, one per distinct device
  int32_t* h_in = nullptr;
  int32_t* h_argmax = nullptr;
  std::map<int, std::vector<cudaGraphExec_t>> graphs;  // per batch size: one per stream
  std::map<int, int> warmed;
  std::vector<size_t> bytes_before, bytes_after;  // per distinct device
  bool prompt = false;

  ~TpState() {
    for (auto& [b, gs] : graphs)
      for (cudaGraphExec_t g : gs) (void)cudaGraphExecDestroy(g);
    if (h_in) (void)cudaFreeHost(h_in);
    if (h_argmax) (void)cudaFreeHost(h_argmax);
    if (lt) (void)cublasLtDestroy(lt);
    coll.reset();  // NCCL's communicators before the streams
    for (cudaStream_t s : streams) (void)cudaStreamDestroy(s);
  }
};

void check_tp_devices(const std::vector<int>& devices) {
  if (devices.empty()) fail("tensor parallel: the device list is empty");
  const int have = static_cast<int>(cuda::devices().size());
  for (int d : devices)
    if (d < 0 || d >= have)
      fail("tensor parallel: GPU {} does not exist; this machine has {} GPU{}", d, have,
           have == 1 ? "" : "s");
  const std::set<int> distinct(devices.begin(), devices.end());
  if (distinct.size() != 1 && distinct.size() != devices.size())
    fail(
        "tensor parallel: the device list repeats some GPUs but not all; give one GPU for every rank "
        "(same-device collectives) or distinct GPUs (NCCL)");
  if (devices.size() > static_cast<size_t>(infer::kMaxColSegments / 2))
    fail("tensor parallel: {} ranks; at most {}", devices.size(), infer::kMaxColSegments / 2);
}

CudaTpSession::CudaTpSession(const Model& model, const CudaSessionOptions& opts,
                             const std::vector<int>& devices)
    : model_(model), opts_(opts), st_(std::make_unique<TpState>()) {
  require_device();
  check_tp_devices(devices);
  const ModelConfig& c = model.cfg;
  const int R = static_cast<int>(devices.size());
  if (opts.n_ctx <= 0) fail("context size must be positive, got {}", opts.n_ctx);
  if (opts.max_seqs < 1) fail("cuda: at least one sequence slot, got {}", opts.max_seqs);
  if (opts.fused_decode || infer::fused_forced())
    fail("tensor parallel: the fused decode kernel (BITNET_CUDA_FUSED) runs on one GPU only");
  if (!infer::attention_supported(c.head_dim, c.n_head / c.n_head_kv))
    fail("cuda: attention with head_dim {} and {} query heads per KV head is not built (32/64/128; 1/2/4/8)",
         c.head_dim, c.n_head / c.n_head_kv);
  const int64_t widest = std::max({c.n_embd, c.n_ff, c.q_dim() + 2 * c.kv_dim() + c.rope_dim});
  if (widest > infer::row_kernels_max_floats())
    fail("cuda: rows of {} values are wider than the norm and RoPE kernels' shared memory ({} floats)",
         widest, infer::row_kernels_max_floats());
  const std::vector<TpRank> plan = tp_plan(c, R);
  TpState& s = *st_;
  const bool same = std::set<int>(devices.begin(), devices.end()).size() == 1 && R > 1;
  s.sms = cuda::devices()[static_cast<size_t>(devices[0])].multiprocessors;
  std::vector<int> distinct_dev = same ? std::vector<int>{devices[0]} : devices;
  for (int d : distinct_dev) s.bytes_before.push_back(used_device_bytes(d));
  for (int d : distinct_dev) {
    BN_CUDA(cudaSetDevice(d));
    cudaStream_t st = nullptr;
    BN_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    s.streams.push_back(st);
    s.stream_device.push_back(d);
    Buffer<double> inv;
    std::vector<double> f(static_cast<size_t>(c.rope_dim / 2));
    for (int64_t i = 0; i < c.rope_dim / 2; ++i)
      f[static_cast<size_t>(i)] = std::pow(static_cast<double>(c.rope_theta),
                                           -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim));
    inv.upload(f);
    s.inv_freq_r.push_back(std::move(inv));
  }
  s.max_tok = std::max<int64_t>(std::max<int64_t>(1, opts.n_ubatch), opts.max_seqs);
  s.head_rows = std::max<int64_t>(8, opts.max_seqs);
  const int64_t T = s.max_tok, hd = c.head_dim;
  const int64_t kpad_max = (std::max({c.n_embd, c.q_dim(), c.n_ff}) + 63) / 64 * 64;
  s.r.resize(static_cast<size_t>(R));
  for (int i = 0; i < R; ++i) {
    TpRankState& q = s.r[static_cast<size_t>(i)];
    q.device = devices[static_cast<size_t>(i)];
    q.stream = s.streams[same ? 0 : static_cast<size_t>(i)];
    q.part = plan[static_cast<size_t>(i)];
    q.lq = q.part.q_heads.size();
    q.lkv = q.part.kv_heads.size();
    q.lff = q.part.ff.size();
    BN_CUDA(cudaSetDevice(q.device));
    q.w = upload_model_shard(model, q.part, i == 0);
    q.kv.n_layer = c.n_layer;
    q.kv.n_head_kv = q.lkv;
    q.kv.n_ctx = opts.n_ctx;
    q.kv.head_dim = hd;
    const size_t cache = static_cast<size_t>(opts.max_seqs * c.n_layer * opts.n_ctx * q.lkv * hd);
    q.k.resize(cache);
    q.v.resize(cache);
    q.k.fill_bytes(0, q.stream);
    q.v.fill_bytes(0, q.stream);
    q.kv.k = q.k.data();
    q.kv.v = q.v.data();
    q.x.resize(static_cast<size_t>(T * c.n_embd));
    q.qkv.resize(static_cast<size_t>(T * (q.lq + 2 * q.lkv) * hd));
    q.attn.resize(static_cast<size_t>(T * q.lq * hd));
    q.attn_all.resize(static_cast<size_t>(T * c.q_dim()));
    q.attn_full.resize(static_cast<size_t>(T * c.q_dim()));
    q.gu.resize(static_cast<size_t>(T * 2 * q.lff));
    q.gu_all.resize(static_cast<size_t>(T * 2 * c.n_ff));
    q.gu_full.resize(static_cast<size_t>(T * 2 * c.n_ff));
    q.aq.resize(static_cast<size_t>(T * kpad_max));
    q.adq.resize(static_cast<size_t>(T));
    q.acc.resize(static_cast<size_t>(T * c.n_embd));
    q.tok.resize(static_cast<size_t>(T));
    q.pos.resize(static_cast<size_t>(T));
    q.slot.resize(static_cast<size_t>(T));
    size_t scratch = 0;
    for (int b = 1; b <= opts.max_seqs; ++b)
      scratch = std::max(
          scratch, infer::attention_scratch_floats(b, q.lq, hd, opts.n_ctx,
                                                   attention_splits(opts.n_ctx, b, c.n_head_kv, s.sms)));
    scratch =
        std::max(scratch, infer::attention_scratch_floats(T, q.lq, hd, opts.n_ctx,
                                                          attention_splits(opts.n_ctx, T, c.n_head_kv, 0)));
    q.scratch.resize(std::max<size_t>(scratch, 1));
  }
  // Rank 0 computes the logits.
  TpRankState& r0 = s.r[0];
  BN_CUDA(cudaSetDevice(r0.device));
  s.xn.resize(static_cast<size_t>(s.head_rows * c.n_embd));
  s.logits.resize(static_cast<size_t>(s.head_rows * c.n_vocab));
  s.head_f.resize(static_cast<size_t>(s.head_rows * c.n_embd));
  s.head_q.resize(static_cast<size_t>(s.head_rows * c.n_embd));
  s.head_d.resize(static_cast<size_t>(s.head_rows * c.n_embd / 32));
  const int htype = r0.w.head().type;
  if ((htype == infer::kHeadF16 || htype == infer::kHeadBF16) && s.head_rows >= kHeadLtMinRows) {
    s.head_h.resize(static_cast<size_t>(s.head_rows * c.n_embd));
    BN_CUBLAS(cublasLtCreate(&s.lt));
    s.lt_workspace.resize(size_t{4} << 20);
  }
  s.argmax.resize(static_cast<size_t>(s.head_rows));
  BN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&s.h_in), static_cast<size_t>(3 * T) * 4));
  BN_CUDA(cudaMallocHost(reinterpret_cast<void**>(&s.h_argmax), static_cast<size_t>(s.head_rows) * 4));
  // A list of one device is one NCCL rank: what a one-GPU machine can run of the NCCL path.
  s.coll = same ? same_device_collective(R, s.streams[0]) : nccl_collective(devices, s.streams);
  synchronize();
  for (size_t i = 0; i < distinct_dev.size(); ++i)
    s.bytes_after.push_back(used_device_bytes(distinct_dev[i]));
  n_past_.assign(static_cast<size_t>(opts.max_seqs), 0);
}

CudaTpSession::~CudaTpSession() = default;

int CudaTpSession::ranks() const {
  return static_cast<int>(st_->r.size());
}
const char* CudaTpSession::collective() const {
  return st_->coll->name();
}
size_t CudaTpSession::kv_cache_bytes() const {
  size_t b = 0;
  for (const TpRankState& q : st_->r) b += q.k.bytes() + q.v.bytes();
  return b;
}
size_t CudaTpSession::device_bytes() const {
  size_t b = 0;
  for (size_t i = 0; i < st_->bytes_after.size(); ++i) b += st_->bytes_after[i] - st_->bytes_before[i];
  return b;
}
size_t CudaTpSession::decode_weight_bytes() const {
  size_t most = 0;
  for (const TpRankState& q : st_->r) most = std::max(most, q.w.ternary.bytes());
  return most + st_->r[0].w.head().bytes();
}
void CudaTpSession::synchronize() {
  TpState& s = *st_;
  for (size_t i = 0; i < s.streams.size(); ++i) {
    BN_CUDA(cudaSetDevice(s.stream_device[i]));
    BN_CUDA(cudaStreamSynchronize(s.streams[i]));
  }
}

void CudaTpSession::truncate_seq(int seq, int64_t n) {
  BN_CHECK(seq >= 0 && seq < opts_.max_seqs && n >= 0 && n <= n_past_[static_cast<size_t>(seq)],
           "truncate sequence {} to {}", seq, n);
  n_past_[static_cast<size_t>(seq)] = n;
}

// The layers over m tokens (inputs on every rank's device); every rank's residual stream ends in
// its x, all equal.
void CudaTpSession::run_layers(int m, int splits) {
  TpState& s = *st_;
  const ModelConfig& c = model_.cfg;
  const int64_t d = c.n_embd, qd = c.q_dim(), ff = c.n_ff, hd = c.head_dim;
  const int64_t kpad_d = (d + 63) / 64 * 64, kpad_q = (qd + 63) / 64 * 64, kpad_f = (ff + 63) / 64 * 64;
  const size_t R = s.r.size();
  const float* none = nullptr;
  const int act = c.act == FfnAct::kRelu2 ? 0 : 1;
  auto product = [&](const infer::DevTernary& w, const DevActs& a, float* y, int64_t ldy, cudaStream_t str) {
    infer::ternary_product(w, a, m, y, ldy, false, str);
  };
  // A column shard's int32 sums: its columns [c0, ...) of the full quantized rows (stride k_pad).
  auto partial = [&](const infer::DevTernary& w, TpRankState& q, int64_t c0, int64_t kpad, cudaStream_t str) {
    const DevActs a{q.aq.data() + c0, q.adq.data(), w.k, kpad};
    infer::ternary_product_acc(w, a, m, q.acc.data(), str);
  };
  auto on = [&](TpRankState& q) { BN_CUDA(cudaSetDevice(q.device)); };
  // Where each rank's gathered block goes in the full rows (blocks of m rows, in rank order).
  s.attn_segs.n = s.gu_segs.n = 0;
  std::vector<size_t> attn_count(R), gu_count(R);
  int64_t a_off = 0, g_off = 0;
  for (size_t i = 0; i < R; ++i) {
    const TpRankState& q = s.r[i];
    const int64_t wa = q.lq * hd, wf = q.lff;
    s.attn_segs.seg[s.attn_segs.n++] = {q.part.q_heads.begin * hd, wa, a_off, wa};
    s.gu_segs.seg[s.gu_segs.n++] = {q.part.ff.begin, wf, g_off, 2 * wf};
    s.gu_segs.seg[s.gu_segs.n++] = {ff + q.part.ff.begin, wf, g_off + wf, 2 * wf};
    attn_count[i] = static_cast<size_t>(m * wa);
    gu_count[i] = static_cast<size_t>(m * 2 * wf);
    a_off += m * wa;
    g_off += m * 2 * wf;
  }
  std::vector<const float*> attn_part(R), gu_part(R);
  std::vector<float*> attn_all(R), gu_all(R);
  std::vector<int32_t*> acc(R);
  for (size_t i = 0; i < R; ++i) {
    attn_part[i] = s.r[i].attn.data();
    gu_part[i] = s.r[i].gu.data();
    attn_all[i] = s.r[i].attn_all.data();
    gu_all[i] = s.r[i].gu_all.data();
    acc[i] = s.r[i].acc.data();
  }
  for (TpRankState& q : s.r) {
    on(q);
    infer::embed_rows(q.w.embd.data.data(), q.w.embd.scales.data(), q.w.embd.type, d, q.tok.data(), m,
                      q.x.data(), q.stream);
  }
  for (int64_t il = 0; il < c.n_layer; ++il) {
    for (size_t i = 0; i < R; ++i) {
      TpRankState& q = s.r[i];
      const DeviceLayer& L = q.w.layers[static_cast<size_t>(il)];
      on(q);
      const DevActs ad{q.aq.data(), q.adq.data(), d, kpad_d};
      infer::norm_quant(q.x.data(), d, m, L.attn_norm.data(), c.rms_eps, false, 0, ad, q.stream);
      product(L.wqkv, ad, q.qkv.data(), (q.lq + 2 * q.lkv) * hd, q.stream);
      infer::rope_kv_store(q.qkv.data(), m, q.pos.data(), q.slot.data(), q.lq, c.rope_dim,
                           s.inv_freq_r[s.streams.size() == 1 ? 0 : i].data(), c.rope == RopeStyle::kNeox,
                           q.kv, il, q.stream);
      if (s.prompt)
        infer::attention_prompt(q.qkv.data(), m, q.pos.data(), q.slot.data(), q.lq, q.kv, il, q.attn.data(),
                                q.stream);
      else
        infer::attention(q.qkv.data(), m, q.pos.data(), q.slot.data(), q.lq, q.kv, il, splits,
                         q.scratch.data(), q.attn.data(), q.stream);
    }
    s.coll->all_gather_f32(attn_part, attn_count, attn_all);
    for (size_t i = 0; i < R; ++i) {
      TpRankState& q = s.r[i];
      const DeviceLayer& L = q.w.layers[static_cast<size_t>(il)];
      on(q);
      // One token: the rank blocks, one after another, are the full row already.
      const float* full = q.attn_all.data();
      if (m > 1) {
        infer::place_cols(q.attn_all.data(), m, s.attn_segs, q.attn_full.data(), qd, q.stream);
        full = q.attn_full.data();
      }
      const DevActs aqd{q.aq.data(), q.adq.data(), qd, kpad_q};
      infer::norm_quant(full, qd, m, L.attn_sub_norm.empty() ? none : L.attn_sub_norm.data(), c.rms_eps,
                        false, 0, aqd, q.stream);
      partial(L.wo, q, q.part.o_cols.begin, kpad_q, q.stream);
    }
    s.coll->all_reduce_i32(acc, static_cast<size_t>(m * d));
    for (size_t i = 0; i < R; ++i) {
      TpRankState& q = s.r[i];
      const DeviceLayer& L = q.w.layers[static_cast<size_t>(il)];
      on(q);
      infer::acc_epilogue(q.acc.data(), m, d, L.wo.row_scale, q.adq.data(), q.x.data(), d, true, q.stream);
      const DevActs ad{q.aq.data(), q.adq.data(), d, kpad_d};
      infer::norm_quant(q.x.data(), d, m, L.ffn_norm.data(), c.rms_eps, false, 0, ad, q.stream);
      product(L.gate_up, ad, q.gu.data(), 2 * q.lff, q.stream);
    }
    s.coll->all_gather_f32(gu_part, gu_count, gu_all);
    for (size_t i = 0; i < R; ++i) {
      TpRankState& q = s.r[i];
      const DeviceLayer& L = q.w.layers[static_cast<size_t>(il)];
      on(q);
      infer::place_cols(q.gu_all.data(), m, s.gu_segs, q.gu_full.data(), 2 * ff, q.stream);
      const DevActs aff{q.aq.data(), q.adq.data(), ff, kpad_f};
      infer::norm_quant(q.gu_full.data(), 2 * ff, m, L.ffn_sub_norm.empty() ? none : L.ffn_sub_norm.data(),
                        c.rms_eps, true, act, aff, q.stream);
      partial(L.down, q, q.part.ff.begin, kpad_f, q.stream);
    }
    s.coll->all_reduce_i32(acc, static_cast<size_t>(m * d));
    for (size_t i = 0; i < R; ++i) {
      TpRankState& q = s.r[i];
      const DeviceLayer& L = q.w.layers[static_cast<size_t>(il)];
      on(q);
      infer::acc_epilogue(q.acc.data(), m, d, L.down.row_scale, q.adq.data(), q.x.data(), d, true, q.stream);
    }
  }
}

// Logits of `rows` residual rows from row `from` of rank 0's x (and their argmax): CudaSession's
// head, on rank 0.
void CudaTpSession::head(int rows, int from, bool greedy) {
  TpState& s = *st_;
  TpRankState& q = s.r[0];
  const ModelConfig& c = model_.cfg;
  const DeviceTable& h = q.w.head();
  BN_CUDA(cudaSetDevice(q.device));
  infer::rms_norm_rows(q.x.data() + static_cast<int64_t>(from) * c.n_embd, rows, c.n_embd,
                       q.w.output_norm.data(), c.rms_eps, s.xn.data(), q.stream);
  const infer::HeadActsDev a{s.head_f.data(), s.head_h.data(), s.head_q.data(), s.head_d.data()};
  infer::head_prepare(h.type, s.xn.data(), rows, c.n_embd, a, q.stream);
  const bool lt = s.lt != nullptr && rows >= kHeadLtMinRows &&
                  head_gemm_lt(s.lt, s.lt_workspace.data(), s.lt_workspace.bytes(), h.type, h.data.data(),
                               h.rows, h.cols, s.head_h.data(), rows, s.logits.data(), c.n_vocab, q.stream);
  if (!lt)
    infer::head_matmul(h.type, h.data.data(), h.scales.data(), h.rows, h.cols, a, rows, s.logits.data(),
                       c.n_vocab, q.stream);
  if (greedy) infer::argmax_rows(s.logits.data(), rows, c.n_vocab, c.n_vocab, s.argmax.data(), q.stream);
}

void CudaTpSession::step(int m, bool decode_graph, int head_rows, int head_from, bool greedy) {
  TpState& s = *st_;
  const ModelConfig& c = model_.cfg;
  const int splits = decode_graph ? attention_splits(opts_.n_ctx, m, c.n_head_kv, s.sms)
                                  : attention_splits(opts_.n_ctx, m, c.n_head_kv, 0);
  s.prompt = !decode_graph;
  if (!decode_graph || !opts_.graphs) {
    run_layers(m, splits);
    if (head_rows > 0) head(head_rows, head_from, greedy);
    return;
  }
  // Decode: one eager run, then every rank's stream captured into its own graph (NCCL's calls
  // included) and replayed, as CudaSession does.
  auto it = s.graphs.find(m);
  if (it == s.graphs.end()) {
    if (!s.warmed[m]++) {
      run_layers(m, splits);
      head(m, 0, true);
      return;
    }
    for (size_t i = 0; i < s.streams.size(); ++i) {
      BN_CUDA(cudaSetDevice(s.stream_device[i]));
      BN_CUDA(cudaStreamBeginCapture(s.streams[i], cudaStreamCaptureModeThreadLocal));
    }
    run_layers(m, splits);
    head(m, 0, true);
    std::vector<cudaGraphExec_t> execs;
    for (size_t i = 0; i < s.streams.size(); ++i) {
      BN_CUDA(cudaSetDevice(s.stream_device[i]));
      cudaGraph_t g = nullptr;
      BN_CUDA(cudaStreamEndCapture(s.streams[i], &g));
      cudaGraphExec_t exec = nullptr;
      BN_CUDA(cudaGraphInstantiate(&exec, g, 0));
      (void)cudaGraphDestroy(g);
      execs.push_back(exec);
    }
    it = s.graphs.emplace(m, std::move(execs)).first;
  }
  for (size_t i = 0; i < s.streams.size(); ++i) {
    BN_CUDA(cudaSetDevice(s.stream_device[i]));
    BN_CUDA(cudaGraphLaunch(it->second[i], s.streams[i]));
  }
}

// h_in's first m tokens, positions and slots to every rank.
void CudaTpSession::stage_inputs(int m) {
  TpState& s = *st_;
  for (TpRankState& q : s.r) {
    BN_CUDA(cudaSetDevice(q.device));
    BN_CUDA(
        cudaMemcpyAsync(q.tok.data(), s.h_in, static_cast<size_t>(m) * 4, cudaMemcpyHostToDevice, q.stream));
    BN_CUDA(cudaMemcpyAsync(q.pos.data(), s.h_in + s.max_tok, static_cast<size_t>(m) * 4,
                            cudaMemcpyHostToDevice, q.stream));
    BN_CUDA(cudaMemcpyAsync(q.slot.data(), s.h_in + 2 * s.max_tok, static_cast<size_t>(m) * 4,
                            cudaMemcpyHostToDevice, q.stream));
  }
}

const float* CudaTpSession::forward_seq(int seq, std::span<const int32_t> tokens, bool all_logits) {
  const ModelConfig& c = model_.cfg;
  TpState& s = *st_;
  cudaStream_t out = s.r[0].stream;
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
    if (c0 > 0) synchronize();  // the last chunk's copies left h_in
    for (int i = 0; i < m; ++i) {
      s.h_in[i] = tokens[static_cast<size_t>(c0 + i)];
      s.h_in[s.max_tok + i] = static_cast<int32_t>(past + i);
      s.h_in[2 * s.max_tok + i] = seq;
    }
    stage_inputs(m);
    const bool last = c0 + m == n;
    const bool single = m == 1 && !all_logits;
    step(m, single, single ? 1 : 0, 0, false);
    past += m;
    BN_CUDA(cudaSetDevice(s.r[0].device));
    if (single) {
      if (last)
        BN_CUDA(cudaMemcpyAsync(logits_.data(), s.logits.data(), static_cast<size_t>(c.n_vocab) * 4,
                                cudaMemcpyDeviceToHost, out));
      continue;
    }
    const int first = all_logits ? 0 : (last ? m - 1 : m);
    for (int r0 = first; r0 < m; r0 += static_cast<int>(s.head_rows)) {
      const int rows = static_cast<int>(std::min<int64_t>(s.head_rows, m - r0));
      head(rows, r0, false);
      float* dst = logits_.data() + (all_logits ? (c0 + r0) * c.n_vocab : 0);
      BN_CUDA(cudaMemcpyAsync(dst, s.logits.data(), static_cast<size_t>(rows * c.n_vocab) * 4,
                              cudaMemcpyDeviceToHost, out));
    }
  }
  synchronize();
  return logits_.data();
}

namespace {

// As CudaSession's stage_decode: checks, then h_in; n_past advanced.
void decode_inputs(int32_t* h_in, int64_t max_tok, std::vector<int64_t>& n_past, int64_t n_ctx,
                   int64_t n_vocab, std::span<const int32_t> tokens, std::span<const int32_t> seqs) {
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
    h_in[i] = tokens[i];
    h_in[max_tok + static_cast<int64_t>(i)] = static_cast<int32_t>(n_past[static_cast<size_t>(seqs[i])]);
    h_in[2 * max_tok + static_cast<int64_t>(i)] = seqs[i];
  }
  for (size_t i = 0; i < B; ++i) ++n_past[static_cast<size_t>(seqs[i])];
}

}  // namespace

const float* CudaTpSession::decode(std::span<const int32_t> tokens, std::span<const int32_t> seqs) {
  TpState& s = *st_;
  const int64_t V = model_.cfg.n_vocab;
  decode_inputs(s.h_in, s.max_tok, n_past_, opts_.n_ctx, V, tokens, seqs);
  const int B = static_cast<int>(tokens.size());
  stage_inputs(B);
  step(B, true, B, 0, true);
  logits_.resize(static_cast<size_t>(B * V));
  BN_CUDA(cudaSetDevice(s.r[0].device));
  BN_CUDA(cudaMemcpyAsync(logits_.data(), s.logits.data(), static_cast<size_t>(B * V) * 4,
                          cudaMemcpyDeviceToHost, s.r[0].stream));
  synchronize();
  return logits_.data();
}

void CudaTpSession::decode_greedy(std::span<const int32_t> tokens, std::span<const int32_t> seqs,
                                  int32_t* next) {
  TpState& s = *st_;
  decode_inputs(s.h_in, s.max_tok, n_past_, opts_.n_ctx, model_.cfg.n_vocab, tokens, seqs);
  const int B = static_cast<int>(tokens.size());
  stage_inputs(B);
  step(B, true, B, 0, true);
  BN_CUDA(cudaSetDevice(s.r[0].device));
  BN_CUDA(cudaMemcpyAsync(s.h_argmax, s.argmax.data(), static_cast<size_t>(B) * 4, cudaMemcpyDeviceToHost,
                          s.r[0].stream));
  synchronize();
  std::copy(s.h_argmax, s.h_argmax + B, next);
}

}  // namespace bitnet::cuda
