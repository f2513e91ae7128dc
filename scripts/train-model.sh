#!/usr/bin/env bash
# How models/bitnet-en.gguf is made, in two halves:
#   scripts/train-model.sh prepare   # here: the corpus (scripts/corpus.sh, from Debian packages),
#                                    # the tokenizer (bitnet train-tokenizer), the CUDA binaries,
#                                    # all staged in .device/ for the GPU machine
#   scripts/train-model.sh train     # there (device tool, carry [".device"]): trains the ternary
#                                    # model and a float model of the same size on the same data
#                                    # and schedule, for SECONDS (default 240) each; results in $OUT
# Then, here: scripts/train-model.sh finish DIR  # copies the GGUF, tokenizer, log and loss picture
#                                                 # into models/ and writes the sha256
set -euo pipefail
cd "$(dirname "$0")/.."
VOCAB=${VOCAB:-8192}
CONFIG=models/bitnet-en.json
# The schedule: batch x seq tokens per step, warm-up, peak learning rate.
TRAIN_ARGS=(--config "$CONFIG" --batch 32 --seq 256 --lr 2e-3 --warmup 200 --eval-every 250 --eval-windows 64
  --save-every 0 --embd-type q8_0 --tied)
case "${1:-}" in
prepare)
  [ -d build/corpus/train ] || scripts/corpus.sh build/corpus
  scripts/cuda-device.sh stage
  bin=build/release/tools/bitnet/bitnet
  [ -f build/corpus/tokenizer.json ] || "$bin" train-tokenizer --data build/corpus/train --vocab "$VOCAB" \
    -o build/corpus/tokenizer.json
  rm -f .device/test_training  # not needed there; the call carries at most 64 MiB
  tar -C build -cJf .device/corpus.tar.xz corpus/train corpus/test corpus/tokenizer.json
  du -sh .device
  ;;
train)
  . scripts/device-env.sh
  bin=.device/bitnet
  secs=${SECONDS_EACH:-240}
  rm -rf .device/corpus && tar -C .device -xJf .device/corpus.tar.xz
  # Throughput first (30 steps), so the run's length fits the time: the schedule needs the step count.
  rm -rf /tmp/probe
  "$bin" train --device cuda --data .device/corpus/train --tokenizer .device/corpus/tokenizer.json \
    "${TRAIN_ARGS[@]}" --steps 30 --eval-frac 0.02 -o /tmp/probe --json 2>/dev/null | grep '"event":"step"' | tail -1 >/tmp/probe.json
  tps=$(python3 -c "import json;print(json.load(open('/tmp/probe.json'))['tokens_per_second'])")
  steps=$(python3 -c "print(max(100, int($tps * $secs / (32 * 256))))")
  echo "probe: $tps tokens/s -> $steps steps in about $secs s"
  for kind in ternary float; do
    flag=""
    [ "$kind" = float ] && flag="--float"
    rm -rf "/tmp/run_$kind"
    "$bin" train --device cuda --data .device/corpus/train --tokenizer .device/corpus/tokenizer.json \
      "${TRAIN_ARGS[@]}" --steps "$steps" --eval-frac 0.02 $flag -o "/tmp/run_$kind" --json \
      >"$OUT/${kind}_events.jsonl" 2>&1 || tail -5 "$OUT/${kind}_events.jsonl"
    grep '"event":"eval"' "$OUT/${kind}_events.jsonl" | tail -2
    grep '"event":"step"' "$OUT/${kind}_events.jsonl" | tail -1
    cp "/tmp/run_$kind/train_log.jsonl" "$OUT/${kind}_train_log.jsonl"
    [ -f "/tmp/run_$kind/loss.png" ] && cp "/tmp/run_$kind/loss.png" "$OUT/${kind}_loss.png"
  done
  cp /tmp/run_ternary/model.gguf "$OUT/bitnet-en.gguf"
  # Held-out perplexity of the ternary model by the engine, on the test split.
  cat .device/corpus/test/*.txt >/tmp/test.txt
  "$bin" perplexity -m /tmp/run_ternary/model.gguf -f /tmp/test.txt -c 256 --json 2>/dev/null | tail -1 | tee "$OUT/ppl.json"
  "$bin" run -m /tmp/run_ternary/model.gguf -p "The" -n 60 --temp 0 2>/dev/null | tail -3
  ;;
finish)
  dir=${2:?usage: $0 finish DIR_WITH_THE_DEVICE_OUTPUT}
  cp "$dir/bitnet-en.gguf" models/bitnet-en.gguf
  cp build/corpus/tokenizer.json models/tokenizer.json
  cp "$dir/ternary_train_log.jsonl" models/bitnet-en.train_log.jsonl
  cp "$dir/float_train_log.jsonl" models/bitnet-en-float.train_log.jsonl
  [ -f "$dir/ternary_loss.png" ] && cp "$dir/ternary_loss.png" models/bitnet-en.loss.png
  (cd models && sha256sum bitnet-en.gguf >bitnet-en.gguf.sha256)
  ls -la models
  ;;
*)
  echo "usage: $0 prepare|train|finish DIR" >&2
  exit 2
  ;;
esac
