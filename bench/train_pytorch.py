#!/usr/bin/env python3
"""PyTorch reference of the C++ trainer (src/training/): the same BitNet b1.58 model, init, data
order, schedule and optimizer, for

  1. speed side by side on a GPU (tokens/s, eager and torch.compile), and
  2. loss-curve fidelity: with --init-from-ours --same-data-order it starts from the very weights
     `bitnet train` starts from and sees the same windows in the same order, so its
     train_log.jsonl-format log can be laid over ours.

The model (arch bitnet-b1.58, src/training/model.cpp): embedding; per layer RMSNorm -> fused
q|k|v BitLinear (one absmean scale per logical matrix) -> NEOX RoPE -> causal GQA attention ->
attn_sub_norm -> o BitLinear -> residual; RMSNorm -> fused gate|up BitLinear -> relu(gate)^2 * up
-> ffn_sub_norm -> down BitLinear -> residual; final RMSNorm; plain fp32 head (untied unless
--tied). BitLinear = fake quantization with the straight-through estimator: weights absmean
ternary (src/quant/ternary.h), activations per-token absmax int8 (src/quant/act_quant.h), scales
not differentiated.

Commands (run from the repository root):

  speed, the reference setting (synthetic tokens, no data needed):
    python3 bench/train_pytorch.py --synthetic-vocab 50304 --synthetic-tokens 20000000 \\
        --config gpt2-small --batch 16 --seq 1024 --bf16 --compile --time-steps 20 --device cuda
    (the same without --compile gives the eager number; add --float for the unquantized model)

  fidelity (run/ = the output folder of a `bitnet train` run with the same settings; its
  tokens.bin is the shard, its train_log.jsonl the curve to compare with):
    python3 bench/train_pytorch.py --shard run/tokens.bin --config small --steps 1000 \\
        --batch 8 --seq 128 --lr 1.5e-3 --wd 0.1 --schedule two-stage --seed 1 \\
        --init-from-ours --same-data-order --device cuda --log torch_log.jsonl
    (fp32 without --bf16 for the closest curve; the flags left out take `bitnet train`'s defaults)

  self-check of the ports (splitmix64, normal, below, the schedule) against values printed by a
  C++ program that includes src/training/rng.h and schedule.cpp; needs neither torch nor numpy:
    python3 bench/train_pytorch.py --self-check

The last line on stdout is one JSON object: tokens_per_second, mode, params, final_loss,
eval_loss (and a few more fields). Progress goes to stderr.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

try:
    import numpy as np
except ImportError:  # only the bulk --init-from-ours path wants numpy (a pure-Python fallback exists)
    np = None

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # --self-check runs without torch
    torch = None


# ---------------------------------------------------------------------------------------------
# Exact ports of src/training/rng.h and src/training/schedule.cpp
# ---------------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
TWO_PI = 6.283185307179586


def f32(x):
    """x rounded to float32 (as a Python float). A float op done in double and rounded once to
    float32 gives the correctly rounded float32 result for + - * / and sqrt, so chains of these
    reproduce the C++ float arithmetic exactly."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def mix64(z):
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


class Rng:
    """splitmix64, as bitnet::train::Rng (state is a plain 64-bit integer)."""

    def __init__(self, state=0):
        self.state = state & MASK64

    def next(self):
        self.state = (self.state + GAMMA) & MASK64
        return mix64(self.state)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53

    def below(self, n):
        # (unsigned __int128)(next) * n >> 64, exact with Python integers
        return (self.next() * n) >> 64

    def normal(self):
        # The C++ evaluates u1 before u2 (declarators are sequenced), then rounds to float.
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        return f32(math.sqrt(-2.0 * math.log(u1)) * math.cos(TWO_PI * u2))


def data_rng(seed):
    """The data-order generator as trainer.cpp seeds it: state = seed * golden + 1 (mod 2^64)."""
    return Rng((seed * GAMMA + 1) & MASK64)


def normals_numpy(seed, first, count):
    """Draws first .. first+count-1 of Rng(seed).normal() as float32, vectorized. Draw k uses
    calls 2k+1 and 2k+2 of next(), and call j returns mix64(seed + j * golden mod 2^64), so any
    stretch of the stream can be computed directly. (numpy's log/cos may differ from glibc's in
    the last double ulp, which survives the rounding to float32 only very rarely.)"""
    j = np.arange(2 * first + 1, 2 * (first + count) + 1, dtype=np.uint64)
    z = j * np.uint64(GAMMA) + np.uint64(seed & MASK64)  # uint64 arrays wrap mod 2^64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    u1 = 1.0 - u[0::2]
    u2 = u[1::2]
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(TWO_PI * u2)).astype(np.float32)


