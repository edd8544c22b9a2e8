"""``i2pmae <command>``: the command-line entry point.

Every command reports failures as one readable line on stderr and a non-zero exit code;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USER_ERROR = 2
DEFAULT_TEMPERATURES = (1.0, 0.003)


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write depth views, saliency, random vs guided masks as PNG")
    p.add_argument("shape", help="a shape file (ply obj off stl pcd xyz txt npy npz)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-points", type=int, default=2048)
    p.add_argument("--teacher", default="efficientnet-lite0")
    p.add_argument("--teacher-weights", default=None, help="local weights file for the teacher")
    p.add_argument("--mask-ratio", type=float, default=0.8)
    p.add_argument(
        "--temperature", type=float, nargs="+", default=list(DEFAULT_TEMPERATURES),
        help="tau of the guided mask, one panel each (1 = paper; the teacher's saliency sums to 1 over "
        "14x14 patches, so a small tau such as 0.003 shows the guidance clearly)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint", default=None,
        help="pre-trained model for the reconstructions (default: the shipped one, when present)",
    )
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoints import load_checkpoint
    from .explore import analyse_shape, write_reconstructions, write_report
    from .io import load_points
    from .teachers import load_teacher

    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else None)
    name = Path(args.shape).name
    with tqdm(total=4, desc="explore", unit="step", file=sys.stderr) as steps:
        points = load_points(args.shape, args.num_points, seed=args.seed)
        teacher = load_teacher(args.teacher, weights_path=args.teacher_weights)
        steps.update()
        analysis = analyse_shape(points, teacher)
        steps.update()
        written = write_report(
            analysis, args.out, name=name, teacher_name=teacher.name,
            mask_ratio=args.mask_ratio, temperatures=args.temperature, seed=args.seed,
        )
        steps.update()
        if checkpoint is None:
            print("i2pmae explore: no checkpoint, reconstructions skipped", file=sys.stderr)
        else:
            model, _ = load_checkpoint(checkpoint)
            written += write_reconstructions(
                model, load_points(args.shape, model.cfg.num_points, seed=args.seed), teacher, args.out,
                name=name, mask_ratio=args.mask_ratio, temperature=args.temperature[-1], seed=args.seed,
            )
        steps.update()
    for path in written:
        print(path)
    return 0


# ------------------------------------------------------------------------------------ shared helpers
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "i2pmae_tiny_modelnet10.safetensors"
PROBE_SUFFIX = "_probe.safetensors"  # the linear probe shipped beside a pre-trained checkpoint
TOP_K = 5
PERCENT = 100.0
EXIT_CHECK_FAILED = 1


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: a GPU when visible)")


def _device(name: str | None):
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def _load_pretrained(path: str, device):
    """An I2PMAE checkpoint (eval mode) and its metadata; a clear error for other model classes."""
    from .checkpoints import load_checkpoint

    model, metadata = load_checkpoint(path, device=device)
    return model.eval(), metadata


def _feature_set(model, data: str, split: str, num_points: int | None, args: argparse.Namespace):
    """(features (n, C), labels (n,), dataset) of one split of ``data``."""
    from .data import open_dataset
    from .evaluate import extract_features

    dataset = open_dataset(data, split=split, num_points=num_points or model.cfg.num_points)
    feats, labels = extract_features(model, dataset, pool=args.pool, batch_size=args.batch_size,
                                     device=_device(args.device), desc=f"{split} features")
    return feats, labels, dataset


def _data_record(path: str, split: str, dataset) -> dict:
    return {"path": str(path), "split": split, "layout": dataset.layout, "shapes": len(dataset),
            "classes": len(dataset.classes), "points": dataset.num_points, "sampling": dataset.sampling}


def _checkpoint_record(path: str, metadata: dict) -> dict:
    keep = ("kind", "teacher", "data", "epoch", "step", "epochs")
    return {"path": str(path), **{k: metadata[k] for k in keep if k in metadata}}


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="pre-trained model (.safetensors)")
    p.add_argument("--num-points", type=int, default=None, help="points per shape (default: the model's)")
    p.add_argument("--pool", default="max", choices=("max", "meanmax"), help="token pooling of the feature")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", default=None, help="also write the result and its protocol to this JSON file")
    _add_device(p)


# ------------------------------------------------------------------------------------ pretrain / finetune
def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML with model: and train: sections")
    p.add_argument("--data", default=None, help="data set (default: the config's data: entry)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=10 model.masking=random lr=5e-4")


def _train_setup(args: argparse.Namespace, kind: str):
    import yaml

    from .config import load_run_config

    with open(args.config, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{args.config}: expected a YAML mapping with model: and train: sections")
    data = args.data or document.get("data")
    document.pop("data", None)
    if not data:
        raise ValueError(f"no data set: pass --data or put a data: entry in {args.config}")
    pretrained = getattr(args, "pretrained", None)
    if pretrained:  # the encoder must match the checkpoint: its config is the base, model: edits it
        from .checkpoints import checkpoint_info

        base = checkpoint_info(pretrained)["config"].to_dict()
        document["model"] = {**base, **(document.get("model") or {})}
    model_cfg, train_cfg = load_run_config(document, args.overrides)
    out = args.out or str(Path("runs") / f"{kind}-{Path(args.config).stem}")
    return model_cfg, train_cfg, data, out


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train I2P-MAE (single process or under torchrun)")
    _add_train_options(p)
    p.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from . import dist
    from .train import pretrain

    model_cfg, train_cfg, data, out = _train_setup(args, "pretrain")
    try:
        result = pretrain(model_cfg, train_cfg, data, out, resume=args.resume)
        is_main = dist.is_main_process()
    finally:
        dist.cleanup()
    if is_main:
        loss = result.metrics.get("loss", float("nan"))
        print(f"pretrain: {result.step} steps ({result.epoch} epochs) on {data}, last loss {loss:.4f}; "
              f"checkpoint {result.checkpoint}")
    return 0


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a classifier, best epoch chosen on a validation split")
    _add_train_options(p)
    p.add_argument("--pretrained", default=None, help="pre-trained checkpoint whose encoder to start from")
    p.add_argument("--test", default=None, help="at the end, score the best-on-validation model on this")
    p.add_argument("--json", default=None, help="write the test result and its protocol to this JSON file")
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from . import dist
    from .checkpoints import load_checkpoint
    from .data import open_dataset
    from .train import classifier_accuracy, finetune

    model_cfg, train_cfg, data, out = _train_setup(args, "finetune")
    try:
        result = finetune(model_cfg, train_cfg, data, out, pretrained=args.pretrained, resume=args.resume)
        is_main = dist.is_main_process()
    finally:
        dist.cleanup()
    if not is_main:
        return 0
    model, meta = load_checkpoint(result.checkpoint)
    line = (f"finetune: best epoch {meta['best_epoch']} of {result.epoch}, validation accuracy "
            f"{PERCENT * meta['best_val_acc']:.2f} % ({meta['val_shapes']} shapes held out of train, "
            f"seed {train_cfg.seed}); checkpoint {result.checkpoint}")
    print(line)
    if args.test:
        test = open_dataset(args.test, split="test", num_points=model_cfg.num_points)
        acc = classifier_accuracy(model, test, votes=train_cfg.votes, seed=train_cfg.seed)
        protocol = {"data": _data_record(args.test, "test", test), "votes": train_cfg.votes,
                    "seed": train_cfg.seed, "checkpoint": str(result.checkpoint),
                    "selection": "best validation accuracy", "val_fraction": train_cfg.val_fraction}
        print(f"test accuracy {PERCENT * acc:.2f} % ({len(test)} shapes, {train_cfg.votes} vote(s), "
              f"points {model_cfg.num_points})")
        _write_json(args.json, {"accuracy": acc, "protocol": protocol})
    return 0


# ------------------------------------------------------------------------------------ svm / fewshot
def _add_svm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("svm", help="linear SVM on frozen features (C chosen by CV on train only)")
    _add_eval_options(p)
    p.add_argument("--train", required=True, help="data set whose train split fits the SVM")
    p.add_argument("--test", default=None, help="data set whose test split is scored")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="score on a stratified split held out of train instead of a test set (for selection)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="CV seeds; several give mean +- std")
    p.set_defaults(func=cmd_svm)


def cmd_svm(args: argparse.Namespace) -> int:
    from .evaluate import CV_FOLDS, SVM_C_GRID, linear_svm_eval, summarize

    if (args.test is None) == (args.val_fraction is None):
        raise ValueError("pass exactly one of --test DATA (report) and --val-fraction F (model selection)")
    model, metadata = _load_pretrained(args.checkpoint, _device(args.device))
    x_train, y_train, train_set = _feature_set(model, args.train, "train", args.num_points, args)
    if args.test is not None:
        x_test, y_test, test_set = _feature_set(model, args.test, "test", args.num_points, args)
        scored, scored_record = f"test {args.test}", _data_record(args.test, "test", test_set)
    else:
        from .data import split_train_val

        train_idx, val_idx = split_train_val(y_train, args.val_fraction, seed=0)
        x_test, y_test = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
        scored = f"validation: {len(val_idx)} shapes held out of train (fraction {args.val_fraction}, seed 0)"
        scored_record = {**_data_record(args.train, "train", train_set),
                         "validation_fraction": args.val_fraction, "validation_shapes": len(val_idx)}
    runs = [linear_svm_eval(x_train, y_train, x_test, y_test, seed=seed) for seed in args.seeds]
    stats = summarize([r["accuracy"] for r in runs])
    class_stats = summarize([r["class_accuracy"] for r in runs])
    protocol = {
        "checkpoint": _checkpoint_record(args.checkpoint, metadata),
        "train": _data_record(args.train, "train", train_set),
        "scored": scored_record,
        "feature": f"{args.pool}-pool of the top-level tokens",
        "classifier": "sklearn LinearSVC",
        "c_grid": list(SVM_C_GRID),
        "selection": f"stratified {CV_FOLDS}-fold CV on the fitted shapes (C and standardisation)",
        "seeds": args.seeds,
        "voting": "none",
    }
    for seed, run in zip(args.seeds, runs, strict=True):
        print(f"svm seed {seed}: accuracy {PERCENT * run['accuracy']:.2f} %, mean class accuracy "
              f"{PERCENT * run['class_accuracy']:.2f} % (C={run['C']:g}, standardise "
              f"{run['standardize']}, CV accuracy {PERCENT * run['cv_accuracy']:.2f} % over "
              f"{run['cv_folds']} folds of train)")
    print(f"svm: accuracy {PERCENT * stats['mean']:.2f} +- {PERCENT * stats['std']:.2f} % (mean class "
          f"accuracy {PERCENT * class_stats['mean']:.2f} %) over {len(runs)} "
          f"seed(s) | {args.checkpoint} | fitted on train {args.train} ({len(y_train)} shapes), scored on "
          f"{scored} ({len(y_test)} shapes), {train_set.num_points} points, {args.pool}-pool, no voting")
    payload = {"accuracy": stats["mean"], "std": stats["std"], "class_accuracy": class_stats["mean"],
               "class_accuracy_std": class_stats["std"], "runs": runs, "protocol": protocol}
    _write_json(args.json, payload)
    return 0


def _add_fewshot(sub: argparse._SubParsersAction) -> None:
    from .evaluate import FEW_SHOT_FOLDS, FEW_SHOT_QUERIES

    p = sub.add_parser("fewshot", help="N-way K-shot linear SVM on frozen features, mean +- std over folds")
    _add_eval_options(p)
    p.add_argument("--data", required=True, help="data set the episodes are drawn from")
    p.add_argument("--split", default="test", choices=("train", "test"), help="split of a folder data set")
    p.add_argument("--way", type=int, required=True)
    p.add_argument("--shot", type=int, required=True)
    p.add_argument("--folds", type=int, default=FEW_SHOT_FOLDS)
    p.add_argument("--queries", type=int, default=FEW_SHOT_QUERIES, help="query shapes per class")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fewshot)


def cmd_fewshot(args: argparse.Namespace) -> int:
    from .evaluate import few_shot_eval

    model, metadata = _load_pretrained(args.checkpoint, _device(args.device))
    feats, labels, dataset = _feature_set(model, args.data, args.split, args.num_points, args)
    result = few_shot_eval(feats, labels, way=args.way, shot=args.shot, folds=args.folds,
                           queries=args.queries, seed=args.seed)
    protocol = {"checkpoint": _checkpoint_record(args.checkpoint, metadata),
                "data": _data_record(args.data, args.split, dataset), "feature": f"{args.pool}-pool",
                "classifier": f"standardised sklearn LinearSVC, C={result['C']:g}, fitted per episode",
                "episodes": f"{args.folds} folds, {args.way}-way {args.shot}-shot, {args.queries} queries "
                            "per class, numpy default_rng([seed, fold])",
                "seed": args.seed}
    print(f"fewshot: {args.way}-way {args.shot}-shot accuracy {PERCENT * result['mean']:.2f} +- "
          f"{PERCENT * result['std']:.2f} % over {args.folds} folds ({args.queries} queries per class, seed "
          f"{args.seed}) | {args.checkpoint} | {args.data} [{args.split}] ({len(dataset)} shapes, "
          f"{dataset.num_points} points)")
    _write_json(args.json, {**result, "protocol": protocol})
    return 0


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="fit the linear probe `classify` uses (C chosen by CV on train only)")
    _add_eval_options(p)
    p.add_argument("--train", required=True, help="data set whose train split fits the probe")
    p.add_argument("--out", default=None, help=f"probe file (default: <checkpoint>{PROBE_SUFFIX})")
    p.add_argument("--seed", type=int, default=0, help="CV-split seed")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from .evaluate import fit_linear_probe, save_probe

    model, metadata = _load_pretrained(args.checkpoint, _device(args.device))
    feats, labels, dataset = _feature_set(model, args.train, "train", args.num_points, args)
    probe = fit_linear_probe(feats, labels, dataset.classes, seed=args.seed)
    probe.info.update(pool=args.pool, checkpoint=Path(args.checkpoint).name,
                      data=_data_record(args.train, "train", dataset))
    out = Path(args.out) if args.out else probe_beside(args.checkpoint)
    save_probe(probe, out)
    info = probe.info
    print(f"probe: {out}, {len(probe.classes)} classes, C={info['C']:g} chosen by {info['cv_folds']}-fold CV "
          f"on train (CV accuracy {PERCENT * info['cv_accuracy']:.2f} %)")
    return 0


# ------------------------------------------------------------------------------------ classify / encode
def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="class probabilities of one shape file")
    p.add_argument("shape", help="a shape file (ply obj off stl pcd xyz txt npy npz)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="a fine-tuned classifier, or a pre-trained model with a linear probe")
    p.add_argument("--probe", default=None, help=f"linear probe (default: <checkpoint>{PROBE_SUFFIX})")
    p.add_argument("--top-k", type=int, default=TOP_K)
    p.add_argument("--num-points", type=int, default=None)
    p.add_argument("--json", default=None)
    _add_device(p)
    p.set_defaults(func=cmd_classify)


def probe_beside(checkpoint: str | Path) -> Path:
    """Where the linear probe of a pre-trained checkpoint is shipped: ``<stem>_probe.safetensors``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + PROBE_SUFFIX)


