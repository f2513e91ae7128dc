#include "quant/head.h"

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/head_dot.h"

namespace bitnet {

void embedding_row(const Tensor& table, int64_t row, float* out) {
  if (row < 0 || row >= table.rows())
    fail("token id {} is out of range for '{}' ({} rows)", row, table.name(), table.rows());
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
