#include "core/dtype.h"

#include <array>
#include <cctype>

#include "core/error.h"

namespace bitnet {
namespace {
constexpr std::array<DTypeInfo, 13> kInfo = {{
    {"f32", 1, 4, 0, false},
    {"f16", 1, 2, 0, false},
    {"bf16", 1, 2, 0, false},
    {"i8", 1, 1, 0, false},
    {"i32", 1, 4, 0, false},
    {"q8_0", 32, 34, 0, false},
    {"q4_0", 32, 18, 0, false},
    {"q6_k", 256, 210, 0, false},
    {"tq1_0", 256, 54, 0, true},
    {"tq2_0", 256, 66, 0, true},
    {"i2_s", 4, 1, 32, true},
    {"tnat", 4, 1, 0, true},
    {"q8_0x", 512, 544, 0, false},
}};
}  // namespace

const DTypeInfo& dtype_info(DType t) {
  const auto i = static_cast<size_t>(t);
  BN_CHECK(i < kInfo.size());
  return kInfo[i];
}

std::string_view dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < kInfo.size(); ++i) {
    const auto& n = kInfo[i].name;
    if (n.size() != name.size()) continue;
    bool eq = true;
    for (size_t j = 0; j < n.size() && eq; ++j)
      eq = std::tolower(static_cast<unsigned char>(name[j])) == n[j];
    if (eq) return static_cast<DType>(i);
  }
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  if (n < 0 || n % info.block_elems != 0)
    fail("row of {} elements is not a whole number of {} blocks ({} elements each)", n, info.name,
         info.block_elems);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

}  // namespace bitnet
