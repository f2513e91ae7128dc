#include "cuda/infer_weights.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/dequant.h"
#include "quant/q6_kx.h"
#include "quant/q8_0x.h"
#include "quant/shard.h"

namespace bitnet::cuda {

std::vector<uint32_t> native_to_gpu_words(const TernaryMatrix& m) {
  // TNAT chunk (rb, c) holds at bytes 4r .. 4r+3 row 16 rb + r's columns 16c .. 16c+15 in exactly
  // the word encoding the GPU layout uses: the repack only regroups words by row.
  const int64_t words = m.k_pad / 16;
  std::vector<uint32_t> out(static_cast<size_t>(m.n * words));
  for (int64_t n = 0; n < m.n; ++n) {
    const uint8_t* blk = m.block(n / kRowBlock);
    const int64_t r = n % kRowBlock;
    for (int64_t c = 0; c < words; ++c)
      std::memcpy(&out[static_cast<size_t>(n * words + c)], blk + c * kChunkBytes + 4 * r, 4);
  }
  return out;
}

namespace {

// Q8_0 rows (34-byte blocks) or Q8_0X rows (544-byte superblocks) -> int8 codes and half scales.
void split_q8(const Tensor& t, std::vector<uint8_t>& codes, std::vector<uint8_t>& scales) {
  const int64_t rows = t.rows(), n = t.cols(), nb = n / 32;
  codes.resize(static_cast<size_t>(rows * n));
  scales.resize(static_cast<size_t>(rows * nb * 2));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = t.data() + static_cast<size_t>(r) * t.row_stride_bytes();
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* q = &codes[static_cast<size_t>(r * n + 32 * b)];
      uint8_t* d = &scales[static_cast<size_t>((r * nb + b) * 2)];
      if (t.dtype() == DType::Q8_0) {
        std::memcpy(d, row + b * 34, 2);
        std::memcpy(q, row + b * 34 + 2, 32);
      } else {  // Q8_0X: block L of superblock s, values stored + 128 at q8x_quant_offset
        const uint8_t* sb = row + (b / kQ8xBlocks) * kQ8xBytes;
        const int64_t L = b % kQ8xBlocks;
        std::memcpy(d, sb + 2 * L, 2);
        for (int64_t i = 0; i < 32; ++i)
          q[i] = static_cast<uint8_t>(sb[kQ8xScaleBytes + q8x_quant_offset(32 * L + i)] - 128);
      }
    }
  }
}

template <typename T>
Buffer<T> upload_vec(const std::vector<T>& v) {
  Buffer<T> b;
  b.upload(v);
  return b;
}

}  // namespace

DeviceTable upload_table(const Tensor& t, const char* what) {
  DeviceTable d;
  d.rows = t.rows();
  d.cols = t.cols();
  const size_t bytes = t.nbytes();
  switch (t.dtype()) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q6_K:
      d.type = t.dtype() == DType::F32    ? infer::kHeadF32
               : t.dtype() == DType::F16  ? infer::kHeadF16
               : t.dtype() == DType::BF16 ? infer::kHeadBF16
                                          : infer::kHeadQ6K;
      d.data.upload(t.data(), bytes);
      break;
    case DType::Q6_KX: {  // the CPU's interleaved Q6_K, read back into Q6_K's bytes
      std::vector<uint8_t> q6(bytes);
      unpack_q6_kx_rows(t.data(), d.rows, d.cols, q6.data());
      d.type = infer::kHeadQ6K;
      d.data.upload(q6);
      break;
    }
    case DType::Q8_0:
    case DType::Q8_0X: {
      if (d.cols % 32) fail("{}: Q8_0 rows of {} values", what, d.cols);
      std::vector<uint8_t> codes, scales;
      split_q8(t, codes, scales);
      d.type = infer::kHeadQ8;
      d.data.upload(codes);
      d.scales.upload(scales);
      break;
    }
    default: {
      if (!dequant_supported(t.dtype()))
        fail("{}: type {} has no CUDA kernel and cannot be dequantized", what, dtype_name(t.dtype()));
      std::fprintf(stderr, "cuda: %s is %s, which has no CUDA kernel: dequantized to F16 on the GPU\n", what,
                   std::string(dtype_name(t.dtype())).c_str());
      std::vector<float> row(static_cast<size_t>(d.cols));
      std::vector<uint16_t> h(static_cast<size_t>(d.rows * d.cols));
      for (int64_t r = 0; r < d.rows; ++r) {
        dequantize_row(t.dtype(), t.data() + static_cast<size_t>(r) * t.row_stride_bytes(), d.cols,
                       row.data());
        for (int64_t i = 0; i < d.cols; ++i)
          h[static_cast<size_t>(r * d.cols + i)] = f32_to_f16(row[static_cast<size_t>(i)]);
      }
      d.type = infer::kHeadF16;
      d.data.upload(reinterpret_cast<const uint8_t*>(h.data()), h.size() * 2);
      break;
    }
  }
  const int64_t align = d.type == infer::kHeadQ8 ? 32 : d.type == infer::kHeadQ6K ? 256 : 8;
  if (d.cols % align)
    fail("{}: rows of {} values; the CUDA head needs a multiple of {}", what, d.cols, align);
  return d;
}