def normals_python(seed, first, count):
    # Jump straight to draw `first`: each draw advances the state by two steps of golden.
    r = Rng((seed + 2 * first * GAMMA) & MASK64)
    return [r.normal() for _ in range(count)]


SCHEDULES = ("two-stage", "cosine", "constant")


def lr_at(kind, lr, warmup, steps, step):
    """schedule.cpp lr_at, float32 operation by operation (lr is already a float32 value)."""
    if step < warmup:
        return f32(f32(lr * float(step + 1)) / float(warmup))
    mid = steps // 2
    if kind == "constant":
        return lr
    if kind == "cosine":
        f = min(max((step - warmup) / max(1, steps - 1 - warmup), 0.0), 1.0)
        return f32(lr * f32(0.1 + 0.9 * 0.5 * (1.0 + math.cos(3.141592653589793 * f))))

    def lerp(a, b, f):  # float(a + (b - a) * clamp(f)): (b - a) is a float subtraction
        return f32(a + f32(b - a) * min(max(f, 0.0), 1.0))

    if step < mid:
        return lerp(lr, f32(f32(0.8) * lr), (step - warmup) / max(1, mid - warmup))
    return lerp(f32(f32(0.4) * lr), f32(f32(0.04) * lr), (step - mid) / max(1, steps - 1 - mid))


def wd_at(kind, wd, steps, step):
    if kind == "two-stage" and step >= steps // 2:
        return 0.0
    return wd


# ---------------------------------------------------------------------------------------------
# Self-check: expected values printed by a C++ program including src/training/rng.h and linking
# src/training/schedule.cpp (g++ -std=c++20 -I src), printf("%.9g") for floats.
# ---------------------------------------------------------------------------------------------

EXPECT_NEXT_SEED1 = [10451216379200822465, 13757245211066428519, 17911839290282890590, 8196980753821780235]
EXPECT_NORMAL_SEED1 = [-0.0342673212, -2.50006747, 0.0877224654, -2.0271349, 0.223798588, -0.802410305]
EXPECT_NORMAL_SEED12345 = [0.149692655, 0.225923032, -0.618345678]
EXPECT_BELOW_DATA_SEED1_N1E6 = [745781, 971002, 444359, 444264, 762894, 877348]
EXPECT_BELOW_DATA_SEED7_N123456789012 = [64576194461, 35247985410, 98024271421, 49894094495]
# Rng(1): three normal() * 0.02f, then three normal() * resid_std, resid_std = 0.02f / sqrt(2.0f * 6)
EXPECT_RESID_STD_L6 = 0.00577350287
EXPECT_SCALED_SEED1 = [-0.000685346429, -0.0500013493, 0.00175444921, -0.0117036691, 0.00129210181, -0.0046327184]
# lr 1.5e-3, wd 0.1, warmup 10, steps 100, at these steps: (lr, wd)
EXPECT_SCHED_STEPS = [0, 5, 9, 10, 30, 49, 50, 51, 99]
EXPECT_SCHED = {
    "two-stage": [(0.000150000007, 0.100000001), (0.000899999985, 0.100000001), (0.00150000001, 0.100000001),
                  (0.00150000001, 0.100000001), (0.00135000004, 0.100000001), (0.0012075, 0.100000001),
                  (0.000600000028, 0), (0.00058897963, 0), (5.99999912e-05, 0)],
    "cosine": [(0.000150000007, 0.100000001), (0.000899999985, 0.100000001), (0.00150000001, 0.100000001),
               (0.00150000001, 0.100000001), (0.00133866072, 0.100000001), (0.000955225143, 0.100000001),
               (0.000931769726, 0.100000001), (0.000908181421, 0.100000001), (0.000150000007, 0.100000001)],
    "constant": [(0.000150000007, 0.100000001), (0.000899999985, 0.100000001)] + [(0.00150000001, 0.100000001)] * 7,
}


