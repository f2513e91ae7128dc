#!/usr/bin/env python3
"""Golden ids for corpus.jsonl from the reference implementations (run once, output committed).

Needs tiktoken and HF tokenizers (no network) and the LLaMA-3 rank table:
  python3 gen_goldens.py llama3.tiktoken corpus.jsonl goldens_llama3.jsonl [tokenizer.json]
For every sample it writes {"text", "plain", "special", "hf"}:
  plain   - tiktoken encode(text, disallowed_special=())       (special strings are plain text)
  special - tiktoken encode(text, allowed_special="all")       (special strings parsed)
  hf      - HF tokenizers encode(text, add_special_tokens=False) with a tokenizer.json built here
            from the same ranks (BPE + ignore_merges, Split(regex) + ByteLevel), or null if it
            agrees with "special".
"""
import base64
import json
import sys
import time

import tiktoken
import tiktoken.load

PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
       r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def specials():
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
             "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|reserved_special_token_4|>", "<|eot_id|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
    assert len(names) == 256
    return {n: 128000 + i for i, n in enumerate(names)}


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def hf_json(ranks, spec):
    b2u = bytes_to_unicode()
    enc = lambda bs: "".join(b2u[b] for b in bs)
    vocab = {enc(t): r for t, r in ranks.items()}
    merges = []
    for t, r in ranks.items():
        if len(t) < 2:
            continue
        local = []
        for i in range(1, len(t)):
            l, rr = t[:i], t[i:]
            if l in ranks and rr in ranks:
                local.append((ranks[l], ranks[rr], r, l, rr))
        local.sort()
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    return {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s, i in spec.items()],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PAT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True, "vocab": vocab,
                  "merges": [[enc(m[3]), enc(m[4])] for m in merges]},
    }


def main():
    rank_file, corpus_file, out_file = sys.argv[1:4]
    tj_out = sys.argv[4] if len(sys.argv) > 4 else None
    ranks = tiktoken.load.load_tiktoken_bpe(rank_file)
    spec = specials()
    enc = tiktoken.Encoding(name="llama3", pat_str=PAT, mergeable_ranks=ranks, special_tokens=spec)
    texts = [json.loads(l)["text"] for l in open(corpus_file, encoding="utf-8")]

    hf = None
    try:
        import tokenizers
        t0 = time.time()
        js = json.dumps(hf_json(ranks, spec), ensure_ascii=False)
        hf = tokenizers.Tokenizer.from_str(js)
        print(f"hf tokenizer built in {time.time() - t0:.1f}s, tokenizers {tokenizers.__version__}")
        if tj_out:
            open(tj_out, "w", encoding="utf-8").write(js)
    except Exception as e:  # keep the tiktoken goldens even if HF fails
        print("HF tokenizers unavailable:", repr(e))

    ndiff = 0
    with open(out_file, "w", encoding="utf-8") as f:
        for t in texts:
            plain = enc.encode(t, disallowed_special=())
            special = enc.encode(t, allowed_special="all")
            assert enc.decode_bytes(plain) == t.encode("utf-8", "surrogatepass")
            h = None
            if hf is not None:
                ids = hf.encode(t, add_special_tokens=False).ids
                if ids != special:
                    ndiff += 1
                    h = ids
            f.write(json.dumps({"text": t, "plain": plain, "special": special, "hf": h}) + "\n")
    print(f"tiktoken {tiktoken.__version__}: {len(texts)} samples; HF differs from tiktoken on {ndiff}")

    big = "".join(texts) * 8
    big = (big * (1 + (1 << 20) // len(big.encode())))
    t0 = time.time()
    n = len(enc.encode(big, disallowed_special=()))
    print(f"tiktoken: {len(big.encode())} bytes -> {n} tokens in {time.time() - t0:.3f}s (1 thread)")


if __name__ == "__main__":
    main()
