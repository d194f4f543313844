#!/usr/bin/env bash
# One GPU run, under 8 minutes on an H100 or H200: the transformers baseline, then vlground plain and with
# each scheduling mean switched on, on random weights of Qwen2.5-VL-7B's size in bf16 (the standard workload:
# 32 images of 480-1000 x 640-1300 px, "Read all the text in the image.", exactly 64 new tokens each; and the
# varying workload: 96 images, answers of 8 to 160 tokens pinned per request), then the native
# Qwen-VL-9.6B (Qwen-VL-Chat's size) at batch 32 on both workloads.
#
#   bash benchmarks/gpu_runtime.sh [path/to/hf_baseline.py]     # the baseline is skipped without one
#   bash benchmarks/gpu_runtime.sh --dry-run                    # tiny sizes on the CPU (CI runs this)
#
# Writes baseline.json, runtime_7b.json, runtime_qwen-vl-9.6b.json and their logs under $OUT (default ./out);
# on a GPU also copies them to benchmarks/results/<gpu>_hf_baseline_7b.json, <gpu>_runtime_7b.json and
# <gpu>_runtime_qwen_vl.json (<gpu>: h100, h200, ... from the device name). Each step has its own time
# limit, so one that hangs cannot take the others' time; a failed step is reported and the next one runs.
# Needs torch and transformers only (not supervision, shapely, pycocotools or rapidocr), in $PYTHON
# (default python3: the GPU machine's Python with torch; a plain `python` may be another or none).
set -uo pipefail
PYTHON=${PYTHON:-python3}
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
baseline=${1:+$(realpath "$1")}  # resolved before the cd below, so a relative path works from anywhere
OUT=$(realpath -m "${OUT:-out}")
cd "$(dirname "$0")/.."
export OUT PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"
if [ $dry = 1 ]; then
    # tiny models, few images and tokens, on the CPU: every step of the real run, in about a minute
    export CUDA_VISIBLE_DEVICES="" SIZE=tiny N=3 VARY_N=4 NEW=4 SHORTEST=2 LONGEST=6 BS=2 BUDGET=800 IMAGE_SCALE=0.3 OMP_NUM_THREADS=1
    native=qwen-vl-tiny limits=(300 300 300)
else
    export SIZE=7b N=32 VARY_N=96 NEW=64 SHORTEST=8 LONGEST=160 BS=32 BUDGET=${BUDGET:-22400}
    native=qwen-vl-9.6b limits=(150 230 90)
fi
failed=0
if [ -n "$baseline" ]; then
    # the baseline's own batch of 16 (its per-image loop takes most of its time)
    BS=16 timeout -k 20 "${limits[0]}" "$PYTHON" "$baseline" 2>&1 | tee "$OUT/baseline.log" \
        || { echo "baseline failed or timed out"; failed=1; }
else
    echo "no baseline script given: the transformers baseline is skipped"
fi
timeout -k 20 "${limits[1]}" "$PYTHON" benchmarks/bench_runtime.py 2>&1 | tee "$OUT/runtime.log" \
    || { echo "vlground transformers run failed or timed out"; failed=1; }
SIZE=$native RUNS=plain,refill,prefetch,all timeout -k 20 "${limits[2]}" "$PYTHON" benchmarks/bench_runtime.py 2>&1 \
    | tee "$OUT/runtime_native.log" || { echo "vlground native run failed or timed out"; failed=1; }
if [ $dry = 0 ]; then
    gpu=$("$PYTHON" -c "import re, torch; print(re.search(r'([a-z]\d{2,4})', torch.cuda.get_device_name().lower()).group(1))")
    [ -f "$OUT/baseline.json" ] && cp "$OUT/baseline.json" "benchmarks/results/${gpu}_hf_baseline_7b.json"
    [ -f "$OUT/runtime_7b.json" ] && cp "$OUT/runtime_7b.json" "benchmarks/results/${gpu}_runtime_7b.json"
    [ -f "$OUT/runtime_$native.json" ] && cp "$OUT/runtime_$native.json" "benchmarks/results/${gpu}_runtime_qwen_vl.json"
    ls -l benchmarks/results/"${gpu}"_*.json
fi
exit $failed