def self_check():
    failures = []

    def check(what, got, want):
        if got != want:
            failures.append(f"{what}: got {got}, want {want}")

    r = Rng(1)
    check("next() seed 1", [r.next() for _ in range(4)], EXPECT_NEXT_SEED1)
    r = Rng(1)
    check("normal() seed 1", [r.normal() for _ in range(6)], [f32(v) for v in EXPECT_NORMAL_SEED1])
    r = Rng(12345)
    check("normal() seed 12345", [r.normal() for _ in range(3)], [f32(v) for v in EXPECT_NORMAL_SEED12345])
    r = data_rng(1)
    check("below() data seed 1", [r.below(1000000) for _ in range(6)], EXPECT_BELOW_DATA_SEED1_N1E6)
    r = data_rng(7)
    check("below() data seed 7", [r.below(123456789012) for _ in range(4)], EXPECT_BELOW_DATA_SEED7_N123456789012)
    rs = resid_std(6)
    check("resid_std(6)", rs, f32(EXPECT_RESID_STD_L6))
    r = Rng(1)
    scaled = [f32(r.normal() * f32(0.02)) for _ in range(3)] + [f32(r.normal() * rs) for _ in range(3)]
    check("scaled init draws", scaled, [f32(v) for v in EXPECT_SCALED_SEED1])
    lr, wd = f32(1.5e-3), f32(0.1)
    for kind in SCHEDULES:
        got = [(lr_at(kind, lr, 10, 100, s), wd_at(kind, wd, 100, s)) for s in EXPECT_SCHED_STEPS]
        want = [(f32(a), f32(b)) for a, b in EXPECT_SCHED[kind]]
        check(f"schedule {kind}", got, want)
    # The jump-ahead used by the bulk init agrees with stepping.
    r = Rng(99)
    stepped = [r.normal() for _ in range(40)]
    check("normals_python jump", normals_python(99, 30, 10), stepped[30:])
    if np is not None:
        for seed, first, count in [(1, 0, 6), (99, 0, 40), (1, 1_000_003, 2000), (2**63 + 5, 123, 500)]:
            fast = [float(v) for v in normals_numpy(seed, first, count)]
            slow = normals_python(seed, first, count)
            mism = sum(1 for a, b in zip(fast, slow) if a != b)
            check(f"normals_numpy seed {seed} draws {first}..+{count} (mismatches)", mism, 0)
    else:
        print("self-check: numpy absent, the vectorized init path was not checked", file=sys.stderr)
    if torch is not None:
        failures += quant_check()
    else:
        print("self-check: torch absent, the quantizers were not checked", file=sys.stderr)
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    print(json.dumps({"self_check": "ok" if not failures else "failed", "failures": len(failures)}))
    return 0 if not failures else 1


def quant_check():
    """The torch quantizers against a plain-Python transcription of ternary.h / act_quant.h."""
    fails = []
    g = torch.Generator().manual_seed(3)
    w = torch.randn(10, 7, generator=g) * 0.05
    groups = [4, 3, 3]
    codes, row_scale = weight_quant(w, groups)
    row = 0
    for n in groups:
        block = w[row:row + n].tolist()
        scale = f32(max(sum(abs(v) for r in block for v in r) / (n * 7), 1e-5))
        inv = f32(1.0 / scale)
        for i, r in enumerate(block):
            if abs(float(row_scale[row + i]) - scale) > 1e-6 * scale:  # torch sums in float, ours in double
                fails.append(f"weight_quant row {row + i} scale {float(row_scale[row + i])} vs {scale}")
            for j, v in enumerate(r):
                q = min(max(round(f32(v * f32(1.0 / float(row_scale[row + i])))), -1), 1)  # round: half to even
                if q != float(codes[row + i, j]):
                    fails.append(f"weight_quant row {row + i} col {j}: {float(codes[row + i, j])} vs {q}")
        row += n
    x = torch.randn(3, 9, generator=g)
    x[1, 2] = 0.0
    x[2] = 0.0  # an all-zero row: the 1e-5 clamp
    codes, dq = act_quant(x)
    for t, r in enumerate(x.tolist()):
        s = f32(127.0 / f32(max(max(abs(v) for v in r), 1e-5)))
        if f32(1.0 / s) != float(dq[t, 0]):
            fails.append(f"act_quant row {t} dq {float(dq[t, 0])} vs {f32(1.0 / s)}")
        for j, v in enumerate(r):
            q = min(max(round(f32(v * s)), -128), 127)
            if q != float(codes[t, j]):
                fails.append(f"act_quant row {t} col {j}: {float(codes[t, j])} vs {q}")
    # the STE gradients: d(sum(codes * c))/dW = c / scale, d/dx = c * s
    w.requires_grad_(True)
    codes, row_scale = weight_quant(w, groups)
    c = torch.randn(codes.shape, generator=g)
    (codes * c).sum().backward()
    if not torch.allclose(w.grad, c / row_scale[:, None], rtol=1e-6, atol=0):
        fails.append("weight_quant gradient is not the straight-through one")
    return fails


# ---------------------------------------------------------------------------------------------
# Configs (trainer.cpp train_config)
# ---------------------------------------------------------------------------------------------

