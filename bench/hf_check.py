#!/usr/bin/env python3
"""Perplexity of an HF BitNet folder written by `bitnet train --hf` under transformers'
BitNetForCausalLM, computed the way `bitnet perplexity` (and llama-perplexity) does, so the two
figures compare: the token ids come from `bitnet tokenize --json` (the same ids for both), are cut
into non-overlapping windows of CTX tokens whose first token is replaced by BOS (where the tokenizer
adds one), and the logits at
positions CTX/2 .. CTX-2 score the next token.

  bitnet tokenize -m run/model.gguf -f text.txt --json > ids.json
  python3 bench/hf_check.py --hf run/hf --ids ids.json -c 128
  bitnet perplexity -m run/model.gguf -f text.txt -c 128 --json

It fails unless transformers replaced the linear layers with its online-quantizing BitLinear
(otherwise the figure would be a float model's, not the trainer's).
"""
import argparse
import json
import math
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True, help="folder with config.json and model.safetensors")
    ap.add_argument("--ids", required=True, help='JSON {"ids": [...]} from bitnet tokenize --json')
    ap.add_argument("-c", "--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=0, help="maximum number of windows (0: all)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()

    model = AutoModelForCausalLM.from_pretrained(a.hf, torch_dtype=torch.float32).to(a.device).eval()
    quantized = sum(1 for m in model.modules() if type(m).__name__ in ("AutoBitLinear", "BitLinear"))
    if quantized == 0:
        sys.exit("hf_check: transformers loaded no BitLinear layers (no quantization_config?)")
    ids = json.load(open(a.ids))["ids"]
    # BOS replaces each window's first token where the tokenizer adds one (as bitnet perplexity does).
    tc = json.load(open(f"{a.hf}/tokenizer_config.json"))
    bos = model.config.bos_token_id if tc.get("add_bos_token", False) else None
    n = a.ctx
    windows = len(ids) // n
    if a.chunks > 0:
        windows = min(windows, a.chunks)
    if windows < 2:
        sys.exit(f"hf_check: {len(ids)} tokens make fewer than 2 windows of {n}")
    nll, nll2, count = 0.0, 0.0, 0
    with torch.no_grad():
        for w in range(windows):
            win = list(ids[w * n:(w + 1) * n])
            if bos is not None:
                win[0] = bos
            x = torch.tensor([win], device=a.device)
            logp = torch.log_softmax(model(x).logits[0].double(), dim=-1)
            for p in range(n // 2, n - 1):
                v = -logp[p, win[p + 1]].item()
                nll += v
                nll2 += v * v
                count += 1
    mean = nll / count
    ppl = math.exp(mean)
    err = ppl * math.sqrt(max(nll2 / count - mean * mean, 0.0) / (count - 1))
    print(json.dumps({"tool": "transformers " + transformers.__version__, "class": type(model).__name__,
                      "bitlinear_layers": quantized, "ppl": round(ppl, 4), "ppl_err": round(err, 4),
                      "tokens": count, "windows": windows}))


if __name__ == "__main__":
    main()
