#!/usr/bin/env bash
# Score one checkpoint with the protocols of "Pre-train on ModelNet40": every result as JSON in $OUT.
#
#   scripts/eval_modelnet40.sh CHECKPOINT OUT [STAGE]     # STAGE: val (selection), test, or all (default)
#
# Selection uses validation splits carved from train only (20 %, seed 0): ModelNet10 and ModelNet40 linear
# SVM. Test: ModelNet10 SVM (train -> test), ModelNet40 SVM (train -> test), ModelNet10 5-way 10-shot (the
# project's protocol), and ModelNet40 few-shot in the paper's four settings with support from train and
# queries from test (ModelNetFewShot style: 10 folds each, 20 queries per class where a class has them).
# One thread per command: on 2 shared cores this is the fastest and the most repeatable.
set -euo pipefail
cd "$(dirname "$0")/.."

CKPT=${1:?checkpoint}
OUT=${2:?output folder}
STAGE=${3:-all}
MN10=${MN10:-../shared/data/modelnet10}
MN40=${MN40:-/work/data/modelnet40}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1
I2PMAE=${I2PMAE:-.venv/bin/i2pmae}
mkdir -p "$OUT"

run() {  # name, command...: skipped when its JSON exists (rerun after a kill continues)
    local name=$1; shift
    [[ -s "$OUT/$name.json" ]] && { echo "skip $name (done)"; return; }
    echo "=== $name: $*"
    local start; start=$(date +%s)
    "$@" --json "$OUT/$name.json.part" && mv "$OUT/$name.json.part" "$OUT/$name.json"
    echo "$name: $(( $(date +%s) - start )) s"
}

if [[ "$STAGE" == val || "$STAGE" == all ]]; then
    run mn10_svm_val "$I2PMAE" svm --checkpoint "$CKPT" --train "$MN10/train.npz" --val-fraction 0.2
    run mn40_svm_val "$I2PMAE" svm --checkpoint "$CKPT" --train "$MN40/train.npz" --val-fraction 0.2
fi
if [[ "$STAGE" == test || "$STAGE" == all ]]; then
    run mn10_svm "$I2PMAE" svm --checkpoint "$CKPT" --train "$MN10/train.npz" --test "$MN10/test.npz"
    run mn10_fewshot_5w10s "$I2PMAE" fewshot --checkpoint "$CKPT" --data "$MN10/test.npz" --way 5 --shot 10 \
        --folds 10
    run mn40_svm "$I2PMAE" svm --checkpoint "$CKPT" --train "$MN40/train.npz" --test "$MN40/test.npz"
    for way in 5 10; do
        for shot in 10 20; do
            run "mn40_fewshot_${way}w${shot}s" "$I2PMAE" fewshot --checkpoint "$CKPT" --data "$MN40/test.npz" \
                --support-data "$MN40/train.npz" --way "$way" --shot "$shot" --folds 10 --queries 20
        done
    done
fi
