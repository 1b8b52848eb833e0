#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one call that ends within BUDGET seconds (default 530).
# Needs the data copied into the ignored folder .data (see benchmarks/cifar_quality.py):
#   mkdir -p .data/MNIST/raw && cp ../shared/data/*.tar.xz .data/ && cp ../shared/data/mnist_test/* .data/MNIST/raw/
# and, on a lent GPU machine, carried there (34 MB; not the unpacked .data/extracted):
#   carry: [".data/cifar10_jpg.tar.xz", ".data/tinyimagenet_val10k.tar.xz", ".data/MNIST"]
# Usage: OUT=$OUT bash benchmarks/gpu_suite.sh
# Everything is written under WORK (default runs/gpu-suite: checkpoints included); OUT receives
# two files: results.tgz (every JSON, log and report, no weights) and console.txt.
#   BUDGET=530     seconds for the whole call
#   SEEDS=0,1,2    quality seeds; runs the budget cannot fit are left for a later call (same WORK)
#   EPOCHS=30      most epochs per quality run; fewer when 4 losses x SEEDS would not fit: the
#                  count is chosen from the measured training speed, the same for every run
#   SKIP_SPEED=1   skip the speed benchmarks (a second call that only adds quality seeds)
#   PYTHON=python3 the interpreter
#   DATA=.data     the folder with the archives and MNIST/raw
#   SMOKE=1        a few-minute rehearsal of the whole call on the CPU with tiny settings
# Each step has its own time limit; a failing step is reported, the next one still runs, and the
# script exits with status 1 at the end. Stopped runs resume only on the same machine (WORK keeps
# their checkpoints; results.tgz leaves the weights out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
WORK=${WORK:-runs/gpu-suite}
DATA=${DATA:-.data}
BUDGET=${BUDGET:-530}
SEEDS=${SEEDS:-0,1,2}
EPOCHS=${EPOCHS:-30}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
exec > >(tee "$WORK/console.txt") 2>&1
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
fail=0
left() { echo $((BUDGET - (SECONDS - start))); }
step() { # step NAME LIMIT_S COMMAND...: run with a time limit, log to $WORK/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s, $(left)s left)"
    timeout --kill-after=15 "$limit" "$@" >"$WORK/$name.log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "!! $name failed (exit $rc): see $WORK/$name.log, ending with:"
        tail -n 3 "$WORK/$name.log" | cut -c 1-300
        fail=1
    fi
    return 0
}

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/gpu.txt"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" |
    tee -a "$WORK/gpu.txt"
if [ -z "${SKIP_SPEED:-}" ]; then
    step train_speed 150 "$PY" benchmarks/train_speed.py --device "$DEVICE" "${SPEED_ARGS[@]}" \
        --configs paper:softmax,fast:softmax,fast:isomaxplus,fast:isomax,fast:isomaxplus,fast:softmax \
        --out "$WORK/train_speed_$DEVICE.json"
    step heads 90 "$PY" benchmarks/heads.py --device "$DEVICE" "${HEADS_ARGS[@]}" \
        --out "$WORK/heads_$DEVICE.json"
fi
# one run's training images/s with the fast preset: the slowest head measured above (or, when
# the measurement failed, a cautious guess)
IPS=$("$PY" -c '
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
    print(int(min(r["images_per_s"] for r in rows if r["preset"] == "fast")))
except Exception:
    print(15000)
' "$WORK/train_speed_$DEVICE.json")
# the quality script stops its runs FINAL_RESERVE_S before its budget; the hard limit below
# (budget + 10 s, then a kill after 10 s more) and the archive must still end within BUDGET
quality_budget=$(($(left) - 35))
if [ "$quality_budget" -lt 120 ]; then
    echo "!! cifar_quality skipped: ${quality_budget}s left, less than the 120s it needs"
    fail=1
else
    echo "== cifar_quality (${quality_budget}s, fitted to ${IPS} images/s)"
    timeout --kill-after=10 $((quality_budget + 10)) "$PY" benchmarks/cifar_quality.py \
        --data "$DATA" --device "$DEVICE" --seeds "$SEEDS" "${QUALITY_ARGS[@]}" \
        --epochs "$EPOCHS" --time-budget "$quality_budget" --fit-epochs "$IPS" \
        --out "$WORK/cifar" --extra "$EXTRA" >"$WORK/cifar_quality.log" 2>&1 || {
        echo "!! cifar_quality: exit $? (see $WORK/cifar_quality.log), ending with:"
        tail -n 3 "$WORK/cifar_quality.log" | cut -c 1-300
        fail=1
    }
    grep -E "^\[|fitted epochs|time budget|total|failed|no seed" "$WORK/cifar_quality.log" |
        tail -n 20
fi
echo "== tables (total $((SECONDS - start))s)"
tail -n 12 "$WORK/heads.log" 2>/dev/null
tail -n 6 "$WORK/train_speed.log" 2>/dev/null
grep -F -A 6 "| method | score | accuracy" "$WORK/cifar/report.md" 2>/dev/null | head -n 7 | cut -c 1-400
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude=tensorboard --exclude=subset \
    --exclude=console.txt -C "$WORK" . && echo "results: $OUT/results.tgz (exit status $fail)"
sleep 1
cp "$WORK/console.txt" "$OUT/console.txt"
exit $fail
