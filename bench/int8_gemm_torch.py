#!/usr/bin/env python3
"""cuBLASLt's int8 GEMM alone (torch._int_mm: int8 x int8 -> int32) on the 2B4T layer shapes, the
weights already int8 and cycled through copies larger than L2: the GEMM's share of the engine's
prompt products, which also expand the 2-bit codes and apply the epilogue (docs/PERFORMANCE.md,
"Prompts"). Needs PyTorch with CUDA.

  python3 bench/int8_gemm_torch.py
"""
import torch

SHAPES = [(3840, 2560), (2560, 2560), (13824, 2560), (2560, 6912)]  # qkv, o, gate|up, down: rows x k


def main():
    for m in (512, 64):
        for n, k in SHAPES:
            a = torch.randint(-128, 127, (m, k), dtype=torch.int8, device="cuda")
            copies = max(2, int(160e6 // (n * k)))
            ws = [torch.randint(-1, 2, (n, k), dtype=torch.int8, device="cuda") for _ in range(copies)]
            for w in ws[:2]:
                torch._int_mm(a, w.t())
            torch.cuda.synchronize()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            reps = 60
            e0.record()
            for i in range(reps):
                torch._int_mm(a, ws[i % copies].t())
            e1.record()
            torch.cuda.synchronize()
            us = e0.elapsed_time(e1) * 1e3 / reps
            print(f"m {m} n {n} k {k}: {us:.1f} us, {2 * m * n * k / us / 1e6:.0f} TOPS", flush=True)


if __name__ == "__main__":
    main()
