"""``i2pmae pretrain`` and ``i2pmae finetune``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import PERCENT, add_max_gib, data_record, write_json


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML with model: and train: sections")
    p.add_argument("--data", default=None, help="data set (default: the config's data: entry)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=10 model.masking=random lr=5e-4")
    add_max_gib(p)


def _train_setup(args: argparse.Namespace, kind: str):
    import yaml

    from ..config import load_run_config

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
        from ..checkpoints import checkpoint_info

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
    from .. import dist
    from ..train import pretrain

    model_cfg, train_cfg, data, out = _train_setup(args, "pretrain")
    try:
        result = pretrain(model_cfg, train_cfg, data, out, resume=args.resume, max_gib=args.max_gib)
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
    from .. import dist
    from ..checkpoints import load_checkpoint
    from ..data import open_dataset
    from ..train import classifier_accuracy, finetune

    model_cfg, train_cfg, data, out = _train_setup(args, "finetune")
    try:
        result = finetune(model_cfg, train_cfg, data, out, pretrained=args.pretrained, resume=args.resume,
                          max_gib=args.max_gib)
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
        test = open_dataset(args.test, split="test", num_points=model_cfg.num_points, max_gib=args.max_gib)
        acc = classifier_accuracy(model, test, votes=train_cfg.votes, seed=train_cfg.seed)
        protocol = {"data": data_record(args.test, "test", test), "votes": train_cfg.votes,
                    "seed": train_cfg.seed, "checkpoint": str(result.checkpoint),
                    "selection": "best validation accuracy", "val_fraction": train_cfg.val_fraction}
        print(f"test accuracy {PERCENT * acc:.2f} % ({len(test)} shapes, {train_cfg.votes} vote(s), "
              f"points {model_cfg.num_points})")
        write_json(args.json, {"accuracy": acc, "protocol": protocol})
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    _add_pretrain(sub)
    _add_finetune(sub)
