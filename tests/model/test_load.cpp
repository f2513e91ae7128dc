// GGUF loading: the same synthetic ternary weights written as I2_S, TQ2_0 and TQ1_0 load to the
// same native matrices (scales differ only by the formats' fp32 / fp16 rounding), and broken
// files get errors that name the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "inference/forward.h"
#include "model/load_gguf.h"
#include "model/synthetic_gguf.h"
#include "quant/dequant.h"
#include "quant/dispatch.h"
#include "quant/head.h"

namespace bitnet {
namespace {

GgufFile to_file(const GgufWriter& w, std::shared_ptr<std::vector<uint8_t>>& keep) {
  keep = std::make_shared<std::vector<uint8_t>>(w.serialize());
  return GgufFile::parse(keep, keep->data(), keep->size(), "test.gguf");
}

std::string error_of(const GgufWriter& w) {
  std::shared_ptr<std::vector<uint8_t>> keep;
  try {
    GgufFile f = to_file(w, keep);
    load_gguf_model(f);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(LoadGguf, SameWeightsInEveryTernaryTypeGiveTheSameModel) {
  ModelConfig c = synthetic_config("tiny");
  std::shared_ptr<std::vector<uint8_t>> k1, k2, k3;
  GgufFile f1 = to_file(synthetic_gguf(c, DType::I2_S, DType::F16, 3), k1);
  GgufFile f2 = to_file(synthetic_gguf(c, DType::TQ2_0, DType::F16, 3), k2);
  GgufFile f3 = to_file(synthetic_gguf(c, DType::TQ1_0, DType::F16, 3), k3);
  auto m1 = load_gguf_model(f1), m2 = load_gguf_model(f2), m3 = load_gguf_model(f3);
  ASSERT_EQ(m1->cfg.n_layer, 4);
  EXPECT_EQ(m1->cfg.act, FfnAct::kRelu2);
  EXPECT_EQ(m1->cfg.rope, RopeStyle::kNeox);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const auto& a = m1->layers[static_cast<size_t>(il)];
    const auto& b = m2->layers[static_cast<size_t>(il)];
    const auto& d = m3->layers[static_cast<size_t>(il)];
    for (auto [x, y, z] : {std::tuple{&a.wqkv, &b.wqkv, &d.wqkv}, {&a.w_down, &b.w_down, &d.w_down}}) {
      ASSERT_EQ(x->bytes(), y->bytes());
      EXPECT_EQ(std::memcmp(x->packed.data(), y->packed.data(), x->bytes()), 0);  // same codes
      EXPECT_EQ(std::memcmp(y->packed.data(), z->packed.data(), y->bytes()), 0);
      for (int64_t r = 0; r < x->n; ++r) {
        EXPECT_NEAR(x->row_scale()[r], y->row_scale()[r], 1e-3 * x->row_scale()[r]);  // fp32 vs fp16
        EXPECT_EQ(y->row_scale()[r], z->row_scale()[r]);
      }
    }
  }
  // TQ2_0 and TQ1_0 hold identical values: identical logits.
  const std::vector<int32_t> toks = {256, 72, 101, 108, 108, 111};
  Session s2(*m2, {16, 2}), s3(*m3, {16, 2});
  const float* l2 = s2.forward(toks);
  std::vector<float> c2(l2, l2 + c.n_vocab);
  const float* l3 = s3.forward(toks);
  for (int64_t v = 0; v < c.n_vocab; ++v) ASSERT_EQ(c2[static_cast<size_t>(v)], l3[v]);
}

TEST(LoadGguf, ErrorsNameTheProblem) {
  ModelConfig c = synthetic_config("tiny");
  GgufWriter w = synthetic_gguf(c, DType::I2_S, DType::F16, 1);
  {
    GgufWriter bad = w;
    bad.set("general.architecture", GgufValue::str("mamba"));
    EXPECT_NE(error_of(bad).find("unsupported architecture 'mamba'"), std::string::npos) << error_of(bad);
  }
  {
    GgufWriter bad = w;
    std::erase_if(bad.tensors, [](const auto& t) { return t.name == "blk.2.ffn_up.weight"; });
    EXPECT_NE(error_of(bad).find("blk.2.ffn_up.weight"), std::string::npos) << error_of(bad);
  }
  {
    GgufWriter bad = w;
    bad.set("bitnet-b1.58.feed_forward_length", GgufValue::u32(512));
    EXPECT_NE(error_of(bad).find("expected 512"), std::string::npos) << error_of(bad);
  }
  {
    GgufWriter bad = w;
    for (auto& t : bad.tensors)
      if (t.name == "blk.0.attn_q.weight") t.bytes[3] = 0xFF;  // code 3 is not ternary
    EXPECT_NE(error_of(bad).find("blk.0.attn_q.weight"), std::string::npos) << error_of(bad);
  }
  {
    GgufWriter bad = w;  // an infinite RoPE base (convert wrote 1e300 as inf)
    bad.set("bitnet-b1.58.rope.freq_base", GgufValue::f32(std::numeric_limits<float>::infinity()));
    EXPECT_NE(error_of(bad).find("RoPE base inf must be finite"), std::string::npos) << error_of(bad);
  }
  {
    GgufWriter bad = w;
    bad.set("bitnet-b1.58.attention.head_count_kv", GgufValue::u32(3));
    EXPECT_NE(error_of(bad).find("head count"), std::string::npos) << error_of(bad);
  }
  {
    GgufWriter bad = w;  // layer 0's sub-norm missing, layer 1's there: not a model without sub-norms
    std::erase_if(bad.tensors, [](const auto& t) { return t.name == "blk.0.attn_sub_norm.weight"; });
    EXPECT_NE(error_of(bad).find("'blk.0.ffn_sub_norm.weight' is present but 'blk.0.attn_sub_norm.weight' is not"),
              std::string::npos)
        << error_of(bad);
    std::erase_if(bad.tensors, [](const auto& t) { return t.name == "blk.0.ffn_sub_norm.weight"; });
    EXPECT_NE(error_of(bad).find("'blk.1.attn_sub_norm.weight' is present but 'blk.0.attn_sub_norm.weight' is not"),
              std::string::npos)
        << error_of(bad);
  }
  {
    GgufWriter bad = w;  // a NaN in an F32 norm vector (it would spread through every activation)
    bool found = false;
    for (auto& t : bad.tensors)
      if (t.name == "blk.1.ffn_norm.weight") {
        ASSERT_GE(t.bytes.size(), 12u);
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::memcpy(t.bytes.data() + 8, &nan, 4);
        found = true;
      }
    ASSERT_TRUE(found);
    EXPECT_NE(error_of(bad).find("'blk.1.ffn_norm.weight' has a non-finite value at 2"), std::string::npos)
        << error_of(bad);
  }
}

}  // namespace bitnet

namespace bitnet {

// A tied head/embedding of `file_type` (Q8_0, Q6_K), held at load in the layout its kernel reads
// (`held`: Q8_0X, Q6_KX, or the file's type where that kernel does not run; model.h) in the same
// bytes: the embedding rows keep their values bit for bit, and the logits equal those of the file's
// type through the scalar reference (BITNET_HEAD_KERNEL=scalar keeps it) up to float order.
static void expect_head_held_for_its_kernel(const ModelConfig& c, DType file_type, DType held) {
  std::shared_ptr<std::vector<uint8_t>> k1, k2;
  GgufFile f1 = to_file(synthetic_gguf(c, DType::I2_S, file_type, 4), k1);
  GgufFile f2 = to_file(synthetic_gguf(c, DType::I2_S, file_type, 4), k2);
  auto m = load_gguf_model(f1);
  const Tensor file_embd = f1.tensor("token_embd.weight");
  EXPECT_EQ(m->token_embd.dtype(), held);
  EXPECT_EQ(m->token_embd.nbytes(), file_embd.nbytes());
  EXPECT_EQ(m->output.data(), m->token_embd.data());  // still tied
  std::vector<float> a(static_cast<size_t>(c.n_embd)), b(a.size());
  for (int64_t r : {int64_t{0}, int64_t{1}, c.n_vocab / 2, c.n_vocab - 1}) {
    dequantize_row(file_type, file_embd.data() + r * file_embd.row_stride_bytes(), c.n_embd, a.data());
    embedding_row(m->token_embd, r, b.data());
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << "row " << r;
  }
  const ForcedKernels saved = forced_kernels();
  set_forced_kernels({saved.kernel, "scalar"});  // BITNET_HEAD_KERNEL=scalar
  auto plain = load_gguf_model(f2);
  set_forced_kernels(saved);
  EXPECT_EQ(plain->token_embd.dtype(), file_type);
  const std::vector<int32_t> toks = {256, 72, 101, 108, 108, 111};
  Session s1(*m, {16, 2});
  const float* l1 = s1.forward(toks);
  std::vector<float> got(l1, l1 + c.n_vocab);
  set_forced_kernels({saved.kernel, "scalar"});
  Session s2(*plain, {16, 2});
  const float* l2 = s2.forward(toks);
  set_forced_kernels(saved);
  float big = 0;
  for (int64_t v = 0; v < c.n_vocab; ++v) big = std::max(big, std::fabs(l2[v]));
  for (int64_t v = 0; v < c.n_vocab; ++v) ASSERT_NEAR(got[static_cast<size_t>(v)], l2[v], 1e-5f * big) << v;
}

TEST(LoadGguf, Q8_0HeadIsRegroupedForItsKernel) {
  ModelConfig c = synthetic_config("tiny");
  c.n_embd = 1024;  // whole 512-value superblocks
  c.n_head = 16;
  c.n_head_kv = 4;
  const bool native = head_regroups_q8_0x(DType::Q8_0, c.n_embd);
  expect_head_held_for_its_kernel(c, DType::Q8_0, native ? DType::Q8_0X : DType::Q8_0);
}

TEST(LoadGguf, Q6_KHeadIsInterleavedForItsKernel) {
  ModelConfig c = synthetic_config("tiny");
  c.n_vocab = 2045;  // a last group of 13 rows (n_embd 256: whole super-blocks)
  expect_head_held_for_its_kernel(c, DType::Q6_K, head_layout(DType::Q6_K, c.n_embd));
}

}  // namespace bitnet
