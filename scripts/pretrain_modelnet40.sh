#!/usr/bin/env bash
# Pre-train the tiny I2P-MAE config on ModelNet40 train (9843 shapes; never its test split, which holds the
# ModelNet10 test shapes) with the shipped checkpoint's recipe, on 2 gloo processes (batch 16 each = the
# recipe's 32), on the CPU. Rerunning after a kill resumes exactly from $RUN.
#
#   scripts/pretrain_modelnet40.sh                       # 30 epochs (about 5 min each on 2 cores)
#   EPOCHS=10 RUN=runs/mn40-10 scripts/pretrain_modelnet40.sh
#
# Build the data first (../shared/data/README.md): fetch the public PointNet snapshot, then
#   .venv/bin/python ../shared/data/modelnet40/build.py GITDIR $DATA
# The teacher maps of the training shapes are computed once into $CACHE (keep it outside the tree).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/work/data/modelnet40}
EPOCHS=${EPOCHS:-30}
RUN=${RUN:-runs/mn40-tiny}
CACHE=${CACHE:-/work/runs/teacher_cache_mn40}
NPROC=${NPROC:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1

resume=()
[[ -f "$RUN/train_state.pt" ]] && resume=(--resume)
start=$(date +%s)
.venv/bin/torchrun --nproc_per_node="$NPROC" -m i2pmae.cli pretrain --config configs/pretrain/tiny.yaml \
    --data "$DATA/train.npz" --out "$RUN" "${resume[@]}" "train.epochs=$EPOCHS" \
    "train.batch_size=$(( 32 / NPROC ))" "train.cache_dir=$CACHE" train.log_every=50 train.progress=false
echo "pretrain wall time: $(( $(date +%s) - start )) s (this invocation)"
