#!/usr/bin/env bash
# The GPU half of the performance benchmark, in one run on a CUDA machine: the CUDA tests, then
# training throughput against the tutorial's loop and the recipes' time to accuracy, both with
# --precision auto (bf16 autocast where the GPU supports it).
#
#   TORCHLAB_DATA_DIR=/path/to/data bash bench/gpu.sh      # figures land in bench/results/gpu/
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here: nothing to measure')"
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(), 'bf16' if torch.cuda.is_bf16_supported() else 'fp16/fp32')" | tee "$out/device.txt"
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tee "$out/pytest-cuda.txt"
"$PY" bench/bench_train.py --device cuda --rounds 5 --resnet-steps 10 --json "$out/train.json" 2>&1 | tee "$out/train.txt"
"$PY" bench/bench_recipes.py --json "$out/recipes.json" 2>&1 | tee "$out/recipes.txt"
"$PY" bench/bench_predict.py --json "$out/predict.json" 2>&1 | tee "$out/predict.txt"
# torchrun / DDP over the GPUs of this box (NCCL, one GPU per process), when it has more than one.
ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$ngpu" -gt 1 ]; then
  "$PY" bench/bench_distributed.py --procs "$ngpu" --model resnet50 --epochs 3 --json "$out/distributed.json" 2>&1 | tee "$out/distributed.txt"
else
  echo "one GPU: torchrun across GPUs not measured" | tee "$out/distributed.txt"
fi
