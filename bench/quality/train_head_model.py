# Trains a small BitNet b1.58 on a real text, to measure what a quantized head/embedding (Q8_0,
# Q6_K) costs against F16 (issue 5: "measure its perplexity and KL-divergence against the F16 head
# on a real text"). There is no trained checkpoint with a width that Q6_K's 256-value blocks divide
# and no network to fetch one, so we make one.
#
# Model: transformers' BitNetForCausalLM with its projections quantized to the spec during training
# (absmean ternary weights, per-token absmax int8 activations, straight-through gradients), a byte-
# level BPE tokenizer trained on the same text, tied embedding. Width 512 = two Q6_K super-blocks.
#
# Run (GPU, torch 2.11 + transformers 5.x + tokenizers; ~5 min on one H100):
#   python3 train_head_model.py TRAIN.txt HELDOUT.txt OUTDIR [SECONDS]
# Writes OUTDIR/model: config.json, model.safetensors (ternary projections packed as uint8 codes +
# weight_scale, the official 2B4T layout, so it stays small; embedding and norms bf16),
# tokenizer.json, tokenizer_config.json — the folder `bitnet convert` reads — and OUTDIR/ref.json
# with PyTorch's fp32 perplexity of HELDOUT (llama-perplexity's windows, n_ctx 512) as a cross-check.
import os
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import json, math, sys, time
import torch
import torch.nn.functional as F
from transformers import BitNetConfig, BitNetForCausalLM
from transformers.integrations.bitnet import pack_weights
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors

train_path, held_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
budget = float(sys.argv[4]) if len(sys.argv) > 4 else 200.0
os.makedirs(f"{out}/model", exist_ok=True)
torch.manual_seed(5)
dev = "cuda"
t0 = time.time()

# ---- tokenizer: byte-level BPE, GPT-2 split regex, BOS prepended ----
specials = ["<|begin_of_text|>", "<|end_of_text|>"]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
train_text = open(train_path, encoding="utf-8").read()
held_text = open(held_path, encoding="utf-8").read()
chunks = train_text.split("\n\n")
trainer = trainers.BpeTrainer(vocab_size=32000, special_tokens=specials,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train_from_iterator(chunks, trainer)
bos, eos = tok.token_to_id(specials[0]), tok.token_to_id(specials[1])
tok.post_processor = processors.TemplateProcessing(single=f"{specials[0]} $A", special_tokens=[(specials[0], bos)])
V = tok.get_vocab_size()
ids = []
for enc in tok.encode_batch(chunks, add_special_tokens=False):
    ids.extend(enc.ids); ids.append(eos)
ids = torch.tensor(ids, dtype=torch.long, device=dev)
print(f"tokenizer vocab {V}, train tokens {len(ids)}, {time.time() - t0:.0f} s", flush=True)

# ---- model ----
cfg = BitNetConfig(vocab_size=V, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                   num_attention_heads=4, num_key_value_heads=2, hidden_act="relu2",
                   max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=True,
                   bos_token_id=bos, eos_token_id=eos, pad_token_id=None)
model = BitNetForCausalLM(cfg).float().to(dev)

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
print("patched", patch(model), "params", sum(p.numel() for p in model.parameters()), flush=True)

decay = [p for n, p in model.named_parameters() if p.dim() == 2]
other = [p for n, p in model.named_parameters() if p.dim() != 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                        lr=2e-3, betas=(0.9, 0.95), fused=True)
T, B, peak, warm = 512, 48, 2e-3, 200
model.train()
step, t_train = 0, time.time()
while True:
    frac = (time.time() - t_train) / budget
    if frac >= 1.0: break
    lr = peak * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    for g in opt.param_groups: g["lr"] = lr
    ix = torch.randint(0, len(ids) - T - 1, (B,), device=dev)
    pos = ix[:, None] + torch.arange(T, device=dev)[None, :]
    x = ids[pos]; x[:, 0] = bos
    y = ids[pos + 1]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(input_ids=x).logits
    loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
    opt.zero_grad(set_to_none=True); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % 100 == 0: print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {time.time() - t_train:.0f} s", flush=True)
    step += 1
print(f"trained {step} steps, {step * B * T / 1e6:.1f} M tokens in {time.time() - t_train:.0f} s", flush=True)

# ---- save: packed ternary codes + weight_scale (BitLinear: real weight = codes / weight_scale) ----
model.eval()
sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
st = {}
for k, v in sd.items():
    if k == "lm_head.weight": continue  # tied
    if k.endswith(".weight") and k.split(".")[-2] in PROJ:
        s = v.abs().mean().clamp(min=1e-5)
        codes = (v * (1.0 / s)).round().clamp(-1, 1)
        st[k] = pack_weights(codes.clone()).to(torch.uint8).contiguous()
        st[k[:-len("weight")] + "weight_scale"] = (1.0 / s).reshape(1).float()
    else:
        st[k] = v.to(torch.bfloat16).contiguous()
save_file(st, f"{out}/model/model.safetensors", metadata={"format": "pt"})
c = cfg.to_dict()
c["architectures"] = ["BitNetForCausalLM"]
c["quantization_config"] = {"quant_method": "bitnet", "linear_class": "bitlinear",
                            "quantization_mode": "offline", "modules_to_not_convert": None}
json.dump(c, open(f"{out}/model/config.json", "w"), indent=2)
tok.save(f"{out}/model/tokenizer.json")
json.dump({"bos_token": specials[0], "eos_token": specials[1], "add_bos_token": True,
           "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1024},
          open(f"{out}/model/tokenizer_config.json", "w"), indent=1)

# ---- PyTorch fp32 reference perplexity of the held-out text, from the saved (bf16-rounded) weights ----
with torch.no_grad():
    for k, v in model.state_dict().items():
        if not (k.endswith(".weight") and k.split(".")[-2] in PROJ): v.copy_(v.to(torch.bfloat16).float())
    held = tok.encode(held_text).ids  # BOS first
    n_ctx = 512
    nw = min(len(held) // n_ctx, 40)
    nll, cnt = 0.0, 0
    for w in range(nw):
        win = list(held[w * n_ctx:(w + 1) * n_ctx]); win[0] = bos
        lp = torch.log_softmax(model(input_ids=torch.tensor([win], device=dev)).logits[0].double(), -1)
        tgt = torch.tensor(win[n_ctx // 2 + 1:], device=dev)
        nll -= lp[n_ctx // 2:n_ctx - 1].gather(1, tgt[:, None]).sum().item(); cnt += len(tgt)
ref = {"ppl": math.exp(nll / cnt), "windows": nw, "scored": cnt, "n_ctx": n_ctx, "held_tokens": len(held),
       "steps": step, "train_tokens_seen": step * B * T, "vocab": V, "final_loss": loss.item()}
json.dump(ref, open(f"{out}/ref.json", "w"), indent=1)
print("ref", ref, f"total {time.time() - t0:.0f} s", flush=True)
