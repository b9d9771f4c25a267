#!/usr/bin/env bash
# Every GPU check of this project in one run, for a machine with a CUDA GPU and the CUDA
# build of torch, from the project root (raysweep installed, or its wheels on PYTHONPATH):
#
#   bash benchmarks/gpu.sh [LOGS]        # LOGS: where the logs go (default gpu-logs/)
#
# In order of what matters most if time runs out: fused seeds against one trial
# (bundles.py), the GPU test suite (tests/test_gpu.py), the size `bundle: {size: auto}`
# picks against fixed sizes (autobundle.py), then separate trials sharing the GPU
# (gpu_packing.py). Each step has a time limit; a step that fails does not stop the rest.
set -u
logs=${1:-gpu-logs}
mkdir -p "$logs"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: run it with a limit, its output to the screen and NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name: $* ($(date -u +%H:%M:%S))"
  timeout "$limit" "$@" 2>&1 | tee "$logs/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, ray; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'ray', ray.__version__)"
  nproc
} 2>&1 | tee "$logs/device.txt"
step fused 100 python3 benchmarks/bundles.py --parts fused --device cuda --fused-steps 100
step suite 300 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py
step auto 150 python3 benchmarks/autobundle.py --seeds 128 --members 1 16 32 64 128
step packing 150 python3 benchmarks/gpu_packing.py --trials 16 --steps 300 --packing 1 16
