#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one call that ends within BUDGET seconds (default 530).
# Needs the data copied into the ignored folder .data (see benchmarks/cifar_quality.py):
#   mkdir -p .data/MNIST/raw && cp ../shared/data/*.tar.xz .data/ && cp ../shared/data/mnist_test/* .data/MNIST/raw/
# Usage: OUT=$OUT bash benchmarks/gpu_suite.sh
#   BUDGET=530     seconds for the whole call
#   SEEDS=0,1,2    quality seeds; runs the budget cannot fit are left for a later call (same OUT)
#   EPOCHS=30      most epochs per quality run; fewer when 4 losses x SEEDS would not fit: the
#                  count is chosen from the measured training speed, the same for every run
#   SKIP_SPEED=1   skip the speed benchmarks (a second call that only adds quality seeds)
#   PYTHON=python3 the interpreter
#   SMOKE=1        a few-minute rehearsal of the whole call on the CPU with tiny settings
# Each step has its own time limit; a failing step is reported and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
BUDGET=${BUDGET:-530}
SEEDS=${SEEDS:-0,1,2}
EPOCHS=${EPOCHS:-30}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=src
DEVICE=cuda
SPEED_ARGS=(--images 50000 --epochs 3)
HEADS_ARGS=(--amp bf16)
QUALITY_ARGS=(--parallel 4)
EXTRA="--posthoc knn,mahalanobis,vim,react"
if [ -n "${SMOKE:-}" ]; then
    DEVICE=cpu
    SPEED_ARGS=(--images 1024 --epochs 2 --model resnet8)
    HEADS_ARGS=(--rounds 1 --classes 10 --batch 8)
    QUALITY_ARGS=(--parallel 2 --subset 10 --model resnet8)
    EXTRA="$EXTRA --max-ood 100 --amp none"
fi
start=$SECONDS
left() { echo $((BUDGET - (SECONDS - start))); }
step() { # step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s, $(left)s left)"
    timeout --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || echo "!! $name failed (exit $rc): see $OUT/$name.log"
    return 0
}

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" |
    tee -a "$OUT/gpu.txt"
if [ -z "${SKIP_SPEED:-}" ]; then
    step train_speed 150 "$PY" benchmarks/train_speed.py --device "$DEVICE" "${SPEED_ARGS[@]}" \
        --configs paper:softmax,fast:softmax,fast:isomaxplus,fast:isomax \
        --out "$OUT/train_speed_$DEVICE.json"
    step heads 90 "$PY" benchmarks/heads.py --device "$DEVICE" "${HEADS_ARGS[@]}" \
        --out "$OUT/heads_$DEVICE.json"
fi
# one run's training images/s with the fast preset (measured above, or a cautious guess)
IPS=$("$PY" -c '
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
    print(int(next(r["images_per_s"] for r in rows if r["preset"] == "fast")))
except Exception:
    print(15000)
' "$OUT/train_speed_$DEVICE.json")
quality_budget=$(($(left) - 10))
echo "== cifar_quality (${quality_budget}s, fitted to ${IPS} images/s)"
timeout --kill-after=10 $((quality_budget + 20)) "$PY" benchmarks/cifar_quality.py --data .data \
    --device "$DEVICE" --seeds "$SEEDS" "${QUALITY_ARGS[@]}" --epochs "$EPOCHS" \
    --time-budget "$quality_budget" --fit-epochs "$IPS" --out "$OUT/cifar" --extra "$EXTRA" \
    >"$OUT/cifar_quality.log" 2>&1 || echo "!! cifar_quality: exit $? (see $OUT/cifar_quality.log)"
grep -E "^\[|fit-epochs|time budget|total" "$OUT/cifar_quality.log" | tail -n 20
echo "== tables (total $((SECONDS - start))s)"
tail -n 12 "$OUT/heads.log" 2>/dev/null
tail -n 6 "$OUT/train_speed.log" 2>/dev/null
grep -F -A 6 "| method | score | accuracy" "$OUT/cifar/report.md" 2>/dev/null | head -n 7 | cut -c 1-400