def train_config(name, n_vocab):
    c = {"arch": "bitnet-b1.58", "n_vocab": n_vocab, "rope": "neox", "act": "relu2", "sub_norms": True,
         "rms_eps": 1e-5, "rope_theta": 10000.0, "n_ctx_train": 1024}

    def shape(d, layers, heads, kv, ff):
        c.update(n_embd=d, n_layer=layers, n_head=heads, n_head_kv=kv, head_dim=d // heads, rope_dim=d // heads,
                 n_ff=ff)

    shape(128, 4, 4, 2, 384)  # tiny
    if name == "tiny":
        return c
    if name == "small":
        shape(256, 6, 8, 4, 768)
        return c
    if name == "gpt2-small":
        shape(768, 12, 12, 12, 2048)
        return c
    with open(name) as f:
        j = json.load(f)
    if not isinstance(j, dict):
        sys.exit(f"{name}: not a JSON object")
    for k, v in j.items():
        if k not in c and k not in ("head_dim", "rope_dim"):
            sys.exit(f"{name}: unknown model config key '{k}'")
        c[k] = v
    if "head_dim" not in j and "n_embd" in j and "n_head" in j:
        c["head_dim"] = c["n_embd"] // max(1, c["n_head"])
    if "rope_dim" not in j:
        c["rope_dim"] = c["head_dim"]
    if c["arch"] != "bitnet-b1.58" or c["rope"] != "neox":
        sys.exit(f"{name}: the trainer builds arch bitnet-b1.58 with neox RoPE")
    if c["n_vocab"] != n_vocab:
        sys.exit(f"{name}: n_vocab {c['n_vocab']} differs from the data's {n_vocab}")
    return c


def resid_std(n_layer):
    # 0.02f / std::sqrt(2.0f * n_layer), all in float
    return f32(f32(0.02) / f32(math.sqrt(f32(2.0 * n_layer))))


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

