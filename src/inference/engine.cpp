#include "inference/engine.h"

#include "core/error.h"

namespace bitnet {

void Engine::forward_top(int32_t, int k, float*, int32_t*) {
  fail("this engine does not find the top {} logits itself (max_top_k() is 0)", k);
}

}  // namespace bitnet
