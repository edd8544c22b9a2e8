#!/usr/bin/env bash
# Pre-train the shipped checkpoint: the tiny I2P-MAE config on ModelNet40 train (9843 shapes; never its test
# split, which holds the ModelNet10 test shapes) with the EfficientNet-Lite0 teacher, on 2 gloo processes
# (batch 16 each = the recipe's 32), on the CPU. Then copy it to $CKPT and fit, on ModelNet10 train only, the
# linear probe and the novelty model that `i2pmae classify` and the app read beside it.
#
#   scripts/pretrain_modelnet40.sh                        # 30 epochs (about 2.5 min each on 2 cores)
#   EPOCHS=10 RUN=runs/mn40-10 CKPT=/tmp/x.safetensors scripts/pretrain_modelnet40.sh
#   STAGE=fit scripts/pretrain_modelnet40.sh              # only the probe and the novelty model of $CKPT
#
# Build the data first (../shared/data/README.md): fetch the public PointNet snapshot, then
#   .venv/bin/python ../shared/data/modelnet40/build.py GITDIR $DATA
# The teacher maps of the training shapes are computed once into $CACHE (keep it outside the tree). Rerunning
# after a kill resumes exactly from $RUN. Scores: scripts/eval_modelnet40.sh $CKPT OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/modelnet40}
MN10=${MN10:-../shared/data/modelnet10}
EPOCHS=${EPOCHS:-30}
RUN=${RUN:-runs/mn40-tiny}
CACHE=${CACHE:-/work/runs/teacher_cache_mn40}
CKPT=${CKPT:-checkpoints/i2pmae_tiny_modelnet40.safetensors}
NPROC=${NPROC:-2}
STAGE=${STAGE:-all}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1
I2PMAE=${I2PMAE:-.venv/bin/i2pmae}

if [[ "$STAGE" == all ]]; then
    resume=()
    [[ -f "$RUN/train_state.pt" ]] && resume=(--resume)
    start=$(date +%s)
    .venv/bin/torchrun --nproc_per_node="$NPROC" -m i2pmae.cli pretrain --config configs/pretrain/tiny.yaml \
        --data "$DATA/train.npz" --out "$RUN" "${resume[@]}" "train.epochs=$EPOCHS" \
        "train.batch_size=$(( 32 / NPROC ))" "train.cache_dir=$CACHE" train.log_every=50 train.progress=false
    echo "pretrain wall time: $(( $(date +%s) - start )) s (this invocation)"
    mkdir -p "$(dirname "$CKPT")"
    cp "$RUN/model.safetensors" "$CKPT"
fi

# The app classifies into ModelNet10's classes, so its probe and novelty model are fitted on ModelNet10 train.
"$I2PMAE" probe --checkpoint "$CKPT" --train "$MN10/train.npz"
"$I2PMAE" novelty --checkpoint "$CKPT" --train "$MN10/train.npz" --compare
"$I2PMAE" checkpoint inspect "$CKPT"
