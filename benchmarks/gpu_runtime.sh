#!/usr/bin/env bash
# One GPU run, under 7 minutes on an H100: the transformers baseline, then vlground's pipeline, on the
# same workload (random weights of Qwen2.5-VL-7B's size, bf16, 32 images, exactly 64 new tokens each).
#
#   bash benchmarks/gpu_runtime.sh path/to/hf_baseline.py
#
# Writes baseline.json, runtime.json (ours, with the baseline's figures and the speed-ups) and both logs
# under $OUT (default ./out). SIZE, N and NEW may be overridden (SIZE=tiny N=4 tries it on a CPU).
#
# vlground runs at batch 16 (the baseline's, to compare like with like) and 32: the whole workload in
# one batch (N=32 allows no larger one); the 7B weights take 15 GiB in bf16 and a batch of 32 adds a
# few GiB of activations and cache, far under 80 GB. Each with transformers' per-window vision
# attention, then with vlground's packed one, so the gain of each step shows.
set -uo pipefail
baseline=$(realpath "${1:?usage: bash benchmarks/gpu_runtime.sh path/to/hf_baseline.py}")
OUT=$(realpath -m "${OUT:-out}")
cd "$(dirname "$0")/.."
export OUT PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export SIZE=${SIZE:-7b} N=${N:-32} NEW=${NEW:-64}
mkdir -p "$OUT"
BS=16 timeout 270 python "$baseline" 2>&1 | tee "$OUT/baseline.log" || echo "baseline failed or timed out"
BS=16,32 VISION=sdpa,packed timeout 150 python benchmarks/bench_runtime.py 2>&1 | tee "$OUT/runtime.log"