if torch is not None:
    TORCH_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2] if p.isdigit())
    HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")
    HAVE_SDPA_GQA = TORCH_VERSION >= (2, 5)
    HAVE_RMS_NORM = hasattr(F, "rms_norm")

    def ste(x, q):
        """Forward value exactly q, gradient passed straight to x. Written q.detach() + (x - x.detach())
        rather than x + (q - x).detach(): the latter rounds twice and can miss q by an ulp."""
        return q.detach() + (x - x.detach())

    def weight_quant(w, groups):
        """absmean ternary per logical matrix (row groups): returns (codes, row_scale) with
        scale = mean|W| (>= 1e-5) and codes = clamp(round(W * (1/scale)), -1, 1) as floats, the
        gradient passed to W times 1/scale (straight through round and clamp; the scale is not
        differentiated). torch.round rounds half to even like nearbyint."""
        scales = [p.abs().mean().clamp(min=1e-5) for p in w.detach().split(groups, dim=0)]
        row_scale = torch.cat([sc.expand(n) for sc, n in zip(scales, groups)]) if len(groups) > 1 else scales[0].expand(groups[0])
        ws = w * (1.0 / row_scale)[:, None]
        return ste(ws, ws.round().clamp(-1, 1)), row_scale

    def act_quant(x):
        """Per-token absmax int8: returns (codes, dq) with s = 127 / max|x| (max >= 1e-5),
        codes = clamp(round(x * s), -128, 127) as floats and dq = 1/s; the gradient to x is s times
        the codes' (straight through), s not differentiated."""
        amax = x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        s = amax.new_full((), 127.0) / amax  # tensor / tensor: `127.0 / amax` is reciprocal(amax) * 127
        xs = x * s
        return ste(xs, xs.round().clamp(-128, 127)), 1.0 / s

    class BitLinear(nn.Module):
        """y = float(xq . Wq) * (row_scale * dq): the engine's integer product and epilogue
        (quant/gemm.h gemm_scale). The products of small integers sum exactly in fp32 (and in a
        bf16 matmul's fp32 accumulator), so in fp32 the forward equals ours to the bit given the
        same input. Backward: dx = dy . (Wq * scale), dW = dy^T . (xq * dq), as ours (the STE of
        x + (q(x) - x).detach() with the scales detached), up to rounding."""

        def __init__(self, n_in, n_out, groups, quantize):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(n_out, n_in))
            self.groups = list(groups)
            self.quantize = quantize

        def forward(self, x):
            if not self.quantize:
                return F.linear(x, self.weight)
            xq, dq = act_quant(x.float())  # quantize in fp32 even under autocast
            wq, row_scale = weight_quant(self.weight, self.groups)
            acc = F.linear(xq, wq).float()  # bf16 under autocast: the codes are exact in bf16
            return acc * (dq * row_scale)

    class RMSNorm(nn.Module):
        def __init__(self, n, eps):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.eps = eps

        def forward(self, x):
            x = x.float()  # the residual stream and norms stay fp32 under autocast
            if HAVE_RMS_NORM:
                return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def rope_tables(seq, rope_dim, theta):
        # layer_ops.cpp rope_angles: angle = pos * theta^(-2i/rope_dim) in double, cos/sin to float
        i = torch.arange(rope_dim // 2, dtype=torch.float64)
        pos = torch.arange(seq, dtype=torch.float64)
        ang = pos[:, None] * torch.pow(torch.tensor(float(theta), dtype=torch.float64), -2.0 * i / rope_dim)[None, :]
        return torch.cos(ang).float(), torch.sin(ang).float()

    def rope(x, cos, sin, rope_dim):
        # NEOX pairs (i, i + rope_dim/2): a' = a cos - b sin, b' = a sin + b cos; x is [B, H, S, hd]
        half = rope_dim // 2
        a, b, rest = x[..., :half], x[..., half:rope_dim], x[..., rope_dim:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos, rest], dim=-1)

    def causal_attention(q, k, v, n_rep):
        if HAVE_SDPA and (n_rep == 1 or HAVE_SDPA_GQA):
            if n_rep == 1:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        if n_rep > 1:  # head h reads KV head h // n_rep, as attention.cpp does
            k = k.repeat_interleave(n_rep, dim=1)
            v = v.repeat_interleave(n_rep, dim=1)
        if HAVE_SDPA:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        # torch < 2.0 (only for a CPU logic check): the plain formula
        S = q.shape[-2]
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        mask = torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return att @ v

    class Block(nn.Module):
        def __init__(self, c, quantize):
            super().__init__()
            d, hd, H, KV, ff = c["n_embd"], c["head_dim"], c["n_head"], c["n_head_kv"], c["n_ff"]
            self.H, self.KV, self.hd, self.ff, self.rope_dim = H, KV, hd, ff, c["rope_dim"]
            self.qd, self.kvd = H * hd, KV * hd
            self.act = c["act"]
            eps = c["rms_eps"]
            self.attn_norm = RMSNorm(d, eps)
            self.wqkv = BitLinear(d, self.qd + 2 * self.kvd, [self.qd, self.kvd, self.kvd], quantize)
            self.attn_sub_norm = RMSNorm(self.qd, eps) if c["sub_norms"] else None
            self.wo = BitLinear(self.qd, d, [d], quantize)
            self.ffn_norm = RMSNorm(d, eps)
            self.w_gate_up = BitLinear(d, 2 * ff, [ff, ff], quantize)
            self.ffn_sub_norm = RMSNorm(ff, eps) if c["sub_norms"] else None
            self.w_down = BitLinear(ff, d, [d], quantize)

        def forward(self, x, cos, sin):
            B, S, _ = x.shape
            qkv = self.wqkv(self.attn_norm(x))
            q, k, v = qkv.split([self.qd, self.kvd, self.kvd], dim=-1)
            q = q.view(B, S, self.H, self.hd).transpose(1, 2)
            k = k.view(B, S, self.KV, self.hd).transpose(1, 2)
            v = v.view(B, S, self.KV, self.hd).transpose(1, 2)
            # RoPE in fp32 (cos/sin are fp32), then back to v's dtype (bf16 under autocast)
            q = rope(q, cos, sin, self.rope_dim).to(v.dtype)
            k = rope(k, cos, sin, self.rope_dim).to(v.dtype)
            a = causal_attention(q, k, v, self.H // self.KV)
            a = a.transpose(1, 2).reshape(B, S, self.qd)
            if self.attn_sub_norm is not None:
                a = self.attn_sub_norm(a)
            x = x + self.wo(a).float()
            gu = self.w_gate_up(self.ffn_norm(x))
            g, u = gu.split([self.ff, self.ff], dim=-1)
            h = torch.relu(g).square() * u if self.act == "relu2" else F.silu(g) * u
            if self.ffn_sub_norm is not None:
                h = self.ffn_sub_norm(h)
            return x + self.w_down(h).float()

    class BitNetModel(nn.Module):
        def __init__(self, c, tied, quantize, max_seq):
            super().__init__()
            self.c, self.tied = c, tied
            self.embed = nn.Embedding(c["n_vocab"], c["n_embd"])
            self.layers = nn.ModuleList([Block(c, quantize) for _ in range(c["n_layer"])])
            self.norm = RMSNorm(c["n_embd"], c["rms_eps"])
            self.head = None if tied else nn.Parameter(torch.empty(c["n_vocab"], c["n_embd"]))
            cos, sin = rope_tables(max_seq, c["rope_dim"], c["rope_theta"])
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

        def head_weight(self):
            return self.embed.weight if self.tied else self.head

        def forward(self, inputs, targets):
            """Summed cross-entropy (natural log) over all B x S targets, fp32."""
            S = inputs.shape[1]
            cos, sin = self.cos[:S], self.sin[:S]
            x = self.embed(inputs).float()
            for layer in self.layers:
                x = layer(x, cos, sin)
            logits = F.linear(self.norm(x), self.head_weight())
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")

        def tensors_in_our_order(self):
            """(name, parameter, kind) in make_train_model's order; kind: 'norm' (set to 1, draws
            nothing), 'matrix' (N(0, 0.02)) or 'resid' (o and down: N(0, 0.02 / sqrt(2 L)))."""
            out = [("model.embed_tokens.weight", self.embed.weight, "matrix")]
            for il, L in enumerate(self.layers):
                h = f"model.layers.{il}."
                out.append((h + "input_layernorm.weight", L.attn_norm.weight, "norm"))
                out.append((h + "self_attn.qkv_proj.weight", L.wqkv.weight, "matrix"))
                if L.attn_sub_norm is not None:
                    out.append((h + "self_attn.attn_sub_norm.weight", L.attn_sub_norm.weight, "norm"))
                out.append((h + "self_attn.o_proj.weight", L.wo.weight, "resid"))
                out.append((h + "post_attention_layernorm.weight", L.ffn_norm.weight, "norm"))
                out.append((h + "mlp.gate_up_proj.weight", L.w_gate_up.weight, "matrix"))
                if L.ffn_sub_norm is not None:
                    out.append((h + "mlp.ffn_sub_norm.weight", L.ffn_sub_norm.weight, "norm"))
                out.append((h + "mlp.down_proj.weight", L.w_down.weight, "resid"))
            out.append(("model.norm.weight", self.norm.weight, "norm"))
            if not self.tied:
                out.append(("lm_head.weight", self.head, "matrix"))
            return out

        def param_groups(self):
            """(decay, no_decay) as ours: decay on the linear layers and an untied head."""
            decay, no_decay = [], []
            for name, p, kind in self.tensors_in_our_order():
                is_linear = kind == "resid" or (kind == "matrix" and name != "model.embed_tokens.weight")
                (decay if is_linear else no_decay).append(p)
            return decay, no_decay

    def init_weights(model, seed, ours):
        """ours: the draws of make_train_model (Rng(seed), one normal() per element in tensor
        order, norms drawing nothing). Otherwise the same distributions from torch's generator."""
        rs = resid_std(model.c["n_layer"])
        gen = torch.Generator().manual_seed(seed)
        drawn = 0  # normal() draws consumed so far
        chunk = 1 << 22
        with torch.no_grad():
            for name, p, kind in model.tensors_in_our_order():
                if kind == "norm":
                    p.fill_(1.0)
                    continue
                std = rs if kind == "resid" else f32(0.02)
                n = p.numel()
                if not ours:
                    p.copy_((torch.randn(p.shape, generator=gen) * std).to(p.device))
                    continue
                flat = torch.empty(n, dtype=torch.float32)
                for at in range(0, n, chunk):
                    m = min(chunk, n - at)
                    if np is not None:
                        v = normals_numpy(seed, drawn + at, m) * np.float32(std)  # float * float, as ours
                        flat[at:at + m] = torch.from_numpy(v)
                    else:  # pure Python: fine for tiny models only
                        flat[at:at + m] = torch.tensor([f32(x * std) for x in normals_python(seed, drawn + at, m)])
                drawn += n
                p.copy_(flat.view(p.shape).to(p.device))


# ---------------------------------------------------------------------------------------------
# Data (data.cpp)
# ---------------------------------------------------------------------------------------------

def read_shard(path):
    """'BNTOKS01', uint64 count, uint32 vocabulary, uint32 0, then count int32 ids."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 24 or blob[:8] != b"BNTOKS01":
        sys.exit(f"{path}: not a token shard (bad header)")
    n, vocab = struct.unpack("<QI", blob[8:20])
    if 24 + 4 * n != len(blob):
        sys.exit(f"{path}: the header says {n} tokens but the file holds {len(blob)} bytes")
    ids = torch.frombuffer(bytearray(blob[24:]), dtype=torch.int32)
    return ids, vocab


class Data:
    """Training / held-out split (held-out = the last eval_frac of the tokens) and the windows."""

    def __init__(self, ids, eval_frac, seq, device):
        if not (0 <= eval_frac < 1):
            sys.exit(f"held-out fraction {eval_frac} must be in [0, 1)")
        n = ids.numel()
        self.eval_n = int(float(n) * eval_frac)
        self.train_n = n - self.eval_n
        self.seq = seq
        if self.train_n < seq + 1:
            sys.exit(f"the training data holds {self.train_n} tokens, fewer than one window of {seq} + 1")
        if eval_frac > 0 and self.eval_n < seq + 1:
            sys.exit(f"the held-out part holds {self.eval_n} tokens, fewer than one window of {seq} + 1")
        self.ids = ids.to(device)
        self.device = device
        self.span = torch.arange(seq + 1, device=device)

    def windows(self, offsets):
        idx = torch.tensor(offsets, dtype=torch.int64).to(self.device, non_blocking=True)
        w = self.ids[idx[:, None] + self.span[None, :]].long()
        return w[:, :-1], w[:, 1:]

    def eval_windows(self):
        return (self.eval_n - 1) // self.seq if self.eval_n > self.seq else 0

    def eval_batch(self, first, count):
        # consecutive, non-overlapping windows of the held-out part
        return self.windows([self.train_n + (first + b) * self.seq for b in range(count)])


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch reference of bitnet's trainer (speed and loss fidelity)")
    p.add_argument("--shard", help="token shard (BNTOKS01), e.g. the tokens.bin of a `bitnet train` run")
    p.add_argument("--synthetic-vocab", type=int, help="random tokens from this vocabulary instead of a shard")
    p.add_argument("--synthetic-tokens", type=int, default=20_000_000)
    p.add_argument("--config", default="tiny", help="tiny | small | gpt2-small | FILE.json")
    p.add_argument("--vocab", type=int, help="vocabulary size (default: the shard's header)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--schedule", default="two-stage", choices=SCHEDULES)
    p.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0: off)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-frac", type=float, default=0.05)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-windows", type=int, default=16)
    p.add_argument("--float", dest="fp32", action="store_true", help="no quantization (plain linear layers)")
    p.add_argument("--tied", action="store_true", help="tie the head to the embedding")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--bf16", action="store_true", help="autocast to bf16 (the reference speed setting)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls in fp32 mode")
    p.add_argument("--device", default="cuda" if torch is not None and torch.cuda.is_available() else "cpu")
    p.add_argument("--init-from-ours", action="store_true", help="our init: Rng(seed) normal draws in our order")
    p.add_argument("--same-data-order", action="store_true", help="our window order: Rng(seed*golden+1).below")
    p.add_argument("--log", help="write a train_log.jsonl-format log here")
    p.add_argument("--time-steps", type=int, default=0, help="speed mode: time this many steps after warm-up")
    p.add_argument("--time-warmup", type=int, default=3, help="speed mode: untimed steps first (compilation)")
    p.add_argument("--print-every", type=int, default=10)
    p.add_argument("--self-check", action="store_true", help="check the RNG and schedule ports, then exit")
    return p.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv):
    args = parse_args(argv)
    if args.self_check:
        return self_check()
    if torch is None:
        sys.exit("torch is not installed (only --self-check runs without it)")
    if (args.shard is None) == (args.synthetic_vocab is None):
        sys.exit("give either --shard or --synthetic-vocab")
    if args.steps <= 0 or args.batch <= 0 or args.seq <= 1 or args.accum <= 0:
        sys.exit("steps, batch and accumulation must be positive and the sequence longer than 1")
    device = torch.device(args.device)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log = lambda *a: print(*a, file=sys.stderr, flush=True)

    # ---- data ----
    if args.shard:
        ids, shard_vocab = read_shard(args.shard)
        n_vocab = args.vocab or shard_vocab
        if n_vocab != shard_vocab:
            sys.exit(f"{args.shard}: tokenized for a vocabulary of {shard_vocab}, --vocab says {n_vocab}")
    else:
        n_vocab = args.vocab or args.synthetic_vocab
        gen = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(0, n_vocab, (args.synthetic_tokens,), generator=gen, dtype=torch.int64).int()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_vocab):
        sys.exit(f"token ids outside the vocabulary of {n_vocab}")
    speed_mode = args.time_steps > 0
    data = Data(ids, args.eval_frac, args.seq, device)

    # ---- model ----
    c = train_config(args.config, n_vocab)
    model = BitNetModel(c, args.tied, not args.fp32, args.seq).to(device)
    init_weights(model, args.seed, args.init_from_ours)
    params = sum(p.numel() for p in model.parameters())  # a tied table counts once
    embd = c["n_vocab"] * c["n_embd"]
    matmul_params = params - embd + (embd if args.tied else 0)  # the head's matmul runs even when tied
    log(f"model {args.config}: {params:,} parameters ({params - embd:,} without the embedding), "
        f"vocab {n_vocab}, {'fp32 (--float)' if args.fp32 else 'ternary QAT'}, {'tied' if args.tied else 'untied'} head")
    run_model = model
    if args.compile:
        if not hasattr(torch, "compile"):
            sys.exit("--compile needs torch >= 2.0")
        run_model = torch.compile(model)

    decay, no_decay = model.param_groups()
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd, "decay": True},
                             {"params": no_decay, "weight_decay": 0.0, "decay": False}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **opt_kw)
    all_params = list(model.parameters())

    steps = args.time_warmup + args.time_steps if speed_mode else args.steps
    lr32, wd32 = f32(args.lr), f32(args.wd)  # ours parses them into floats
    step_tokens = args.accum * args.batch * args.seq
    grad_scale = f32(1.0 / step_tokens)
    rng = data_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    starts = data.train_n - args.seq  # offsets 0 .. train_n - seq - 1
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if args.bf16 else None

    def offsets():
        if args.same_data_order:
            return [rng.below(starts) for _ in range(args.batch)]
        return torch.randint(0, starts, (args.batch,), generator=gen).tolist()

    def forward(m, inputs, targets):
        if autocast is None:
            return m(inputs, targets)
        with autocast():
            return m(inputs, targets)

    def evaluate():
        nw = min(args.eval_windows, data.eval_windows())
        if nw == 0:
            return float("nan")
        total, count = 0.0, 0
        with torch.no_grad():
            for w0 in range(0, nw, args.batch):
                nb = min(args.batch, nw - w0)
                inputs, targets = data.eval_batch(w0, nb)
                total += float(forward(model, inputs, targets))  # eager: no recompile for a short batch
                count += nb * args.seq
        return total / count

    logf = open(args.log, "w") if args.log else None
    times, loss, eval_loss, tokens = [], float("nan"), None, 0
    for step in range(steps):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_sum = None
        for _ in range(args.accum):
            inputs, targets = data.windows(offsets())
            ls = forward(run_model, inputs, targets)
            (ls * grad_scale).backward()  # the gradient of grad_scale x summed loss, as ours
            loss_sum = ls.detach() if loss_sum is None else loss_sum + ls.detach()
        # Global norm before clipping (what ours logs); max_norm inf leaves the gradients as they are.
        gn = torch.nn.utils.clip_grad_norm_(all_params, args.clip if args.clip > 0 else float("inf"))
        lr, wd = lr_at(args.schedule, lr32, args.warmup, steps, step), wd_at(args.schedule, wd32, steps, step)
        for g in opt.param_groups:
            g["lr"] = lr
            g["weight_decay"] = wd if g["decay"] else 0.0
        opt.step()
        loss = float(loss_sum) / step_tokens  # synchronizes
        gn = float(gn)
        sync(device)
        times.append(time.perf_counter() - t0)
        if not math.isfinite(loss):
            sys.exit(f"the loss is {loss} at step {step + 1} (diverged: lower --lr?)")
        tokens += step_tokens
        line = {"step": step + 1, "tokens": tokens, "loss": loss, "lr": lr, "grad_norm": gn}
        done = step + 1
        if (not speed_mode and args.eval_frac > 0 and args.eval_every > 0
                and (done % args.eval_every == 0 or done == steps)):
            eval_loss = evaluate()
            line["eval_loss"] = eval_loss if math.isfinite(eval_loss) else None
            log(f"eval at step {done}: loss {eval_loss:.4f}, perplexity {math.exp(eval_loss):.3f}")
        if logf:
            logf.write(json.dumps(line) + "\n")
            logf.flush()
        if args.print_every > 0 and (done % args.print_every == 0 or done == steps or done == 1):
            log(f"step {done}/{steps} | loss {loss:.4f} | lr {lr:.2e} | |g| {gn:.3f} | "
                f"{step_tokens / times[-1]:.0f} tok/s")
    if logf:
        logf.close()

    # ---- speed ----
    timed = times[args.time_warmup:] if speed_mode else (times[1:] or times)  # the first step compiles
    step_s = statistics.median(timed)
    tps = step_tokens / step_s
    flops_per_token = 6 * matmul_params + 12 * c["n_layer"] * c["n_head"] * c["head_dim"] * args.seq
    mfu = flops_per_token * tps / 989e12
    if speed_mode:
        log(f"timed {len(timed)} steps after {args.time_warmup} warm-up: median {step_s * 1e3:.1f} ms/step, "
            f"{tps:,.0f} tokens/s")
        log(f"MFU estimate (6N + 12*L*d*seq flops per token over 989 TFLOP/s H100 bf16 dense peak): {mfu * 100:.1f}%")
    summary = {"tokens_per_second": tps, "mode": "compile" if args.compile else "eager", "params": params,
               "final_loss": loss, "eval_loss": eval_loss if eval_loss is None or math.isfinite(eval_loss) else None,
               "step_ms_median": step_s * 1e3, "mfu_estimate": mfu, "bf16": args.bf16, "quantize": not args.fp32,
               "config": args.config, "batch": args.batch, "seq": args.seq, "accum": args.accum,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
