#pragma once
// Batches of a server's steps over 4 sequences of a vocabulary of V (test_split_engine.cpp and
// cuda/test_serve_engine.cpp): prompts of sequences 2 and 0 (0's logits for every token, 2's for
// none), then decodes beside a chunk of sequence 3, a one-token chunk without logits, a
// sequence's first token in a decode step, and decodes alone.
#include <cstdint>
#include <vector>

#include "inference/forward.h"

namespace bitnet::server::test {

// Token i of the batches below, in a vocabulary of V.
inline int32_t batch_token(int i, int64_t V) {
  return static_cast<int32_t>((i * 37 + 11) % V);
}

// The engine the batches run on: 4 slots of 64 positions, 2 threads.
inline SessionOptions four_slots() {
  SessionOptions so;
  so.n_ctx = 64;
  so.threads = 2;
  so.n_seq = 4;
  return so;
}

inline std::vector<std::vector<BatchToken>> mixed_batches(int64_t V) {
  auto tok = [&](int i) { return batch_token(i, V); };
  return {
      {{tok(1), 2, false}, {tok(2), 2, false}, {tok(3), 2, false}, {tok(4), 0, true}, {tok(5), 0, true}},
      {{tok(6), 0, true}, {tok(7), 3, false}, {tok(8), 3, false}, {tok(9), 3, true}, {tok(10), 2, true}},
      {{tok(11), 3, true}, {tok(12), 1, false}, {tok(13), 0, true}, {tok(14), 2, true}},
      {{tok(15), 1, false}, {tok(16), 1, true}, {tok(17), 2, true}},
      {{tok(18), 0, true}, {tok(19), 1, true}, {tok(20), 2, true}, {tok(21), 3, true}},
  };
}

}  // namespace bitnet::server::test
