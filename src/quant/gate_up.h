#pragma once
// The feed-forward's gate|up product and gated activation as one op:
//   act[t][r] = f(gate[t][r]) * up[t][r]   for r < ff, every token t of x,
// where gate|up = W x over the fused matrix W (gate rows [0, ff), up rows [ff, 2 ff)) and f is
// relu^2 or silu (ops/layer_ops.h gated_act). The op owns how it is computed and threaded: the
// same products and the same element-wise activation on every path, so results do not depend on
// the path, the thread count or the kernel (bit for bit).
#include <cstdint>

#include "ops/layer_ops.h"
#include "quant/act_quant.h"
#include "quant/native.h"

namespace bitnet {

class Arena;
class ThreadPool;

// act is [x.m][ff]. Scratch (the gate|up floats where they are stored) comes from `arena`.
void gate_up_act(ThreadPool& pool, Arena& arena, const TernaryMatrix& w, const QuantizedActs& x, int64_t ff,
                 FfnAct f, float* act);

}  // namespace bitnet
