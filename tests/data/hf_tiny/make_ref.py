# Generates tests/data/hf_tiny: a tiny BitNet b1.58 trained with transformers, saved the way
# transformers saves it (bf16 master weights) plus a packed-uint8 + weight_scale variant, and a
# PyTorch fp32 reference (perplexity with llama-perplexity's windows, greedy continuation).
# Run: python3 make_ref.py  (torch 2.11, transformers 5.x, tokenizers; GPU optional); writes out/,
# whose contents were copied here (heldout.txt is expected.json's "heldout" text).
import os
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # transformers' @torch.compile quant helpers run eagerly
import json, math, random, shutil
import torch
import torch.nn.functional as F
import transformers
from transformers import BitNetConfig, BitNetForCausalLM
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors

OUT = "out"
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(f"{OUT}/master"); os.makedirs(f"{OUT}/packed")
torch.manual_seed(1234); random.seed(1234)
dev = "cuda" if torch.cuda.is_available() else "cpu"

# ---- text: a small generated English corpus (learnable in a few hundred steps) ----
subj = ["the cat", "a dog", "the old man", "my sister", "the small bird", "a farmer", "the teacher", "our neighbour"]
verb = ["sees", "likes", "finds", "follows", "paints", "carries", "watches", "feeds"]
obj = ["the red ball", "a green apple", "the quiet river", "a wooden box", "the tall tree", "some bread", "the blue door"]
tail = ["in the morning", "after dinner", "near the house", "every day", "on sunday", "with great care", "again"]
def sentence(r):
    s = f"{r.choice(subj)} {r.choice(verb)} {r.choice(obj)} {r.choice(tail)}."
    return s[0].upper() + s[1:]
def text(seed, n):
    r = random.Random(seed)
    return " ".join(sentence(r) for _ in range(n))
train_text = text(1, 3000)
held_text = text(2, 120)

# ---- byte-level BPE tokenizer (GPT-2 regex, no prefix space), BOS via TemplateProcessing ----
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
specials = ["<|begin_of_text|>", "<|end_of_text|>"]
trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train_from_iterator([train_text], trainer)
bos = tok.token_to_id(specials[0]); eos = tok.token_to_id(specials[1])
tok.post_processor = processors.TemplateProcessing(single=f"{specials[0]} $A", special_tokens=[(specials[0], bos)])
V = tok.get_vocab_size()
print("vocab", V, "bos", bos, "eos", eos)

# ---- model ----
cfg = BitNetConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, hidden_act="relu2",
                   max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
                   bos_token_id=bos, eos_token_id=eos, pad_token_id=None)
model = BitNetForCausalLM(cfg).float().to(dev)
print("transformers", transformers.__version__, "torch", torch.__version__)

# BitNet b1.58 quantization (transformers.integrations.bitnet WeightQuant / ActQuant, online
# AutoBitLinear): absmean ternary weights, per-token absmax int8 activations, straight-through grads.
# BitNetForCausalLM without a quantization_config uses plain nn.Linear (no quantization), so the
# projection layers are patched here to the spec.
def wq(w):
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1) / s
def aq(x):
    s = 127.0 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s
def qlinear_forward(self, x):
    w = self.weight + (wq(self.weight) - self.weight).detach()
    x = x + (aq(x) - x).detach()
    return F.linear(x, w, self.bias)
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
def patch(m):
    n = 0
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.split(".")[-1] in PROJ:
            mod.forward = qlinear_forward.__get__(mod); n += 1
    return n
print("patched", patch(model))

