#!/usr/bin/env bash
# The whole device check of issues 9, 11 and 14 for a GPU lent for ~15 minutes, as ONE command of < 10 min.
# See docs/gpu_session.md for how to call it from the device tool, what comes back and what to do with it.
#
# Phase 1 (parallel, --fit-minutes TEACHER_MIN each; every schedule is fitted to the time, so it completes):
#   fold_recipe   dense teacher from scratch on every drive but HOLD, camera effects + EMA (the recipe)
#   fold_base     the same without them (the recipe's held-out comparison at GPU length)
#   fold_seg      the recipe with Segmenter's mask decoder (issue 14), same fold
#   final         the shipped teacher (INIT_TEACHER) trained on, with the recipe, on train + val (every drive)
# Phase 2 (parallel, STUDENT_MIN each): DoViT students of fold_recipe, fold_seg and final.
# Phase 3: scores on the held-out drive (fold models, teacher at xi 0 / 1, students over the xi grid), and the
#   final models on val (a drive they trained on: secondary); issue 11's GPU benchmark (ViT-B 512x1024 bf16).
# Phase 4: everything small in results.tgz, the final teacher + student in final.tar split into 15 MiB parts.
#
# Environment (defaults in brackets): DATA [.devdata/camvid], HOLD [0001TP], OUT [runs/gpu_session],
# TEACHER_MIN [4.0], STUDENT_MIN [1.0], INIT_TEACHER [checkpoints/camvid_dense_vit_tiny], DEVICE [cuda],
# WORKERS [3], EXTRA [] (flags added to every training, e.g. "--input-size 64 96" for a CPU smoke run),
# BENCH [1] (0 skips the benchmark), BENCH_ARGS [issue 11's GPU case].
set -u -o pipefail
export PYTHONUNBUFFERED=1
DATA=${DATA:-.devdata/camvid}
HOLD=${HOLD:-0001TP}
OUT=${OUT:-runs/gpu_session}
TEACHER_MIN=${TEACHER_MIN:-4.0}
STUDENT_MIN=${STUDENT_MIN:-1.0}
INIT_TEACHER=${INIT_TEACHER:-checkpoints/camvid_dense_vit_tiny}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-3}
EXTRA=${EXTRA:-}
BENCH=${BENCH:-1}
BENCH_ARGS=${BENCH_ARGS:---device cuda --dtype bfloat16 --backbone vit_base_patch16_224 --input-size 512 1024 --batch 1 32 --fractions 0.5 0.25 --repeats 5 --warmup 2}
RUNS=runs/gpu_session_runs
mkdir -p "$OUT" "$RUNS"
START=$(date +%s)
say() { echo "[$(( $(date +%s) - START ))s] $*"; }

say "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no nvidia-smi)"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
[ -d "$DATA/train" ] || { echo "no $DATA/train: run scripts/prepare_gpu_data.py and carry .devdata"; exit 2; }

COMMON="--data-root $DATA --stem conv --batch-size 16 --class-weight-power 0.5 --workers $WORKERS --threads 1 \
  --eval-every 0 --save-every 100 --no-progress $EXTRA"
FOLD="--train-split train+val --val-split train+val --val-sequences $HOLD"
RECIPE="--camera-aug 0.5 --ema 0.99"
TEACHER="--stage dense --steps 6000 --warmup-steps 100 --lr 8e-4 --fit-minutes $TEACHER_MIN"

train() {  # name, flags...: one background training run, its console output in RUNS/name.out
  local name=$1; shift
  say "start $name: python -m dovit.train $*"
  python3 -m dovit.train --output "$RUNS/$name" "$@" >"$RUNS/$name.out" 2>&1 &
}

# ---- preflight (~30 s): one tiny run through every code path the phases use (init, recipe, Segmenter,
# student, evaluate), so a broken environment (torch/timm versions there) costs seconds, not the lease
PRE="--data-root $DATA --stem conv --input-size 64 96 --batch-size 2 --steps 2 --warmup-steps 1 --eval-every 0 \
  --max-val-images 2 --workers 0 --threads 2 --no-progress $RECIPE --train-split train+val --val-split val"
if ! { python3 -m dovit.train --stage dense --output "$RUNS/pre_t" $PRE --decoder segmenter --decoder-channels 64 \
         --init-weights "$INIT_TEACHER" \
    && python3 -m dovit.train --stage dovit --output "$RUNS/pre_s" --init "$RUNS/pre_t/last" --teacher "$RUNS/pre_t/last" \
         --xi 0.9 --xi-range 0.8 1.0 --dense-fraction 0.5 --fit-minutes 0.05 $PRE \
    && python3 -m dovit.evaluate --checkpoint "$RUNS/pre_s/last" --data-root "$DATA" --device "$DEVICE" \
         --max-images 2 --xi 0.9 1 --throughput-images 2; } >"$RUNS/preflight.out" 2>&1; then
  cat "$RUNS/preflight.out"; say "preflight failed: nothing trained"; exit 3
