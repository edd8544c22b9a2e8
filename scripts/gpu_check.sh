#!/usr/bin/env bash
# GPU check of issue 13 (one CUDA device, about 5-8 minutes on an H200): the CUDA tests, the throughput
# benchmark on the paper config (today's step vs now, fp32 vs bf16 autocast) and 200 paper-config
# pre-training steps with a CLIP-shaped random teacher, eager (fp32, bf16) and compiled (bf16, inductor),
# printing shapes/s, peak memory and the loss.
#
#   bash scripts/gpu_check.sh            # STEPS=20 BATCH=32 bash scripts/gpu_check.sh for a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STEPS=${STEPS:-200}
BATCH=${BATCH:-64}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "=== CUDA tests"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_geometry.py -k "cuda or torch"

echo "=== benchmark: paper config on CUDA (batch $BATCH)"
timeout 300 "$PY" benchmarks/bench_model.py --cuda-only --cuda-batch-size "$BATCH" --iters 5 --no-cost

echo "=== $STEPS pre-training steps, paper config, CLIP-shaped random teacher"
timeout 300 "$PY" scripts/gpu_pretrain.py --steps "$STEPS" --batch-size "$BATCH" --shapes 256

echo "=== the same, bf16, transformer stages and token embeddings compiled (train.compile=inductor)"
timeout 240 "$PY" scripts/gpu_pretrain.py --steps "$STEPS" --batch-size "$BATCH" --shapes 256 --precision bf16 \
    --compile inductor
