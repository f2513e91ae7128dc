#!/usr/bin/env bash
# Data-parallel training (docs/MULTI_GPU.md) on the GPU machine, in one `device` call. Built here
# (that machine has none of the project's Debian libraries), run there:
#   scripts/dp-device.sh stage [DEST]  # here: test_cuda and bitnet from $BUILD (default build/release),
#                                      # any $MUTANTS (test binaries, each run as test_cuda_NAME), their
#                                      # libraries, xz-packed into DEST (default .device-dp) with this script
#   DEST/dp-device.sh run              # there (device tool, carry [DEST]): the data-parallel and trainer
#                                      # tests, each mutant (its failures expected), the same tests under
#                                      # compute-sanitizer, the CLI's errors and launcher path, and the
#                                      # gpt2-small speed with and without --gpus 1; with several GPUs
#                                      # also --gpus N and N processes as a launcher starts them
# Results go to $OUT and to the output's last lines.
set -euo pipefail
case "${1:-}" in
stage)
  cd "$(dirname "$0")/.."
  b=${BUILD:-build/release} dest=${2:-.device-dp}
  rm -rf "$dest" && mkdir -p "$dest/pack/lib"
  cp "$b/tests/test_cuda" "$b/tools/bitnet/bitnet" "$dest/pack/"
  for m in ${MUTANTS:-}; do cp "$m" "$dest/pack/test_cuda_$(basename "$m")"; done
  strip "$dest"/pack/test_cuda* "$dest/pack/bitnet"
  for exe in "$dest/pack/test_cuda" "$dest/pack/bitnet"; do  # as scripts/cuda-device.sh stage
    ldd "$exe" | awk '/=> \// {print $3}' | grep -Ev 'libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|librt|libdl|cuda|cublas' |
      xargs -r -I{} cp -L {} "$dest/pack/lib/"
  done
  tar -C "$dest/pack" -cJf "$dest/pack.tar.xz" . && rm -rf "$dest/pack"
  cp scripts/dp-device.sh "$dest/"
  du -sh "$dest"
  ;;
run)
  set +e  # every part runs and reports, whatever an earlier one did
  here=$(cd "$(dirname "$0")" && pwd)
  cd "$here/.."
  . scripts/device-env.sh  # $OUT, cuBLASLt and NCCL, NCCL_NVLS_ENABLE=0
  bin=/tmp/dp-bin
  rm -rf "$bin" && mkdir -p "$bin" && tar -C "$bin" -xJf "$here/pack.tar.xz"
  export LD_LIBRARY_PATH="$bin/lib:$LD_LIBRARY_PATH"
  nvidia-smi -L
  gpus=$(nvidia-smi -L | grep -c '^GPU')
  filter='CudaDataParallel*:CudaTrain*:Nccl*'
  echo "== tests ($filter)"
  "$bin/test_cuda" --gtest_filter="$filter" 2>&1 | tee "$OUT/test_dp.log" |
    grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[   info|Failure|error' || true
  for m in "$bin"/test_cuda_*; do
    [ -e "$m" ] || continue
    echo "== mutant $(basename "$m") (its data-parallel tests must fail)"
    timeout 120 "$m" --gtest_filter='CudaDataParallel.TwoAndThree*:CudaDataParallel.Quantized*' 2>&1 |
      grep -E '^\[  (FAILED|PASSED) |params .* relative' | tail -6 || true
  done
  echo "== the same under compute-sanitizer (memcheck)"
  timeout "${SANITIZER_TIMEOUT:-180}" compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 "$bin/test_cuda" \
    --gtest_filter="$filter" >"$OUT/sanitizer_dp.log" 2>&1 && echo "compute-sanitizer: no errors" ||
    { echo "compute-sanitizer: FAILED or timed out ($?)"; tail -30 "$OUT/sanitizer_dp.log"; }
  grep -E '^\[  (PASSED|FAILED) |ERROR SUMMARY' "$OUT/sanitizer_dp.log" || true
  echo "== CLI: more GPUs than the machine has; one process as a launcher starts it"
  "$bin/bitnet" train --device cuda --gpus $((gpus + 1)) --data README.md -o /tmp/dp_err 2>&1 | tail -1 || true
  small="--data README.md docs --config small --steps 12 --batch 8 --seq 128 --eval-every 6 --save-every 0 --json"
  rm -rf /tmp/dp_plain /tmp/dp_launch  # a new run does not replace an earlier one's checkpoint
  "$bin/bitnet" train --device cuda $small -o /tmp/dp_plain >/tmp/dp_plain.jsonl 2>&1
  WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29531 \
    "$bin/bitnet" train --device cuda $small -o /tmp/dp_launch >/tmp/dp_launch.jsonl 2>&1 || tail -3 /tmp/dp_launch.jsonl
  grep -h '"info"' /tmp/dp_launch.jsonl | head -2
  python3 - /tmp/dp_plain/train_log.jsonl /tmp/dp_launch/train_log.jsonl <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
d = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b))
e = max(abs(x.get("eval_loss", 0) - y.get("eval_loss", 0)) for x, y in zip(a, b))
print(f"plain vs launcher (1 rank): {len(a)} / {len(b)} steps, max |loss diff| {d:.3g}, eval {e:.3g}")
PY
  echo "== gpt2-small (vocab 50,304), batch 16 x 1024, 20 steps: plain, --gpus 1, twice alternately"
  ref="--data README.md docs --config gpt2-small --vocab 50304 --steps 20 --batch 16 --seq 1024 --eval-every 0 --save-every 0 --json"
  for round in 1 2; do
    for v in plain gpus1; do
      extra=""; [ $v = gpus1 ] && extra="--gpus 1"
      rm -rf /tmp/dp_ref
      "$bin/bitnet" train --device cuda $ref $extra -o /tmp/dp_ref >"$OUT/ref_${v}_$round.jsonl" 2>&1 ||
        tail -3 "$OUT/ref_${v}_$round.jsonl"
      echo "$v round $round: $(python3 bench/steady_rate.py "$OUT/ref_${v}_$round.jsonl")"
    done
  done
  python3 - "$OUT/ref_plain_1.jsonl" "$OUT/ref_gpus1_1.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(f) if '"event":"step"' in l] for f in sys.argv[1:])
print("gpt2-small losses, plain vs --gpus 1: max |diff|", max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)))
PY
  if [ "$gpus" -gt 1 ]; then
    echo "== --gpus $gpus, then $gpus processes with torchrun's variables (global batch 16 x $gpus)"
    big="--data README.md docs --config gpt2-small --vocab 50304 --steps 20 --batch $((16 * gpus)) --seq 1024 --eval-every 0 --save-every 0 --json"
    rm -rf /tmp/dp_n && "$bin/bitnet" train --device cuda $big --gpus "$gpus" -o /tmp/dp_n >"$OUT/ref_gpus$gpus.jsonl" 2>&1 || true
    echo "--gpus $gpus: $(python3 bench/steady_rate.py "$OUT/ref_gpus$gpus.jsonl")"
    rm -rf /tmp/dp_p
    for r in $(seq 0 $((gpus - 1))); do
      WORLD_SIZE=$gpus RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29532 \
        "$bin/bitnet" train --device cuda $big -o /tmp/dp_p >"$OUT/proc_$r.jsonl" 2>&1 &
    done
    wait
    echo "$gpus processes: $(python3 bench/steady_rate.py "$OUT/proc_0.jsonl")"
  fi
  ;;
*)
  echo "usage: $0 stage [DEST] | run" >&2
  exit 2
  ;;
esac