fi
rm -rf "$RUNS/pre_t" "$RUNS/pre_s"
say "preflight ok"

# ---- phase 1: teachers
train fold_recipe $TEACHER $FOLD $RECIPE --decoder skip --decoder-channels 64 $COMMON
train fold_base $TEACHER $FOLD --decoder skip --decoder-channels 64 $COMMON
train fold_seg $TEACHER $FOLD $RECIPE --decoder segmenter --decoder-channels 192 $COMMON
train final --stage dense --steps 6000 --warmup-steps 50 --lr 3e-4 --fit-minutes "$TEACHER_MIN" \
  --init-weights "$INIT_TEACHER" --train-split train+val --val-split val $RECIPE --decoder skip \
  --decoder-channels 64 $COMMON
wait
say "phase 1 done"; tail -n 3 "$RUNS"/*/train.log

# ---- phase 2: students (the shipped student's recipe, schedule fitted to STUDENT_MIN, last/ kept: no picking)
STUDENT="--stage dovit --xi 0.9 --xi-range 0.8 1.0 --dense-fraction 0.5 --steps 600 --lr 1.4e-4 --warmup-steps 30 \
  --fit-minutes $STUDENT_MIN $RECIPE"
SCOMMON="${COMMON/--batch-size 16/--batch-size 8}"
for pair in "fold_recipe:$FOLD" "fold_seg:$FOLD" "final:--train-split train+val --val-split val"; do
  teacher=${pair%%:*}; split=${pair#*:}
  if [ -f "$RUNS/$teacher/last/model.safetensors" ]; then
    train "${teacher}_student" $STUDENT --init "$RUNS/$teacher/last" --teacher "$RUNS/$teacher/last" $split $SCOMMON
  else
    say "skip ${teacher}_student: $teacher has no last/"
  fi
done
wait
say "phase 2 done"; tail -n 3 "$RUNS"/*_student/train.log

# ---- phase 3: scores (the final schedule's last/, never a picked checkpoint), then the benchmark
evaluate() {  # run, out-name, flags...: in the background, all at once (their fps / latency are not figures to quote)
  local run=$1 name=$2; shift 2
  [ -f "$RUNS/$run/last/model.safetensors" ] || { say "skip eval $name: no $run/last"; return; }
  ( python3 -m dovit.evaluate --checkpoint "$RUNS/$run/last" --data-root "$DATA" --device "$DEVICE" --threads 2 \
      --throughput-images 16 --json "$RUNS/eval_$name.json" "$@" >"$RUNS/eval_$name.out" 2>&1 \
    || say "eval $name failed (see $RUNS/eval_$name.out)" ) &
}
HELD="--split train+val --sequences $HOLD"
evaluate fold_recipe fold_recipe_teacher $HELD --xi 0 1
evaluate fold_base fold_base_teacher $HELD --xi 0 1
evaluate fold_seg fold_seg_teacher $HELD --xi 0 1
evaluate fold_recipe_student fold_recipe_student $HELD --xi 0 0.8 0.9 0.95 1
evaluate fold_seg_student fold_seg_student $HELD --xi 0 0.8 0.9 0.95 1
evaluate final final_teacher_val --split val --xi 0 1
evaluate final_student final_student_val --split val --xi 0 0.8 0.9 0.95 1
wait
say "phase 3 scores done"
if [ "$BENCH" = 1 ]; then  # alone on the GPU; the real-frame case on the new student when it exists
  FRAMES=""
  [ -f "$RUNS/final_student/last/model.safetensors" ] && FRAMES="--data-root $DATA --frames 32 --checkpoint $RUNS/final_student/last"
  timeout 120 python3 -m dovit.benchmark $BENCH_ARGS ${FRAMES:---no-frames} --json "$RUNS/gpu_benchmark.json" >"$RUNS/gpu_benchmark.out" 2>&1 \
    || say "benchmark failed or timed out (see gpu_benchmark.out)"
  cat "$RUNS/gpu_benchmark.out"
fi

# ---- phase 4: pack what comes back (the device tool returns at most 8 files of 16 MiB, 64 MiB together)
python3 - "$RUNS" <<'PY'
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
for path in sorted(runs.glob("eval_*.json")):
    for row in json.loads(path.read_text()).get("results", []):
        print(f"{path.stem:32s} xi {row.get('xi'):<5} mIoU {100 * row.get('miou', float('nan')):5.2f} "
              f"GFLOPs {row.get('gflops', float('nan')):6.2f} / {row.get('dense_gflops', float('nan')):6.2f}")
PY
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='train_state.pt' "$RUNS"
if [ -f "$RUNS/final/last/model.safetensors" ]; then
  parts=("$RUNS/final/last")
  [ -f "$RUNS/final_student/last/model.safetensors" ] && parts+=("$RUNS/final_student/last")
  tar cf - "${parts[@]}" | split -b 15M - "$OUT/final.tar.part-"
fi
ls -la "$OUT"
say "done"
