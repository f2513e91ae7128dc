// The one selection mechanism (dispatch.h) and the forcing rule across kernel families: a forced
// name applies to every family it forces, and a family with no variant for it, or whose variant
// the CPU cannot run, fails loudly.
#include <gtest/gtest.h>

#include <array>
#include <string>

#include "core/cpu.h"
#include "core/error.h"
#include "quant/act_quant.h"
#include "quant/dispatch.h"
#include "quant/gemm.h"
#include "quant/head_dot.h"
#include "quant/random_data.h"

namespace bitnet {
namespace {

// Forced names for the scope; the process's values come back after.
struct Force {
  explicit Force(ForcedKernels f) : saved(forced_kernels()) { set_forced_kernels(f); }
  ~Force() { set_forced_kernels(saved); }
  ForcedKernels saved;
};

// A made-up family: "wide" handles cases of size >= 8 only, "big" is auto-selected from 100 on.
struct FakeVariant {
  const char* name;
  CpuCaps needs;
  int64_t min_size;
  int64_t wanted_from;
  const char* serves[2];
};
constexpr FakeVariant kFake[] = {
    {"plain", 0, 0, 0, {}},
    {"simd", kCapAvx2, 0, 0, {"simd2"}},
    {"wide", kCapAvx2, 8, 0, {}},
    {"big", kCapAvx2 | kCapAmx, 0, 100, {}},
};

const FakeVariant& pick(std::string_view forced, CpuCaps caps, int64_t size) {
  return select_variant(
      std::span<const FakeVariant>(kFake), {"fake", "BITNET_FAKE", forced, caps},
      [&](const FakeVariant& v) { return size >= v.min_size; },
      [&](const FakeVariant& v) { return size >= v.wanted_from; },
      [&] { return fmt::format("size {}", size); });
}

}  // namespace

TEST(Dispatch, ForcedNamesComeFromTheVariables) {
  const ForcedKernels unset = forced_kernels_from(nullptr, nullptr);
  EXPECT_EQ(unset.kernel, "");
  EXPECT_EQ(unset.head, "");
  const ForcedKernels set = forced_kernels_from("avx2", "scalar");
  EXPECT_EQ(set.kernel, "avx2");
  EXPECT_EQ(set.head, "scalar");
}

TEST(Dispatch, AutoSelectionTakesTheFastestThatRunsSupportsAndIsWanted) {
  const CpuCaps all = kCapAvx2 | kCapAmx;
  EXPECT_STREQ(pick("", 0, 50).name, "plain");        // the CPU runs only the reference
  EXPECT_STREQ(pick("", kCapAvx2, 4).name, "simd");   // "wide" does not support size 4
  EXPECT_STREQ(pick("", kCapAvx2, 50).name, "wide");  // "big" needs AMX
  EXPECT_STREQ(pick("", all, 50).name, "wide");       // "big" is not wanted below 100
  EXPECT_STREQ(pick("", all, 100).name, "big");
}

TEST(Dispatch, ForcingSelectsByNameOrServedNameAndIgnoresThePreference) {
  const CpuCaps all = kCapAvx2 | kCapAmx;
  EXPECT_STREQ(pick("plain", all, 100).name, "plain");
  EXPECT_STREQ(pick("simd2", all, 100).name, "simd");  // listed in its `serves`
  EXPECT_STREQ(pick("big", all, 1).name, "big");       // forced: the auto-only minimum does not apply
}

TEST(Dispatch, ForcingAnUnknownNameAnUnrunnableOrUnsupportingVariantIsAnError) {
  EXPECT_THROW(pick("bogus", kCapAvx2 | kCapAmx, 50), Error);
  EXPECT_THROW(pick("big", kCapAvx2, 500), Error);  // the CPU lacks AMX: no fallback to "wide"
  EXPECT_THROW(pick("simd", 0, 50), Error);
  EXPECT_THROW(pick("wide", kCapAvx2, 4), Error);  // case not supported
  try {
    pick("bogus", 0, 1);
    FAIL();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("BITNET_FAKE=bogus"), std::string::npos) << what;
    EXPECT_NE(what.find("plain, simd, wide, big"), std::string::npos) << what;
  }
}

