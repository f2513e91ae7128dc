#include "quant/head.h"

#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/head_dot.h"
#include "quant/q6_kx.h"

namespace bitnet {

void embedding_row(const Tensor& table, int64_t row, float* out) {
  if (row < 0 || row >= table.rows())
    fail("token id {} is out of range for '{}' ({} rows)", row, table.name(), table.rows());
  if (table.dtype() == DType::Q6_KX) {  // rows interleave 16 at a time: read back into Q6_K first
    std::vector<uint8_t> q6(table.row_stride_bytes());
    q6_kx_row_to_q6_k(table.data(), table.rows(), table.cols(), row, q6.data());
    dequantize_row(DType::Q6_K, q6.data(), table.cols(), out);
    return;
  }
  dequantize_row(table.dtype(), table.data() + static_cast<size_t>(row) * table.row_stride_bytes(),
                 table.cols(), out);
}

void head_matmul(ThreadPool* pool, const Tensor& w, const float* x, int64_t m, float* logits) {
  if (!head_supported(w.dtype()))
    fail("'{}': type {} cannot be an output head", w.name(), dtype_name(w.dtype()));
  HeadActs acts;
  head_prepare(w.dtype(), x, m, w.cols(), acts);
  head_matvec(pool, w.data(), w.row_stride_bytes(), w.rows(), acts, logits);
}

}  // namespace bitnet
