#include "training/grad_buckets.h"

#include "core/error.h"

namespace bitnet::train {

GradBuckets grad_buckets(const TrainModel& m, size_t bucket_floats) {
  const size_t L = m.layers.size(), n = m.params.size();
  // Layer il's parameters start at its first tensor (the attention norm); "layer L" is the final norm.
  auto layer_begin = [&](size_t il) {
    return static_cast<size_t>(il < L ? m.layers[il].attn_norm : m.output_norm);
  };
  if (m.tok_embd != 0 || layer_begin(L) > n)
    fail("data parallel: the parameters are not laid out as expected");
  for (size_t il = 0; il < L; ++il)
    if (layer_begin(il) >= layer_begin(il + 1) || (il == 0 && layer_begin(0) == 0))
      fail("data parallel: the parameters are not laid out embedding, layers in order, head");
  GradBuckets b;
  b.after_layer.assign(L, {0, 0});
  size_t end = layer_begin(L);
  for (size_t il = L; il-- > 0;)
    if (end - layer_begin(il) >= bucket_floats || il == 0) {
      b.after_layer[il] = {layer_begin(il), end};
      end = layer_begin(il);
    }
  b.after_embedding = {{0, layer_begin(0)}, {layer_begin(L), n}};
  return b;
}

}  // namespace bitnet::train
