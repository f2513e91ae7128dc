#!/usr/bin/env python3
"""HF transformers' BitNetForCausalLM on the 2B4T shape, timed as `bitnet bench --device cuda`
times ours: prefill of P tokens, and greedy decode of N tokens for each of B sequences in one
batch. Random weights (the speed does not depend on them), bf16 on the GPU, eager `generate` with
its default dynamic KV cache: how people run the bf16 release with transformers.

  python3 bench/hf_bench.py --prompt 512 --gen 128 --batch 1,8

Prints one JSON line per test: {"impl", "test", "tokens_per_s", ...}. Decode rates exclude the
prompt: (time of N new tokens - time of 1 new token) / (N - 1) steps. `--online-quant` loads the
layers as transformers' online-quantizing AutoBitLinear instead of bf16 linears (slower: it
quantizes weights and activations in every call).
"""
import argparse
import json
import statistics
import time

import torch
from transformers import BitNetConfig, BitNetForCausalLM


def shape_2b4t(online_quant):
    kw = dict(vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30,
              num_attention_heads=20, num_key_value_heads=5, hidden_act="relu2", max_position_embeddings=4096,
              rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000,
              eos_token_id=128001, pad_token_id=128001)
    if online_quant:
        kw["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                     "quantization_mode": "online"}
    return BitNetConfig(**kw)


def timed(fn, reps):
    out = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", type=int, default=512, help="prefill test length (0: skip)")
    ap.add_argument("--gen", type=int, default=128, help="tokens decoded per sequence")
    ap.add_argument("--batch", default="1,8", help="decode batch sizes, comma-separated")
    ap.add_argument("--context", type=int, default=16, help="prompt tokens before each decode test")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--online-quant", action="store_true")
    a = ap.parse_args()
    impl = "transformers " + ("online-quantized" if a.online_quant else "bf16") + " (eager)"

    torch.manual_seed(0)
    cfg = shape_2b4t(a.online_quant)
    with torch.device("cuda"):
        model = BitNetForCausalLM(cfg).to(torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"impl": impl, "transformers": __import__("transformers").__version__,
                      "torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "params": params}),
          flush=True)
    g = torch.Generator(device="cuda").manual_seed(1)

    with torch.inference_mode():
        if a.prompt > 0:
            x = torch.randint(0, cfg.vocab_size, (1, a.prompt), device="cuda", generator=g)
            try:  # only the last position's logits, as a prompt call of generate computes
                run = lambda: model(x, logits_to_keep=1)  # noqa: E731
                run()
            except TypeError:
                run = lambda: model(x)  # noqa: E731
                run()
            s = timed(run, a.reps)
            print(json.dumps({"impl": impl, "test": f"pp{a.prompt}", "tokens_per_s": round(a.prompt / s, 1),
                              "ms": round(s * 1e3, 2)}), flush=True)

        for b in (int(v) for v in a.batch.split(",") if v):
            x = torch.randint(0, cfg.vocab_size, (b, a.context), device="cuda", generator=g)

            def gen(n):
                return lambda: model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n,
                                              min_new_tokens=n, do_sample=False, pad_token_id=cfg.pad_token_id)

            gen(4)()  # warm-up
            t1 = timed(gen(1), a.reps)
            tn = timed(gen(a.gen), a.reps)
            step = (tn - t1) / (a.gen - 1)
            print(json.dumps({"impl": impl, "test": f"tg{a.gen} b{b}", "tokens_per_s": round(b / step, 1),
                              "ms_per_step": round(step * 1e3, 3)}), flush=True)


if __name__ == "__main__":
    main()
