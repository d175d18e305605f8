#!/usr/bin/env bash
# The GPU checks, as one script for a session that is lent a GPU machine (see the device tool).
# Prepare here first:  echo /.whl/ >> .git/info/exclude, then download the wheels the device
# image lacks into .whl/ (Python 3.12: skl2onnx, and scikit-learn 1.9.1 and skorch to match the
# CPU results).
# Run there (carry .whl):  bash benchmarks/gpu_checks.sh [steps]   — results land in $OUT (or
# ./gpu-results) as gpu-results.tar.gz. Steps (default: all, in this order, most important first):
#   tests     the CUDA tests (the rest of the suite runs in CI)
#   serving   issue 16's GPU targets: batch-1 call cost with CUDA-graph replay (<= 60 us),
#             every model at 10k rows vs onnxruntime on all cores, kNN >= 10x scikit-learn
#   trees     benchmarks/trees.py on CUDA: issue 4's GPU target (>= 10x onnxruntime CPU at
#             >= 10k rows; onnxruntime with 1 thread and with every core) and the CUDA rule
#   matrix    the strategies on eight more forest shapes on CUDA (the CUDA rule's calibration)
#   bench     bridge-bench, full suite, every backend that runs there
#   compiled  the deep tree with torch.compile (mode='reduce-overhead') on CUDA
#   train     training and prediction overhead on CUDA
# Each step has a time limit (a lent machine has ~15 minutes in all, at most 10 per command)
# and archives what it wrote to $OUT as soon as it ends, so a step cut short loses only itself.
# Session 5 (H100): all steps took ~7 minutes, "tests trees matrix compiled" ~4.5; matrix
# needs ~50 s per forest. Commit the results under benchmarks/results/ named after the device
# (trees-h100.md, ...) with a line saying the run, the commit and the command.
set -uo pipefail
steps="${*:-tests serving trees matrix bench compiled train}"
want() { [[ " $steps " == *" $1 "* ]]; }
final="${OUT:-gpu-results}"  # at most 8 files come back: everything travels as one archive
out=/tmp/gpu-results
mkdir -p "$out" "$final"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || export PYTHONPATH=$PWD:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sklearn, onnx, onnxruntime, skl2onnx, numpy, os
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'sklearn', sklearn.__version__,
      'onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__, 'skl2onnx',
      skl2onnx.__version__, 'numpy', numpy.__version__, 'cores', os.cpu_count())"
  lscpu | grep -E "Model name|^CPU\(s\)"; } 2>&1 | tee "$out/machine.txt"
step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $out/NAME.txt
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s) $(date +%T)"
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1; echo "exit $?" >> "$out/$name.txt"
    tail -4 "$out/$name.txt"
    cp benchmarks/results/*gpu* "$out/" 2>/dev/null
    tar -czf "$final/gpu-results.tar.gz" -C "$out" .
}
want tests && step pytest 60 python3 -m pytest -q -p no:cacheprovider -m cuda
want serving && step serving 150 python3 -m bridge.bench --suite full --batch-sizes 1,10000 \
    --backends sklearn,onnxruntime-cpu,torch-cuda,torch-cuda-graphs --repeats 5 \
    --json "$out/serving-gpu.json" --markdown
want trees && step trees 150 python3 benchmarks/trees.py --devices cuda --no-compile \
    --ort-all-cores --output trees-gpu
want matrix && step matrix 100 python3 benchmarks/trees.py --matrix --devices cuda \
    --output trees-matrix-gpu
want bench && step bench 85 python3 -m bridge.bench --suite full --batch-sizes 1,100,10000 \
    --backends sklearn,onnxruntime-cpu,onnxruntime-cuda,torch-cpu,torch-cuda,torch-cuda-graphs \
    --json "$out/bench-full-gpu.json" --plot "$out/bench-full-gpu.png" --markdown
want compiled && step compiled 50 python3 benchmarks/trees.py --devices cuda \
    --cases deep_tree_20 --output trees-gpu-compiled
want train && step train 45 python3 benchmarks/train_overhead.py --device cuda --repeats 1
tar -czf "$final/gpu-results.tar.gz" -C "$out" . && ls -la "$out"
