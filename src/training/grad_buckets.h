#pragma once
// When data-parallel training can sum which gradients: the backward finishes the layers from the
// last down, then the embedding, so a bucket of whole layers can be all-reduced as soon as its
// lowest layer's backward is done, while the layers below are still running. The embedding, the
// final norm and the head go last: a tied head is the embedding, complete only after its backward.
#include <cstddef>
#include <utility>
#include <vector>

#include "training/model.h"

namespace bitnet::train {

using ParamRange = std::pair<size_t, size_t>;  // [first, second) of the flat parameter buffer

struct GradBuckets {
  std::vector<ParamRange> after_layer;      // [il]: summed once layer il's backward is done (empty: none)
  std::vector<ParamRange> after_embedding;  // the embedding, then the final norm and the head
};

// Buckets of whole layers, each closed once it holds bucket_floats gradients or reaches layer 0;
// together with after_embedding they cover the parameters exactly once. Fails when the model's
// layout is not make_train_model's (embedding, layers in order, final norm, head).
GradBuckets grad_buckets(const TrainModel& m, size_t bucket_floats);

}  // namespace bitnet::train