def cmd_classify(args: argparse.Namespace) -> int:
    import torch

    from .checkpoints import load_checkpoint
    from .evaluate import load_probe, top_k
    from .io import load_points

    device = _device(args.device)
    model, metadata = load_checkpoint(args.checkpoint, device=device)
    model.eval()
    points = load_points(args.shape, args.num_points or model.cfg.num_points)
    batch = torch.from_numpy(points)[None].to(device)  # (1, N, 3)
    with torch.no_grad():
        if type(model).__name__ == "PointClassifier":
            probs, classes = torch.softmax(model(batch), -1)[0], metadata["classes"]
            how = "fine-tuned classifier"
        else:
            probe_path = Path(args.probe) if args.probe else probe_beside(args.checkpoint)
            probe = load_probe(probe_path)
            probs = probe.predict_proba(model.extract_features(batch, pool=probe.info.get("pool", "max")))[0]
            classes, how = probe.classes, f"linear probe {probe_path}"
    ranked = top_k(probs.cpu(), classes, args.top_k)
    print(f"{args.shape} ({how}):")
    for name, prob in ranked:
        print(f"  {name:<20s} {PERCENT * prob:6.2f} %")
    _write_json(args.json, {"shape": args.shape, "checkpoint": args.checkpoint, "top_k": ranked})
    return 0


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="frozen feature vector of one shape file, saved as .npy")
    p.add_argument("shape")
    p.add_argument("--out", required=True, help="output .npy file: (C,) float32")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--pool", default="max", choices=("max", "meanmax"))
    p.add_argument("--num-points", type=int, default=None)
    _add_device(p)
    p.set_defaults(func=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .io import load_points

    device = _device(args.device)
    model, _ = _load_pretrained(args.checkpoint, device)
    points = load_points(args.shape, args.num_points or model.cfg.num_points)
    with torch.no_grad():
        feature = model.extract_features(torch.from_numpy(points)[None].to(device), pool=args.pool)[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feature.cpu().numpy().astype(np.float32))
    print(f"{out}: ({feature.numel()},) float32, {args.pool}-pool of the top-level tokens")
    return 0


# ------------------------------------------------------------------------------------ checkpoint / data
def _add_checkpoint(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="inspect or convert checkpoints")
    actions = p.add_subparsers(dest="action", required=True)
    inspect = actions.add_parser("inspect", help="config, teacher, classes, parameter count, key summary")
    inspect.add_argument("path")
    inspect.set_defaults(func=cmd_checkpoint_inspect)
    convert = actions.add_parser("convert", help="official I2P-MAE / Point-M2AE .pth -> our safetensors")
    convert.add_argument("src", help="official .pth")
    convert.add_argument("dst", help="output .safetensors")
    convert.add_argument("--config", required=True, help="YAML whose model: section matches the checkpoint")
    convert.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    convert.set_defaults(func=cmd_checkpoint_convert)


def _key_summary(keys_and_shapes: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """One line per top-level module: tensors and elements."""
    import math

    groups: dict[str, list[int]] = {}
    for key, shape in keys_and_shapes:
        entry = groups.setdefault(key.split(".")[0], [0, 0])
        entry[0] += 1
        entry[1] += math.prod(shape)
    return [f"  {name:<22s} {n:4d} tensors {elems:>12,d} values" for name, (n, elems) in groups.items()]


def cmd_checkpoint_inspect(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from .checkpoints import checkpoint_info
    from .evaluate import PROBE_FORMAT, load_probe

    path = Path(args.path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
        keys = [(k, tuple(handle.get_slice(k).get_shape())) for k in handle.keys()]
    if header.get("format") == PROBE_FORMAT:
        probe = load_probe(path)
        print(f"{path}: linear probe, {len(probe.classes)} classes, {probe.weight.shape[1]} features")
        print(f"  classes: {', '.join(probe.classes)}")
        print(f"  fit: {json.dumps(probe.info)}")
        return 0
    info = checkpoint_info(path)
    meta, cfg = info["metadata"], info["config"]
    print(f"{path}: {info['model_class']}, {info['num_parameters']:,} parameters in {info['num_tensors']} "
          f"tensors ({path.stat().st_size / 2**20:.1f} MiB)")
    print(f"  teacher: {meta.get('teacher', cfg.teacher)} ({cfg.teacher_dim} feature channels)")
    classes = meta.get("classes")
    if classes:
        print(f"  classes ({len(classes)}): {', '.join(classes)}")
    for key in ("kind", "data", "epoch", "step", "epochs", "val_acc", "best_val_acc", "converted_from"):
        if key in meta:
            print(f"  {key}: {meta[key]}")
    print("  config: " + json.dumps(cfg.to_dict()))
    print("  keys:")
    print("\n".join(_key_summary(keys)))
    return 0


def cmd_checkpoint_convert(args: argparse.Namespace) -> int:
    import yaml

    from .checkpoints import convert_official_checkpoint
    from .config import load_run_config

    with open(args.config, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    document.pop("data", None)
    model_cfg, _ = load_run_config(document, args.overrides)
    out = convert_official_checkpoint(args.src, args.dst, model_cfg)
    print(f"{out}: converted from {args.src} (every key mapped; the CLIP teacher dropped)")
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data-set tools")
    actions = p.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a data set; print download steps for missing files")
    check.add_argument("path")
    check.set_defaults(func=cmd_data_check)


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data import check_dataset

    report = check_dataset(args.path)
    print(report)
    return 0 if report.ok else EXIT_CHECK_FAILED


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_explore, _add_pretrain, _add_finetune, _add_svm, _add_fewshot, _add_probe, _add_classify,
    _add_encode, _add_checkpoint, _add_data,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2pmae", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides written after options that follow other positionals
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("i2pmae: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one readable line for users; --debug for developers
        if args.debug:
            raise
        print(f"i2pmae {args.command}: error: {_describe(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _describe(err: BaseException) -> str:
    """First line of the message; the exception type too when it is not a user-input error."""
    lines = str(err).strip().splitlines()
    message = lines[0] if lines else type(err).__name__
    return message if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {message}"

if __name__ == "__main__":
    sys.exit(main())
