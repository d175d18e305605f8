#!/usr/bin/env bash
# The GPU checks, as one script for a session that is lent a GPU machine (see the device tool).
# Prepare here first:  echo /.whl/ >> .git/info/exclude, then download the wheels the device
# image lacks into .whl/ (skl2onnx, onnxscript, onnx-ir, safetensors, tqdm, ... for Python 3.12).
# Run there (carry .whl):  bash benchmarks/gpu_checks.sh [steps]   — results land in $OUT (or
# ./gpu-results). Steps (default: all, in this order, most important first): tests trees bench
# train. A lent machine has ~15 minutes in all, at most 10 per command: run the steps in two
# calls if needed (e.g. "tests trees", then "bench train").
set -uo pipefail
steps="${*:-tests trees bench train}"
want() { [[ " $steps " == *" $1 "* ]]; }
out="${OUT:-gpu-results}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
python3 -m pip install -q --no-deps -e . || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

# tests: the CUDA tests (the rest of the suite runs in CI)
want tests && python3 -m pytest -q -p no:cacheprovider -m cuda 2>&1 | tail -30 | tee "$out/pytest.txt"
# trees: tree strategies on CUDA (issue 4's GPU target: >= 10x onnxruntime CPU at >= 10k rows)
if want trees; then
    python3 benchmarks/trees.py --no-compile --output trees-gpu > "$out/trees-gpu.txt" 2>&1
    cp benchmarks/results/trees-gpu.* "$out/" 2>/dev/null
fi
# bench: bridge-bench, every backend that runs here
want bench && bridge-bench --suite full --batch-sizes 1,100,10000,100000 \
    --backends sklearn,onnxruntime-cpu,onnxruntime-cuda,torch-cpu,torch-cuda \
    --json "$out/bench-full-gpu.json" --plot "$out/bench-full-gpu.png" --markdown \
    > "$out/bench-full-gpu.txt" 2>&1
# train: training overhead on the GPU
want train && python3 benchmarks/train_overhead.py --device cuda > "$out/train_overhead-gpu.txt" 2>&1
ls -la "$out"
