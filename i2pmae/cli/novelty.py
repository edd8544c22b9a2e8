"""``i2pmae novelty``: fit the novelty score that ``classify`` and the app report, on the train split only."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    PERCENT,
    add_eval_options,
    checkpoint_record,
    data_record,
    feature_set,
    load_pretrained,
    resolve_device,
    write_json,
)


def _add_novelty(sub: argparse._SubParsersAction) -> None:
    from ..novelty import DEFAULT_K, DEFAULT_METHOD, DEFAULT_QUANTILE, DEFAULT_VAL_FRACTION, METHODS

    p = sub.add_parser("novelty", help="fit the novelty score (how unlike the training shapes) beside the "
                                       "checkpoint; threshold from a validation split of train")
    add_eval_options(p)
    p.add_argument("--train", required=True, help="data set whose train split the score is fitted on")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS)
    p.add_argument("--k", type=int, default=DEFAULT_K, help="neighbour rank of the knn score")
    p.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                   help="threshold = this quantile of the validation shapes' scores")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION)
    p.add_argument("--seed", type=int, default=0, help="validation-split seed")
    p.add_argument("--compare", action="store_true",
                   help="first print the leave-classes-out AUROC of every score on train (how the default "
                        "method was chosen)")
    p.add_argument("--out", default=None, help="output file (default: <stem>_novelty.safetensors beside the "
                                               "checkpoint)")
    p.set_defaults(func=cmd_novelty)


def cmd_novelty(args: argparse.Namespace) -> int:
    from ..novelty import (
        COMPARE_FOLDS,
        HELD_OUT_CLASSES,
        compare_methods,
        fit_novelty,
        novelty_path,
        save_novelty,
    )

    model, metadata = load_pretrained(args.checkpoint, resolve_device(args.device))
    features, labels, dataset = feature_set(model, args.train, "train", args.num_points, args)
    payload = {"checkpoint": checkpoint_record(args.checkpoint, metadata),
               "train": data_record(args.train, "train", dataset)}
    if args.compare:
        candidates = [("relative_mahalanobis", 0), ("mahalanobis", 0)] + [("knn", k) for k in (1, 5, 10, 50)]
        table = compare_methods(features, labels, candidates=candidates, seed=args.seed)
        print(f"novelty: leave-{HELD_OUT_CLASSES}-classes-out AUROC on train, {COMPARE_FOLDS} folds")
        for name, row in table.items():
            print(f"  {name:<21s} {PERCENT * row['auroc_mean']:.1f} +- {PERCENT * row['auroc_std']:.1f} %")
        payload["comparison"] = table
    novelty = fit_novelty(features, labels, method=args.method, k=args.k, val_fraction=args.val_fraction,
                          quantile=args.quantile, seed=args.seed)
    novelty.info.update(checkpoint=Path(args.checkpoint).name, pool=args.pool,
                        data=data_record(args.train, "train", dataset))
    out = Path(args.out) if args.out else novelty_path(args.checkpoint)
    save_novelty(novelty, out)
    info = novelty.info
    print(f"novelty: {out}, {args.method} score, threshold {novelty.threshold:.4g} = the {args.quantile:g} "
          f"quantile of {info['validation_shapes']} validation shapes held out of train (fitted on "
          f"{info['fitted_shapes']}); {PERCENT * info['validation_novel_rate']:.1f} % of them called novel")
    write_json(args.json, {**payload, "threshold": novelty.threshold, "info": info})
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    _add_novelty(sub)
