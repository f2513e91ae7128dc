#include "core/dtype.h"

#include <cctype>

#include "core/error.h"

namespace bitnet {

void bad_dtype(size_t index) {
  check_failed(__FILE__, __LINE__, "dtype < kDTypeCount", fmt::format("DType {} is out of range", index));
}

std::string_view dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < kDTypeInfo.size(); ++i) {
    const auto& n = kDTypeInfo[i].name;
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