namespace {

// The layers' ternary matrices (4 per layer: qkv, o, gate|up, down) into one allocation, each
// 256-byte aligned, and the layers' norms (whole: the sub-norms run on full rows on every rank).
void upload_layers(DeviceModel& dm, const Model& m, const std::vector<const TernaryMatrix*>& mats) {
  std::vector<size_t> off, soff;
  size_t total = 0, stotal = 0;
  for (const TernaryMatrix* t : mats) {
    off.push_back(total);
    soff.push_back(stotal);
    total += (static_cast<size_t>(t->n * t->k_pad / 4) + 255) / 256 * 256;
    stotal += static_cast<size_t>(t->n);
  }
  dm.ternary.resize(total);
  dm.row_scales.resize(stotal);
  std::vector<infer::DevTernary> views;
  for (size_t i = 0; i < mats.size(); ++i) {
    const TernaryMatrix& t = *mats[i];
    const std::vector<uint32_t> words = native_to_gpu_words(t);
    BN_CUDA(cudaMemcpy(dm.ternary.data() + off[i], words.data(), words.size() * 4, cudaMemcpyHostToDevice));
    BN_CUDA(cudaMemcpy(dm.row_scales.data() + soff[i], t.row_scale(), static_cast<size_t>(t.n) * 4,
                       cudaMemcpyHostToDevice));
    views.push_back({reinterpret_cast<const uint32_t*>(dm.ternary.data() + off[i]),
                     dm.row_scales.data() + soff[i], t.n, t.k, t.k_pad});
  }
  for (size_t il = 0; il < m.layers.size(); ++il) {
    const LayerWeights& L = m.layers[il];
    DeviceLayer d;
    d.attn_norm = upload_vec(L.attn_norm);
    d.attn_sub_norm = upload_vec(L.attn_sub_norm);
    d.ffn_norm = upload_vec(L.ffn_norm);
    d.ffn_sub_norm = upload_vec(L.ffn_sub_norm);
    d.wqkv = views[4 * il];
    d.wo = views[4 * il + 1];
    d.gate_up = views[4 * il + 2];
    d.down = views[4 * il + 3];
    dm.layers.push_back(std::move(d));
  }
}

}  // namespace

DeviceModel upload_model(const Model& m) {
  DeviceModel dm;
  std::vector<const TernaryMatrix*> mats;
  for (const LayerWeights& L : m.layers)
    for (const TernaryMatrix* t : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) mats.push_back(t);
  upload_layers(dm, m, mats);
  dm.embd = upload_table(m.token_embd, "token_embd");
  // A tied head may have been regrouped into its own Q8_0X or Q6_KX copy for the CPU kernel: same
  // numbers.
  dm.tied = m.tied_head;
  if (!dm.tied) dm.head_own = upload_table(m.output, "output");
  dm.output_norm = upload_vec(m.output_norm);
  return dm;
}

DeviceModel upload_model_shard(const Model& m, const TpRank& r, bool head) {
  const ModelConfig& c = m.cfg;
  const int64_t hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff;
  // Sharded on the host one matrix at a time (unpacked, cut, repacked), then uploaded together.
  std::vector<TernaryMatrix> shards;
  shards.reserve(4 * m.layers.size());
  for (const LayerWeights& L : m.layers) {
    const Range q = r.q_heads, kv = r.kv_heads;
    shards.push_back(shard_row_ranges(L.wqkv, {{q.begin * hd, q.end * hd},
                                               {qd + kv.begin * hd, qd + kv.end * hd},
                                               {qd + kvd + kv.begin * hd, qd + kvd + kv.end * hd}}));
    shards.push_back(shard_cols(L.wo, r.o_cols.begin, r.o_cols.end));
    shards.push_back(
        shard_row_ranges(L.w_gate_up, {{r.ff.begin, r.ff.end}, {ff + r.ff.begin, ff + r.ff.end}}));
    shards.push_back(shard_cols(L.w_down, r.ff.begin, r.ff.end));
  }
  std::vector<const TernaryMatrix*> mats;
  for (const TernaryMatrix& t : shards) mats.push_back(&t);
  DeviceModel dm;
  upload_layers(dm, m, mats);
  dm.embd = upload_table(m.token_embd, "token_embd");  // every rank embeds its tokens itself
  dm.tied = m.tied_head;
  if (head && !dm.tied) dm.head_own = upload_table(m.output, "output");
  dm.output_norm = upload_vec(m.output_norm);
  return dm;
}

}  // namespace bitnet::cuda
