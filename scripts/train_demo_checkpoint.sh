#!/usr/bin/env bash
# Pre-train the shipped demo checkpoint and measure it: the tiny I2P-MAE config on ModelNet10 train with the
# EfficientNet-Lite0 teacher, on the CPU. Then fit the linear probe `i2pmae classify` and the app use (on
# train only), and score it: linear SVM on the test split, 5-way and 10-way 10-shot few-shot.
#
#   scripts/train_demo_checkpoint.sh                 # everything, from scratch (or resumes a killed run)
#   EPOCHS=10 scripts/train_demo_checkpoint.sh       # a shorter schedule (30 epochs: about 85 min, 10: 25 min)
#   STAGE=eval scripts/train_demo_checkpoint.sh      # only the probe and the measurements
#
# The run directory keeps the training state: rerunning the script after a kill resumes it exactly.
# The teacher maps of the 3991 training shapes are computed once into $CACHE and reused (also by
# scripts/ablation.py). Results: $RUN/{svm,fewshot_5way,fewshot_10way}.json and the model in $CKPT.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data/modelnet10}
EPOCHS=${EPOCHS:-30}  # the shipped checkpoint's schedule
RUN=${RUN:-runs/demo-tiny}
CACHE=${CACHE:-runs/teacher_cache}
CKPT=${CKPT:-checkpoints/i2pmae_tiny_modelnet10.safetensors}
STAGE=${STAGE:-all}
# One intra-op thread: on 2 shared cores it is faster than two threads that wait for each other.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1
I2PMAE=${I2PMAE:-.venv/bin/i2pmae}

if [[ "$STAGE" == all ]]; then
    resume=()
    [[ -f "$RUN/train_state.pt" ]] && resume=(--resume)
    start=$(date +%s)
    "$I2PMAE" pretrain --config configs/pretrain/tiny.yaml --data "$DATA/train.npz" --out "$RUN" "${resume[@]}" \
        "train.epochs=$EPOCHS" "train.cache_dir=$CACHE" train.log_every=10
    echo "pretrain wall time: $(( $(date +%s) - start )) s (this invocation)"
    mkdir -p "$(dirname "$CKPT")"
    cp "$RUN/model.safetensors" "$CKPT"
fi

"$I2PMAE" probe --checkpoint "$CKPT" --train "$DATA/train.npz"
"$I2PMAE" svm --checkpoint "$CKPT" --train "$DATA/train.npz" --test "$DATA/test.npz" --json "$RUN/svm.json"
for way in 5 10; do
    "$I2PMAE" fewshot --checkpoint "$CKPT" --data "$DATA/test.npz" --way "$way" --shot 10 --folds 10 \
        --json "$RUN/fewshot_${way}way.json"
done
"$I2PMAE" checkpoint inspect "$CKPT"