// BITNET_KERNEL names a GEMM variant; the activation quantizer feeding it follows, explicitly.
TEST(Dispatch, ForcingAKernelAppliesToTheActivationQuantizer) {
  const std::pair<const char*, const char*> pairs[] = {
      {"scalar", "scalar"},   {"neon", "scalar"},       {"avx2", "avx2"}, {"avxvnni", "avx2"},
      {"avx512bw", "avx512"}, {"avx512vnni", "avx512"}, {"avx512vnni_gfni", "avx512"}, {"amx", "avx512"}};
  for (auto [kernel, quantizer] : pairs) {
    bool known = false;
    for (const auto& v : act_quant_variants()) known |= std::string_view(v.name) == quantizer;
    if (!known) continue;  // not compiled for this architecture
    Force f({kernel, ""});
    bool runs = false;
    for (const auto& v : act_quant_variants()) runs |= std::string_view(v.name) == quantizer && v.cpu_ok();
    if (!runs) {
      EXPECT_THROW(select_act_quant(), Error) << kernel;
      continue;
    }
    EXPECT_STREQ(select_act_quant().name, quantizer) << kernel;
    Arena arena;
    const QuantizedActs a = alloc_quantized_acts(arena, 2, 64);
    ASSERT_NE(a.quantizer, nullptr);
    EXPECT_STREQ(a.quantizer->name, quantizer) << kernel;
  }
}

TEST(Dispatch, EveryGemmVariantHasAnActivationQuantizer) {
  for (const auto& g : gemm_variants()) {
    int serving = 0;
    for (const auto& v : act_quant_variants()) serving += answers_to(v, g.name) ? 1 : 0;
    EXPECT_EQ(serving, 1) << g.name;
  }
}

TEST(Dispatch, ForcingANameNoVariantHasIsAnErrorInEveryFamily) {
  auto wq = random_ternary(16 * 64, 1);
  auto W = pack_native(wq.data(), 16, 64, 1.0f);
  Arena arena;
  auto X = alloc_quantized_acts(arena, 1, 64);
  {
    Force f({"bogus", "bogus"});
    EXPECT_THROW(select_act_quant(), Error);
    EXPECT_THROW(alloc_quantized_acts(arena, 1, 64), Error);  // on the caller's thread
    EXPECT_THROW(select_gemm(W, X), Error);
    EXPECT_THROW(select_head(DType::F16), Error);
  }
  {
    // A real name of one family forced on another: the activation quantizer's "avx512" is no
    // GEMM variant, and the head has no "avx2".
    Force f({"avx512", "avx2"});
    EXPECT_THROW(select_gemm(W, X), Error);
    EXPECT_THROW(select_head(DType::F16), Error);
    for (const auto& v : act_quant_variants()) {
      if (std::string_view(v.name) == "avx512" && v.cpu_ok()) {
        EXPECT_STREQ(select_act_quant().name, "avx512");
      }
    }
  }
}

TEST(Dispatch, ForcingAVariantTheCpuLacksIsAnError) {
  auto wq = random_ternary(16 * 64, 1);
  auto W = pack_native(wq.data(), 16, 64, 1.0f);
  Arena arena;
  auto X = alloc_quantized_acts(arena, 1, 64);
  int lacking = 0;
  for (const auto& v : gemm_variants()) {
    if (v.cpu_ok()) continue;
    Force f({v.name, ""});
    EXPECT_THROW(select_gemm(W, X), Error) << v.name;
    ++lacking;
  }
  for (const auto& v : act_quant_variants()) {
    if (v.cpu_ok()) continue;
    Force f({v.name, ""});
    EXPECT_THROW(select_act_quant(), Error) << v.name;
    ++lacking;
  }
  for (const auto& v : head_variants()) {
    if (v.cpu_ok()) continue;
    Force f({"", v.name});
    EXPECT_THROW(select_head(DType::F16), Error) << v.name;
    ++lacking;
  }
  if (!lacking) GTEST_SKIP() << "this CPU runs every variant (the rule itself: ForcingAnUnknownName...)";
}

TEST(Dispatch, HeadForcingSelectsTheNamedVariantForTypesItReads) {
  for (const auto& v : head_variants()) {
    if (!v.cpu_ok()) continue;
    Force f({"", v.name});
    for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
      if (v.supports(t)) {
        EXPECT_STREQ(select_head(t).name, v.name) << dtype_name(t);
      } else {
        EXPECT_THROW(select_head(t), Error) << v.name << " " << dtype_name(t);
      }
    }
  }
}

}  // namespace bitnet
