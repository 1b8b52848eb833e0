#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one call (about 9 minutes on one H100).
# Needs the data copied into the ignored folder .data (see benchmarks/cifar_quality.py):
#   mkdir -p .data/MNIST/raw && cp ../shared/data/*.tar.xz .data/ && cp ../shared/data/mnist_test/* .data/MNIST/raw/
# Usage: OUT=$OUT SEEDS=0,1 bash benchmarks/gpu_suite.sh   (then SEEDS=2 for the third seed)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
SEEDS=${SEEDS:-0,1}
mkdir -p "$OUT"
export PYTHONPATH=src
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 benchmarks/heads.py --device cuda --amp bf16 --out "$OUT/heads_gpu.json" | tail -n 25
python3 benchmarks/train_speed.py --device cuda --images 50000 --epochs 3 \
    --out "$OUT/train_speed_gpu.json"
python3 benchmarks/cifar_quality.py --data .data --seeds "$SEEDS" --parallel 4 \
    --out "$OUT/cifar" --extra "--posthoc knn,mahalanobis,vim,react"
