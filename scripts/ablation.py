"""The ablation the paper's claim rests on, on ModelNet10, with pre-training seeds and statistics.

Every row has the same budget (``configs/pretrain/tiny.yaml``, ``--epochs`` epochs, the same batch and
learning rate) and is pre-trained once per seed (``train.seed``: init, data order, masks, augmentation):

    row                 pre-training          masking            2D target
    random-init         none (init seed)      -                  -
    m2ae-random         Point-M2AE style      random             no
    i2p-random          I2P-MAE               random             yes
    i2p-guided-tau1     I2P-MAE               guided, tau = 1    yes
    i2p-guided-tau0.01  I2P-MAE               guided, tau = 0.01 yes
    i2p-guided-tau0.001 I2P-MAE               guided, tau = 0.001 yes

Each (row, seed) is scored by the linear SVM on the test split (C by CV on train) and 5-way 10-shot few-shot
on test. ``results.json`` and the printed table give per row the mean, the sample std and the 95 % Student-t
interval over seeds, and per guided row the paired difference to ``i2p-random`` seed by seed (same seeds,
so the init and data order cancel). Pre-training runs resume after a kill and finished ones are skipped,
so the script can be rerun at will, also in a later session (keep ``--out`` and ``--cache``):

    .venv/bin/python scripts/ablation.py --epochs 10 --seeds 0 1 2
    .venv/bin/python scripts/ablation.py --epochs 10 --seeds 0 1 2 --nproc 2   # each run on both cores
    .venv/bin/python scripts/ablation.py --rows m2ae-random i2p-random --seeds 0   # part of it
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from i2pmae.config import load_run_config  # noqa: E402
from i2pmae.evaluate import mean_interval, paired_difference  # noqa: E402

CONFIG = REPO / "configs" / "pretrain" / "tiny.yaml"
ROWS = {  # row -> model overrides (None: no pre-training)
    "random-init": None,
    "m2ae-random": ["model.masking=random", "model.target_2d=false"],
    "i2p-random": ["model.masking=random", "model.target_2d=true"],
    "i2p-guided-tau1": ["model.masking=guided", "model.temperature=1", "model.target_2d=true"],
    "i2p-guided-tau0.01": ["model.masking=guided", "model.temperature=0.01", "model.target_2d=true"],
    "i2p-guided-tau0.001": ["model.masking=guided", "model.temperature=0.001", "model.target_2d=true"],
}
BASELINE = "i2p-random"  # the paired differences: guided - random, both with the 2D target
METRICS = ("svm_accuracy", "fewshot_5way_10shot")


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def pretrain_command(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """``i2pmae pretrain``, or with ``--nproc`` > 1 its torchrun launch, and the overrides that go with it
    (each process takes its share of the config's batch)."""
    if args.nproc == 1:
        return [args.i2pmae, "pretrain"], []
    batch = load_run_config(CONFIG)[1].batch_size
    if batch % args.nproc:
        raise SystemExit(f"--nproc {args.nproc} does not divide the config's batch of {batch}")
    launch = [args.torchrun, f"--nproc_per_node={args.nproc}", "-m", "i2pmae.cli", "pretrain"]
    return launch, [f"train.batch_size={batch // args.nproc}"]


def checkpoint_for(args: argparse.Namespace, row: str, seed: int) -> Path:
    """Pre-train (or resume, or skip) one row and seed; the model file it leaves."""
    folder = args.out / row / f"seed{seed}"
    model = folder / "model.safetensors"
    if ROWS[row] is None:
        if not model.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            run([args.python, "-c", "import sys, torch\n"
                 "from i2pmae.checkpoints import save_checkpoint\nfrom i2pmae.config import load_config\n"
                 "from i2pmae.model import I2PMAE\ntorch.manual_seed(int(sys.argv[1]))\n"
                 "save_checkpoint(sys.argv[2], I2PMAE(load_config(sys.argv[3])), metadata={'kind': "
                 "'random-init', 'seed': int(sys.argv[1])})", str(seed), str(model), str(CONFIG)])
        return model
    done = folder / "DONE"
    if not done.is_file():
        resume = ["--resume"] if (folder / "train_state.pt").is_file() else []
        start = time.time()
        launch, split = pretrain_command(args)
        run([*launch, "--config", str(CONFIG), "--data", str(args.data / "train.npz"), "--out", str(folder),
             *resume, f"train.epochs={args.epochs}", f"train.seed={seed}", f"train.cache_dir={args.cache}",
             "train.log_every=25", "train.progress=false", *ROWS[row], *split])
        done.write_text(f"{time.time() - start:.0f}\n")
    return model


def scores(args: argparse.Namespace, model: Path) -> dict[str, float]:
    """Linear SVM on test and 5-way 10-shot few-shot on test of one checkpoint (cached beside it)."""
    out = model.with_name("scores.json")
    if out.is_file() and out.stat().st_mtime >= model.stat().st_mtime:
        return json.loads(out.read_text())
    svm, fewshot = model.with_name("svm.json"), model.with_name("fewshot.json")
    common = ["--checkpoint", str(model)]
    run([args.i2pmae, "svm", *common, "--train", str(args.data / "train.npz"), "--test",
         str(args.data / "test.npz"), "--json", str(svm)])
    run([args.i2pmae, "fewshot", *common, "--data", str(args.data / "test.npz"), "--way", "5", "--shot", "10",
         "--folds", "10", "--json", str(fewshot)])
    result = {"svm_accuracy": json.loads(svm.read_text())["accuracy"],
              "fewshot_5way_10shot": json.loads(fewshot.read_text())["mean"]}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summarise(per_seed: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> dict:
    """Per row and metric: :func:`mean_interval` over seeds; per guided row: the paired difference."""
    summary = {}
    for row, results in per_seed.items():
        summary[row] = {m: mean_interval([results[s][m] for s in seeds]) for m in METRICS}
        if row.startswith("i2p-guided") and BASELINE in per_seed:
            baseline = per_seed[BASELINE]
            summary[row]["minus_random"] = {
                m: paired_difference([results[s][m] for s in seeds], [baseline[s][m] for s in seeds])
                for m in METRICS}
    return summary


def table(summary: dict) -> str:
    """The README table: mean +- std [95 % interval] in percent, and the paired difference."""
    def cell(stat: dict) -> str:
        return (f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f} "
                f"[{100 * stat['low']:.2f}, {100 * stat['high']:.2f}]")

    lines = ["| row | linear SVM (%) | 5-way 10-shot (%) | SVM: guided − random, paired (points) |",
             "|---|---|---|---|"]
    for row, stats in summary.items():
        diff = stats.get("minus_random", {}).get("svm_accuracy")
        lines.append(f"| {row} | {cell(stats['svm_accuracy'])} | {cell(stats['fewshot_5way_10shot'])} | "
                     f"{cell(diff) if diff else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="the pre-training budget of every row")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "modelnet10")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "teacher_cache")
    parser.add_argument("--i2pmae", default=str(REPO / ".venv" / "bin" / "i2pmae"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--nproc", type=int, default=1,
                        help="pre-train each run on this many gloo processes (torchrun), the batch split")
    parser.add_argument("--torchrun", default=str(REPO / ".venv" / "bin" / "torchrun"))
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("give at least 2 seeds: the intervals need them")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    per_seed: dict[str, dict[int, dict[str, float]]] = {row: {} for row in args.rows}
    for seed in args.seeds:  # seed by seed: a run stopped half-way leaves whole paired comparisons
        for row in args.rows:
            per_seed[row][seed] = scores(args, checkpoint_for(args, row, seed))
    summary = summarise(per_seed, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"epochs": args.epochs, "seeds": args.seeds, "config": str(CONFIG.relative_to(REPO)),
              "per_seed": per_seed, "summary": summary}
    (args.out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table(summary))


if __name__ == "__main__":
    main()
