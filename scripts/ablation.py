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
on test. The results are the record ``docs/ablation.json`` (committed; never edited by hand): per row its
settings and per-seed scores (with the commit and command of each), the mean, sample std and 95 % Student-t
interval over seeds, and per guided row the paired difference to ``i2p-random`` seed by seed (same seeds, so
the init and data order cancel) with its interval and sign count. The record is rewritten after every
scored run, so a stopped session keeps what it finished; (row, seed) pairs already in it are not run again
(also in a later session, on a new machine), and unfinished pre-training resumes from ``--out``:

    .venv/bin/python scripts/ablation.py --epochs 10 --seeds 0 1 2
    .venv/bin/python scripts/ablation.py --epochs 10 --seeds 0 1 2 --nproc 2   # each run on both cores
    .venv/bin/python scripts/ablation.py --rows m2ae-random i2p-random --seeds 0   # part of it
    .venv/bin/python scripts/ablation.py --readme   # README's table from the record, nothing run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from i2pmae.checkpoints import atomic_write  # noqa: E402
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
LABELS = {
    "random-init": "random init (same network, no pre-training)",
    "m2ae-random": "Point-M2AE-style (random mask, 3D target only)",
    "i2p-random": "I2P-MAE, random mask, 3D + 2D targets",
    "i2p-guided-tau1": "I2P-MAE, 2D-guided mask, τ = 1",
    "i2p-guided-tau0.01": "I2P-MAE, 2D-guided mask, τ = 0.01",
    "i2p-guided-tau0.001": "I2P-MAE, 2D-guided mask, τ = 0.001",
}
BASELINE = "i2p-random"  # the paired differences: guided - random, both with the 2D target
METRICS = ("svm_accuracy", "fewshot_5way_10shot")
METRIC_NAMES = {"svm_accuracy": "linear SVM on ModelNet10 test (C by 5-fold CV on train)",
                "fewshot_5way_10shot": "5-way 10-shot on ModelNet10 test, mean of 10 folds"}
RECORD = REPO / "docs" / "ablation.json"
README_BEGIN, README_END = "<!-- ablation table: begin -->", "<!-- ablation table: end -->"


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


# ------------------------------------------------------------------------------------------- the record
def load_record(path: Path) -> dict:
    """The record's per-seed results {row: {seed: result}}; empty when there is none yet."""
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {row["name"]: {int(seed): result for seed, result in row["per_seed"].items()} for row in rows}


def build_record(results: dict[str, dict[int, dict]], epochs: int, nproc: int) -> dict:
    """docs/ablation.json: rows with settings and per-seed scores, intervals over the seeds every row has,
    paired guided − random differences with intervals and sign counts."""
    rows = [row for row in ROWS if results.get(row)]
    shared = sorted(set.intersection(*(set(results[row]) for row in rows))) if rows else []
    record = {
        "what": "Seeded ablation of I2P-MAE pre-training on ModelNet10 (scripts/ablation.py); every row has "
                "the same budget and is pre-trained once per seed (init, data order, masks, augmentation).",
        "protocol": {"config": str(CONFIG.relative_to(REPO)), "epochs": epochs, "processes": nproc,
                     "data": "ModelNet10 train (pre-training, SVM fit) and test (scores)",
                     "metrics": METRIC_NAMES, "interval": "95 % Student-t over seeds", "baseline": BASELINE},
        "seeds": shared,
        "rows": [],
        "differences": [],
    }
    for row in rows:
        entry = {"name": row, "label": LABELS[row], "overrides": ROWS[row] or ["no pre-training"],
                 "per_seed": {str(seed): results[row][seed] for seed in sorted(results[row])}}
        if len(shared) >= 2:
            entry["summary"] = {m: mean_interval([results[row][s][m] for s in shared]) for m in METRICS}
        record["rows"].append(entry)
    if len(shared) >= 2 and BASELINE in rows:
        for row in (r for r in rows if r.startswith("i2p-guided")):
            diff = {"name": f"{row} − {BASELINE}", "row": row, "minus": BASELINE}
            for m in METRICS:
                stat = paired_difference([results[row][s][m] for s in shared],
                                         [results[BASELINE][s][m] for s in shared])
                stat["positive"] = sum(v > 0 for v in stat["values"])
                stat["seeds_for_95"] = seeds_needed(stat)
                diff[m] = stat
            record["differences"].append(diff)
    return record


def seeds_needed(stat: dict, level: float = 0.95) -> int | None:
    """Seeds at which the observed mean difference would clear zero at ``level`` if its spread held (the
    smallest n with t_{n-1} * std / sqrt(n) < |mean|); None when the mean is zero or n would pass 1000."""
    from scipy import stats

    mean, std = abs(stat["mean"]), stat["std"]
    if mean == 0:
        return None
    for n in range(2, 1001):
        if stats.t.ppf((1 + level) / 2, n - 1) * std / n**0.5 < mean:
            return n
    return None


def save_record(path: Path, record: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n"))


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def readme_table(record: dict) -> str:
    """The README's ablation tables: the Evidence panel's own (one formatting for the page and the README)."""
    from app.evidence import table_markdown

    return table_markdown(record)


def write_readme(record: dict, readme: Path = REPO / "README.md") -> None:
    """Replace the text between the README's ablation markers with :func:`readme_table`."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_BEGIN} ... {README_END} markers")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_BEGIN}\n{readme_table(record)}\n{README_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="the pre-training budget of every row")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "modelnet10")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "teacher_cache")
    parser.add_argument("--record", type=Path, default=RECORD, help="the results file (read, then rewritten)")
    parser.add_argument("--readme", action="store_true", help="only rewrite README's table from the record")
    parser.add_argument("--i2pmae", default=str(REPO / ".venv" / "bin" / "i2pmae"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--nproc", type=int, default=1,
                        help="pre-train each run on this many gloo processes (torchrun), the batch split")
    parser.add_argument("--torchrun", default=str(REPO / ".venv" / "bin" / "torchrun"))
    args = parser.parse_args()
    if args.readme:
        write_readme(json.loads(args.record.read_text()))
        return
    if len(args.seeds) < 2:
        parser.error("give at least 2 seeds: the intervals need them")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = load_record(args.record)
    command = shlex.join(["scripts/ablation.py", *sys.argv[1:]])
    for seed in args.seeds:  # seed by seed: a run stopped half-way leaves whole paired comparisons
        for row in args.rows:
            if seed in results.get(row, {}):
                continue
            started = time.time()
            result = scores(args, checkpoint_for(args, row, seed))
            results.setdefault(row, {})[seed] = {**result, "commit": git_commit(), "command": command,
                                                 "seconds": round(time.time() - started)}
            save_record(args.record, build_record(results, args.epochs, args.nproc))
    record = build_record(results, args.epochs, args.nproc)
    save_record(args.record, record)
    print(readme_table(record))


if __name__ == "__main__":
    main()