ids = torch.tensor(tok.encode(train_text, add_special_tokens=False).ids, device=dev)
print("train tokens", len(ids))
opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.0)
T, B = 64, 32
model.train()
for step in range(300):
    ix = torch.randint(0, len(ids) - T - 1, (B,))
    x = torch.stack([ids[i:i + T] for i in ix]); x[:, 0] = bos
    y = torch.stack([ids[i + 1:i + T + 1] for i in ix])
    loss = F.cross_entropy(model(input_ids=x).logits.reshape(-1, V), y.reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 50 == 0 or step == 299: print("step", step, "loss", round(loss.item(), 4))

# ---- save like transformers does: bf16 master weights ----
model.to(torch.bfloat16)
model.save_pretrained(f"{OUT}/master", safe_serialization=True)
tok.save(f"{OUT}/master/tokenizer.json")
tcfg = {"bos_token": specials[0], "eos_token": specials[1], "add_bos_token": True,
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 256}
json.dump(tcfg, open(f"{OUT}/master/tokenizer_config.json", "w"), indent=1)

# ---- reference: reload the saved bf16 weights, compute in fp32 ----
ref = BitNetForCausalLM.from_pretrained(f"{OUT}/master", torch_dtype=torch.float32).to(dev).eval()
print("ref patched", patch(ref))
@torch.no_grad()
def logits_of(m, seq):
    return m(input_ids=torch.tensor([seq], device=dev)).logits[0].float()

held = tok.encode(held_text).ids  # BOS prepended (add_bos)
n_ctx = 64
nw = len(held) // n_ctx
nll, cnt = 0.0, 0
for w in range(nw):
    win = list(held[w * n_ctx:(w + 1) * n_ctx]); win[0] = bos
    lp = torch.log_softmax(logits_of(ref, win).double(), -1)
    for i in range(n_ctx // 2, n_ctx - 1):
        nll -= lp[i, win[i + 1]].item(); cnt += 1
ppl = math.exp(nll / cnt)
print("held tokens", len(held), "windows", nw, "scored", cnt, "ppl", ppl)

prompt = "The cat sees"
seq = tok.encode(prompt).ids
pids = list(seq); gen, margins = [], []
for _ in range(24):
    lg = logits_of(ref, seq)[-1]
    top = torch.topk(lg, 2)
    nxt = int(top.indices[0]); gen.append(nxt); margins.append(float(top.values[0] - top.values[1]))
    seq.append(nxt)
print("greedy", gen, tok.decode(gen))
print("min margin", min(margins))
first_logits = logits_of(ref, pids)[-1].tolist()

# ---- packed uint8 + weight_scale (BitLinear layout: real weight = codes / weight_scale) ----
from transformers.integrations.bitnet import pack_weights
sd = {k: v.detach().float().cpu() for k, v in ref.state_dict().items()}
packed = {}
for k, v in sd.items():
    if k == "lm_head.weight": continue
    if k.endswith(".weight") and k.split(".")[-2] in PROJ:
        s = v.abs().mean().clamp(min=1e-5)
        codes = (v * (1.0 / s)).round().clamp(-1, 1)
        packed[k] = pack_weights(codes.clone()).to(torch.uint8).contiguous()
        packed[k[:-len("weight")] + "weight_scale"] = (1.0 / s).reshape(1).float()
    else:
        packed[k] = v.to(torch.bfloat16).contiguous()
from safetensors.torch import save_file
save_file(packed, f"{OUT}/packed/model.safetensors", metadata={"format": "pt"})
pc = json.load(open(f"{OUT}/master/config.json"))
pc["quantization_config"] = {"quant_method": "bitnet", "linear_class": "bitlinear",
                             "quantization_mode": "offline", "modules_to_not_convert": None}
json.dump(pc, open(f"{OUT}/packed/config.json", "w"), indent=2)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{OUT}/master/{f}", f"{OUT}/packed/{f}")
hf_check = None
try:  # transformers' own BitLinear on the packed file: checks the codes / weight_scale semantics
    pm = BitNetForCausalLM.from_pretrained(f"{OUT}/packed", torch_dtype=torch.float32, device_map=dev).eval()
    d = (logits_of(pm, pids)[-1] - torch.tensor(first_logits, device=dev)).abs().max().item()
    hf_check = {"max_abs_diff_last_logits": d, "types": sorted({type(m).__name__ for m in pm.modules()})}
except Exception as e:
    hf_check = {"error": repr(e)[:500]}
print("hf packed check", hf_check)

exp = {"transformers": transformers.__version__, "torch": torch.__version__,
       "n_ctx": n_ctx, "heldout": held_text, "heldout_ids": held, "ppl": ppl, "windows": nw, "scored": cnt,
       "prompt": prompt, "prompt_ids": pids, "greedy_ids": gen, "greedy_margins": margins,
       "prompt_last_logits": first_logits, "hf_packed_check": hf_check}
json.dump(exp, open(f"{OUT}/expected.json", "w"))
print("sizes", {f: os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs})
