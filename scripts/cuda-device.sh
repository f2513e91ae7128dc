#!/usr/bin/env bash
# The CUDA backend on the GPU machine, in one `device` call. That machine has nvcc and PyTorch but
# none of the project's Debian libraries (fmt, PCRE2, GoogleTest), so binaries are built here and
# carried there with the libraries they need:
#   scripts/cuda-device.sh stage   # here: Release build for sm_90, binaries + libraries into .device/
#   scripts/cuda-device.sh run     # there (device tool, carry [".device"]): GPU list, the CUDA tests,
#                                  # the same under compute-sanitizer (memcheck; RACE=1, the default:
#                                  # racecheck and synccheck over the shared-memory kernels' tests),
#                                  # then TORCH=1: PyTorch's speed,
#                                  # HF=1: the HF export under transformers against the engine,
#                                  # FIDELITY=1: 2,000 steps of ours and PyTorch's, held-out losses,
#                                  # INFER=1: CUDA inference against the CPU, and its bench,
#                                  # LAB=1: the decode kernels' timing lab
# Results go to $OUT (the device tool brings them back) and to the output's last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
stage)
  b=${BUILD:-build/release}  # BUILD=dir: an existing Release build with CUDA
  scripts/build.sh "$b" -DCMAKE_BUILD_TYPE=Release -DBITNET_CUDA=ON
  rm -rf .device && mkdir -p .device/lib
  cp "$b"/tests/test_cuda "$b"/tests/test_training "$b"/tools/bitnet/bitnet .device/
  # CPU=1 there: the kernel tests on that machine's CPU (AMX), and BASE=binary a bench baseline.
  cp "$b"/tests/test_quant "$b"/tests/test_inference .device/
  [ -n "${BASE:-}" ] && cp "$BASE" .device/bitnet_base
  # FIDELITY=1 there trains on 400 KB of each corpus source (scripts/corpus.sh), where it has been made.
  [ -d build/corpus/train ] && for f in build/corpus/train/*.txt; do head -c 400000 "$f"; done >.device/corpus.txt
  # INFER=1 there: the peers' interop files (5.5 MB), perplexity on the CPU and the GPU.
  [ -d ../shared/interop ] && cp -r ../shared/interop .device/interop
  strip .device/test_* .device/bitnet*  # the call carries at most 64 MiB
  # Non-system libraries the binaries link (the GPU machine's glibc and libstdc++ are newer).
  for exe in .device/test_cuda .device/test_training .device/bitnet; do
    ldd "$exe" | awk '/=> \// {print $3}' | grep -Ev 'libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|librt|libdl|cuda|cublas' |
      xargs -r -I{} cp -L {} .device/lib/
  done
  # xz: a stripped binary is ~20 MB, ~5 MB packed (run unpacks them, with Python's lzma if that
  # machine has no xz).
  xz -T0 -3 -f .device/test_* .device/bitnet*
  du -sh .device
  ;;
run)
  for f in .device/*.xz; do
    [ -e "$f" ] || continue
    xz -d -f "$f" 2>/dev/null ||
      python3 -c 'import lzma,sys,os; d=sys.argv[1][:-3]; open(d,"wb").write(lzma.open(sys.argv[1]).read()); os.remove(sys.argv[1])' "$f"
    chmod +x "${f%.xz}"
  done
  . scripts/device-env.sh
  nvidia-smi -L
  if [ "${LAB:-0}" = 1 ]; then  # LAB=1: the decode kernels' lab (microseconds per launch, phases)
    .device/test_cuda --gtest_also_run_disabled_tests --gtest_filter='CudaDecodeTiming*:CudaGemmTiming*' 2>&1 |
      tee "$OUT/lab.log" | grep -E '^\[   time'
  fi
  if [ "${BENCH_ONLY:-0}" != 1 ]; then
  echo "== CUDA tests"
  .device/test_cuda 2>&1 | tee "$OUT/test_cuda.log" | grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[   info|Failure|error' || true
  if [ "${SANITIZER:-1}" = 1 ]; then  # SANITIZER=0: the plain run only
  echo "== CUDA tests under compute-sanitizer (memcheck)"
  # --report-api-errors no: NCCL probes its kernels with cudaFuncGetAttributes and handles the
  # "no kernel image" answers itself; the project's own API calls are checked by BN_CUDA anyway.
  timeout "${SANITIZER_TIMEOUT:-300}" compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 .device/test_cuda \
    --gtest_filter="${SAN_FILTER:-*}" >"$OUT/sanitizer.log" 2>&1 &&
    echo "compute-sanitizer: no errors" || { echo "compute-sanitizer: FAILED"; tail -40 "$OUT/sanitizer.log"; }
  grep -E '^\[  (PASSED|FAILED) ' "$OUT/sanitizer.log" || true
  fi
  if [ "${RACE:-${SANITIZER:-1}}" = 1 ]; then  # RACE=0: no racecheck / synccheck
  # racecheck (shared-memory hazards) and synccheck (barriers; it also slows warps unevenly, which
  # showed a race of decode_gemv's pair slots as wrong logits) over the tests of the kernels with
  # shared-memory exchanges: about 40 s and 10 s on an H100. RACE_FILTER=...: other tests (the
  # fused decode kernel's FusedDecode/tiny takes 150 s under racecheck, CudaTopK.EqualsTheHosts* 85 s).
  race_filter=${RACE_FILTER:-'CudaDecodeGemv.*:*NormQuant*:*RopeFromSums*:*PromptAttention*:CudaTopK.ArgmaxRows*:CudaTopK.DecodeTop*'}
  echo "== racecheck"
  timeout "${RACE_TIMEOUT:-300}" compute-sanitizer --tool racecheck --error-exitcode 9 .device/test_cuda \
    --gtest_filter="$race_filter" >"$OUT/racecheck.log" 2>&1 &&
    echo "racecheck: no hazards" || { echo "racecheck: FAILED"; grep -m5 -A1 'Error: Race' "$OUT/racecheck.log"; }
  echo "== synccheck"
  timeout "${RACE_TIMEOUT:-300}" compute-sanitizer --tool synccheck --error-exitcode 9 .device/test_cuda \
    --gtest_filter="$race_filter:*FfnRowsWider*" >"$OUT/synccheck.log" 2>&1 &&
    echo "synccheck: no errors, every test passed" || { echo "synccheck: FAILED"; grep -E -m10 'FAILED|Failure|Error' "$OUT/synccheck.log"; }
  fi
  fi
  if [ "${CPU:-0}" = 1 ] && [ "${BENCH_ONLY:-0}" != 1 ]; then
    echo "== CPU kernel tests on this machine's CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2))"
    grep -o -m1 'amx_int8' /proc/cpuinfo || echo "(no AMX here)"
    for t in test_quant test_inference; do
      .device/$t --gtest_filter=-DefaultModel.* 2>&1 | tee "$OUT/$t.log" | grep -E '^\[  (FAILED|PASSED|SKIPPED) ' || true
    done
  fi
  if [ "${CPU:-0}" = 1 ]; then
    if [ -x .device/bitnet_base ]; then
      echo "== bitnet bench, baseline and this tree alternately (2 threads pinned to vCPUs 0,1)"
      for round in 1 2 3; do
        order="bitnet_base bitnet"
        [ $((round % 2)) = 0 ] && order="bitnet bitnet_base"  # alternate which runs first
        for b in $order; do
          echo "-- $b round $round"
          # This tree's bench would pick the GPU here; a baseline from before --device knows only the CPU.
          dev=""; [ "$b" = bitnet ] && dev="--device cpu"
          taskset -c 0,1 .device/$b bench --synthetic 2b4t -p 128 -n 0 -r 3 -t 2 --no-bound --profile $dev 2>&1 |
            grep -E '^\| (synth|attn norm|qkv|attention|ffn norm|gate|relu2|down|o gemv)'
        done
      done
    fi
  fi
  if [ "${TRAIN:-0}" = 1 ]; then
    if [ "${TRAIN_320:-1}" = 1 ]; then  # TRAIN_320=0: only the reference shape (vocabulary 50,304)
    echo "== bitnet train --device cuda (byte-level vocabulary, README + docs as data)"
    rm -rf /tmp/bt_small /tmp/bt_gpt2
    .device/bitnet train --device cuda --data README.md docs --config small --steps 40 --batch 16 --seq 256 \
      --eval-every 20 --save-every 0 -o /tmp/bt_small --json >"$OUT/train_small.jsonl" 2>&1 || tail -5 "$OUT/train_small.jsonl"
    grep -E '"event":"(eval|exported)"' "$OUT/train_small.jsonl" | tail -3
    grep '"event":"step"' "$OUT/train_small.jsonl" | tail -1
    .device/bitnet run -m /tmp/bt_small/model.gguf -p "The model" -n 24 --temp 0 2>/dev/null | tail -1 || true
    echo "-- gpt2-small shape (vocab 320), batch 16 x 1024: ours (GPU time per op), then PyTorch compiled"
    BITNET_CUDA_PROFILE=20 .device/bitnet train --device cuda --data README.md docs --config gpt2-small --steps 20 \
      --batch 16 --seq 1024 --eval-every 0 --save-every 0 -o /tmp/bt_gpt2 --json >"$OUT/train_gpt2_log.jsonl" 2>"$OUT/train_gpt2_profile.txt"
    python3 bench/steady_rate.py "$OUT/train_gpt2_log.jsonl" | tee "$OUT/train_gpt2.jsonl"
    cat "$OUT/train_gpt2_profile.txt"
    python3 bench/train_pytorch.py --synthetic-vocab 320 --synthetic-tokens 2000000 --config gpt2-small \
      --batch 16 --seq 1024 --bf16 --compile --time-steps 20 --device cuda 2>/dev/null | tail -1 | tee -a "$OUT/train_gpt2.jsonl"
    fi
    # The reference shape: the byte-level vocabulary padded to 50,304 rows (162 M parameters).
    echo "-- gpt2-small, vocabulary 50,304 (--vocab), batch 16 x 1024: ours (GPU time per op), then PyTorch compiled"
    rm -rf /tmp/bt_gpt2v
    BITNET_CUDA_PROFILE=20 .device/bitnet train --device cuda --data README.md docs --config gpt2-small --vocab 50304 \
      --steps 20 --batch 16 --seq 1024 --eval-every 0 --save-every 0 -o /tmp/bt_gpt2v --json \
      >"$OUT/train_ref_log.jsonl" 2>"$OUT/train_ref_profile.txt"
    python3 bench/steady_rate.py "$OUT/train_ref_log.jsonl" | tee "$OUT/train_ref.jsonl"
    cat "$OUT/train_ref_profile.txt"
    [ "${TRAIN_TORCH_REF:-1}" = 1 ] && python3 bench/train_pytorch.py --synthetic-vocab 50304 --synthetic-tokens 20000000 \
      --config gpt2-small --batch 16 --seq 1024 --bf16 --compile --time-steps 20 --device cuda 2>/dev/null | tail -1 |
      tee -a "$OUT/train_ref.jsonl"
  fi
  if [ "${INFER:-0}" = 1 ]; then
    echo "== CUDA inference: models/bitnet-en.gguf on the CPU and the GPU (perplexity, 64 greedy tokens)"
    for dev in cpu cuda; do
      .device/bitnet perplexity -m models/bitnet-en.gguf -f README.md -c 256 -t 16 --device $dev --json 2>/dev/null
      .device/bitnet run -m models/bitnet-en.gguf -p "And the king said" -n 64 --temp 0 -t 16 --device $dev --json \
        2>/dev/null >"$OUT/run_$dev.json"
    done
    python3 -c 'import json,sys; a,b=(json.load(open(f))["tokens"] for f in sys.argv[1:]); print("greedy tokens:", "identical" if a==b else "differ", len(a), len(b))' \
      "$OUT/run_cpu.json" "$OUT/run_cuda.json"
    if [ -d .device/interop ]; then
      echo "== the peers' interop files (llama-perplexity's convention: -c 128 --chunks 8): CPU, GPU, difference"
      for f in .device/interop/*.gguf; do
        c=$(.device/bitnet perplexity -m "$f" -f .device/interop/apache-2.0.txt -c 128 --chunks 8 --device cpu --json 2>/dev/null | tail -1)
        g=$(.device/bitnet perplexity -m "$f" -f .device/interop/apache-2.0.txt -c 128 --chunks 8 --device cuda --json 2>/dev/null | tail -1)
        python3 -c 'import json,sys; c,g=(json.loads(x)["ppl"] for x in sys.argv[2:]); print(sys.argv[1], round(c,4), round(g,4), "%+.4f %%" % (100*(g-c)/c))' \
          "$(basename "$f")" "$c" "$g" || echo "$f: $c | $g"
      done
    fi
    echo "== bitnet bench --device cuda (synthetic 2B4T; F16 head, then Q8_0 and Q6_K)"
    timeout 90 .device/bitnet bench --device cuda --synthetic 2b4t -p 512 -n 128 -b 1,8,64 -r 2 2>&1 | tee "$OUT/bench_cuda.log"
    for e in q8_0 q6_k; do
      timeout 60 .device/bitnet bench --device cuda --synthetic 2b4t --embd-type $e -p 0 -n 64 -b 1,64 -r 2 2>&1 |
        tee -a "$OUT/bench_cuda.log" | grep -E 'tg|GPU'
    done
    echo "== side by side on this host: HF transformers bf16 (bench/hf_bench.py), then our CPU engine"
    timeout 240 python3 bench/hf_bench.py --prompt 512 --gen 64 --batch 1,8 2>"$OUT/hf_bench.err" |
      tee "$OUT/hf_bench.jsonl" || tail -20 "$OUT/hf_bench.err"
    timeout 120 .device/bitnet bench --device cpu --synthetic 2b4t -p 512 -n 32 -b 1,8 -r 2 -t "$(nproc)" 2>&1 |
      tee "$OUT/bench_cpu.log" | grep -E '^\| |CPU|threads'
  fi
  if [ "${HF:-0}" = 1 ]; then
    echo "== the trainer's HF export under transformers' BitNetForCausalLM, against the engine on its GGUF"
    rm -rf /tmp/bt_hf
    .device/bitnet train --device cuda --data README.md docs --config small --steps 60 --batch 16 --seq 256 \
      --eval-every 0 --save-every 0 --embd-type f32 --hf f32 -o /tmp/bt_hf --json >"$OUT/train_hf.jsonl" 2>&1 ||
      tail -5 "$OUT/train_hf.jsonl"
    .device/bitnet tokenize -m /tmp/bt_hf/model.gguf -f docs/PERFORMANCE.md --json >/tmp/bt_hf/ids.json
    python3 bench/hf_check.py --hf /tmp/bt_hf/hf --ids /tmp/bt_hf/ids.json -c 128 2>"$OUT/hf_check.err" |
      tee "$OUT/hf_check.jsonl" || tail -20 "$OUT/hf_check.err"
    .device/bitnet perplexity -m /tmp/bt_hf/model.gguf -f docs/PERFORMANCE.md -c 128 --json 2>/dev/null |
      tee -a "$OUT/hf_check.jsonl"
  fi
  if [ "${FIDELITY:-0}" = 1 ]; then
    echo "== loss-curve fidelity: ours (CUDA) and PyTorch (same init, data order and schedule), 2,000 steps"
    rm -rf /tmp/bt_fid
    data=README.md; [ -f .device/corpus.txt ] && data=.device/corpus.txt
    # Both trainers take the same schedule and evaluation from one list. FID_WARMUP=N: a linear
    # warm-up over N steps (default: none, the peak rate at once).
    fid=(--config small --steps 2000 --batch 16 --seq 256 --warmup "${FID_WARMUP:-0}" --eval-every 100
      --eval-windows "${EVAL_WINDOWS:-32}")
    .device/bitnet train --device cuda --data "$data" "${fid[@]}" --save-every 0 -o /tmp/bt_fid --json 2>&1 |
      grep '"event":"eval"' | tail -1
    cp /tmp/bt_fid/train_log.jsonl "$OUT/fid_ours.jsonl" 2>/dev/null || true
    for mode in ${FID_MODES:-fp32 --bf16}; do  # PyTorch in fp32, then with bf16 autocast
      [ "$mode" = fp32 ] && mode=""
      echo "-- PyTorch ${mode:-fp32}: step, ours, PyTorch, difference"
      python3 bench/train_pytorch.py --shard /tmp/bt_fid/tokens.bin "${fid[@]}" --init-from-ours --same-data-order \
        --device cuda $mode \
        --log "/tmp/torch_fid$mode.jsonl" --print-every 0 2>/tmp/torch_fid.err | tail -1 || tail -20 /tmp/torch_fid.err
      python3 bench/compare_curves.py /tmp/bt_fid/train_log.jsonl "/tmp/torch_fid$mode.jsonl" --tol 0.02 --table \
        --train-steps 1,2,3,5,10,20,50,100,200,300,500,1000,2000 || true
      cp "/tmp/torch_fid$mode.jsonl" "$OUT/" 2>/dev/null || true
    done
  fi
  if [ "${TORCH:-0}" = 1 ]; then
    echo "== PyTorch reference trainer (bench/train_pytorch.py), gpt2-small shape, batch 16 x 1024"
    for mode in "" "--compile"; do
      python3 bench/train_pytorch.py --synthetic-vocab 50304 --synthetic-tokens 20000000 --config gpt2-small \
        --batch 16 --seq 1024 --bf16 $mode --time-steps 20 --device cuda 2>"$OUT/torch${mode}.err" | tail -1 |
        tee -a "$OUT/torch.jsonl" || tail -20 "$OUT/torch${mode}.err"
    done
  fi
  ;;
*)
  echo "usage: $0 stage|run" >&2
  exit 2
  ;;
esac
