#!/usr/bin/env bash
# The checks to run on a GPU host, as one script: what the GPU is, whether onnxruntime can use it, the
# device table's tests with their CUDA cases, and the state table alone on the GPU and on the CPU.
#
#     bench/gpu_check.sh            # PYTHON=... to pick the interpreter (default python3)
#
# A host without onnxruntime-gpu still runs all of it but the IOBinding step on the GPU: the device
# engine's own test then checks that asking for "cuda" there is a DeviceError that says what to install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-python3}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c 'import onnxruntime as ort, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))
print("onnxruntime", ort.__version__, ort.get_available_providers())'
"$py" -m pytest -q -p no:cacheprovider -rA tests/unit/daemon/test_device_engine.py tests/unit/daemon/test_state_table.py
for device in cuda cpu; do
    "$py" bench/device_table.py --table-only --device "$device" --streams 10000 100000 1000000
done
