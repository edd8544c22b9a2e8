"""``i2pmae svm``, ``fewshot``, ``probe``, ``classify`` and ``encode``: frozen features of a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .common import (
    DEFAULT_CHECKPOINT,
    PERCENT,
    add_device,
    add_eval_options,
    add_votes,
    checkpoint_record,
    data_record,
    feature_set,
    load_pretrained,
    open_split,
    resolve_device,
    shape_points,
    split_features,
    write_json,
)

TOP_K = 5

def _add_svm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("svm", help="linear SVM on frozen features (C chosen by CV on train only)")
    add_eval_options(p)
    p.add_argument("--train", required=True, help="data set whose train split fits the SVM")
    p.add_argument("--test", default=None, help="data set whose test split is scored")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="score on a stratified split held out of train instead of a test set (for selection)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="CV seeds; several give mean +- std")
    add_votes(p)
    p.set_defaults(func=cmd_svm)


def cmd_svm(args: argparse.Namespace) -> int:
    from ..evaluate import CV_FOLDS, SVM_C_GRID, linear_svm_eval, summarize

    if (args.test is None) == (args.val_fraction is None):
        raise ValueError("pass exactly one of --test DATA (report) and --val-fraction F (model selection)")
    model, metadata = load_pretrained(args.checkpoint, resolve_device(args.device))
    x_train, y_train, train_set = feature_set(model, args.train, "train", args.num_points, args, args.votes)
    if args.test is not None:
        x_test, y_test, test_set = feature_set(model, args.test, "test", args.num_points, args, args.votes)
        scored, scored_record = f"test {args.test}", data_record(args.test, "test", test_set)
    else:
        from ..data import split_train_val

        train_idx, val_idx = split_train_val(y_train, args.val_fraction, seed=0)
        x_test, y_test = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
        scored = f"validation: {len(val_idx)} shapes held out of train (fraction {args.val_fraction}, seed 0)"
        scored_record = {**data_record(args.train, "train", train_set),
                         "validation_fraction": args.val_fraction, "validation_shapes": len(val_idx)}
    runs = [linear_svm_eval(x_train, y_train, x_test, y_test, seed=seed) for seed in args.seeds]
    stats = summarize([r["accuracy"] for r in runs])
    class_stats = summarize([r["class_accuracy"] for r in runs])
    protocol = {
        "checkpoint": checkpoint_record(args.checkpoint, metadata),
        "train": data_record(args.train, "train", train_set),
        "scored": scored_record,
        "feature": f"{args.pool}-pool of the top-level tokens",
        "classifier": "sklearn LinearSVC",
        "c_grid": list(SVM_C_GRID),
        "selection": f"stratified {CV_FOLDS}-fold CV on the fitted shapes (C and standardisation)",
        "seeds": args.seeds,
        "voting": _voting(args.votes),
    }
    for seed, run in zip(args.seeds, runs, strict=True):
        print(f"svm seed {seed}: accuracy {PERCENT * run['accuracy']:.2f} %, mean class accuracy "
              f"{PERCENT * run['class_accuracy']:.2f} % (C={run['C']:g}, standardise "
              f"{run['standardize']}, CV accuracy {PERCENT * run['cv_accuracy']:.2f} % over "
              f"{run['cv_folds']} folds of train)")
    print(f"svm: accuracy {PERCENT * stats['mean']:.2f} +- {PERCENT * stats['std']:.2f} % (mean class "
          f"accuracy {PERCENT * class_stats['mean']:.2f} %) over {len(runs)} "
          f"seed(s) | {args.checkpoint} | fitted on train {args.train} ({len(y_train)} shapes), scored on "
          f"{scored} ({len(y_test)} shapes), {train_set.num_points} points, {args.pool}-pool, "
          f"{_voting(args.votes)}")
    payload = {"accuracy": stats["mean"], "std": stats["std"], "class_accuracy": class_stats["mean"],
               "class_accuracy_std": class_stats["std"], "runs": runs, "protocol": protocol}
    write_json(args.json, payload)
    return 0


def _voting(votes: int) -> str:
    return "no voting" if votes == 1 else f"features averaged over {votes} point orders (seed 0)"


def _add_fewshot(sub: argparse._SubParsersAction) -> None:
    from ..evaluate import FEW_SHOT_FOLDS, FEW_SHOT_QUERIES

    p = sub.add_parser("fewshot", help="N-way K-shot linear SVM on frozen features, mean +- std over folds")
    add_eval_options(p)
    p.add_argument("--data", required=True,
                   help="data set the queries (and, without --support-*, the support set) are drawn from")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="split of a folder data set (of the queries, with --support-*)")
    p.add_argument("--support-data", default=None,
                   help="draw the support set from this data set instead (e.g. train.npz, with --data "
                        "test.npz: the ModelNet40 few-shot protocol); default: from --data")
    p.add_argument("--support-split", default=None, choices=("train", "test"),
                   help="draw the support set from this split (of --support-data, else of the --data "
                        "folder); default: train when --support-data is given")
    p.add_argument("--way", type=int, required=True)
    p.add_argument("--shot", type=int, required=True)
    p.add_argument("--folds", type=int, default=FEW_SHOT_FOLDS)
    p.add_argument("--queries", type=int, default=FEW_SHOT_QUERIES,
                   help="query shapes per class; classes with fewer are excluded, with a warning")
    p.add_argument("--seed", type=int, default=0)
    add_votes(p)
    p.set_defaults(func=cmd_fewshot)


def cmd_fewshot(args: argparse.Namespace) -> int:
    from ..evaluate import few_shot_eval

    model, metadata = load_pretrained(args.checkpoint, resolve_device(args.device))
    query_set = open_split(model, args.data, args.split, args.num_points, args)
    source = _support_source(args)
    support = {}
    if source is not None:  # both sets are opened and checked before any feature is extracted
        support_set = open_split(model, *source, args.num_points, args)
        _check_support_set(support_set, query_set)
    feats, labels = split_features(model, query_set, args.split, args, args.votes)
    if source is not None:  # features extracted once per split
        x, y = split_features(model, support_set, source[1], args, args.votes)
        support = {"support_features": x, "support_labels": y}
    result = few_shot_eval(feats, labels, way=args.way, shot=args.shot, folds=args.folds,
                           queries=args.queries, seed=args.seed, **support)
    query_record = data_record(args.data, args.split, query_set)
    support_record = query_record if source is None else data_record(*source, support_set)
    protocol = {"checkpoint": checkpoint_record(args.checkpoint, metadata),
                **_episode_protocol(args, result, query_set.classes, support_record, query_record),
                "feature": f"{args.pool}-pool", "voting": _voting(args.votes),
                "classifier": f"standardised sklearn LinearSVC, C={result['C']:g}, fitted per episode",
                "seed": args.seed}
    _warn_excluded(protocol)
    print(f"fewshot: {args.way}-way {args.shot}-shot accuracy {PERCENT * result['mean']:.2f} +- "
          f"{PERCENT * result['std']:.2f} % over {args.folds} folds ({args.queries} queries per class, seed "
          f"{args.seed}, {_eligible_count(protocol)} classes eligible) | {args.checkpoint} | "
          f"{_draws(protocol, shapes=True)}, {query_set.num_points} points, {_voting(args.votes)}")
    write_json(args.json, {**result, "protocol": protocol})
    return 0


def _support_source(args: argparse.Namespace) -> tuple[str, str] | None:
    """(data, split) of a separate support set; None when support and queries come from one split."""
    if args.support_data is None and args.support_split is None:
        return None
    return args.support_data or args.data, args.support_split or "train"


def _check_support_set(support_set, query_set) -> None:
    """Refuse a support set whose labels mean other classes, or that is the query set itself."""
    if support_set.classes != query_set.classes:
        raise ValueError(f"the support set ({support_set.source}) and the queries ({query_set.source}) "
                         "name different classes; both must use the same class list")
    if (support_set.source == query_set.source and np.array_equal(support_set.labels, query_set.labels)
            and support_set.names == query_set.names):
        raise ValueError(f"the support set and the queries are the same shapes of {query_set.source} (a "
                         "single file, or class folders without train/test sub-folders, is read whole "
                         "whatever the split): pass the support set's own data with --support-data")


def _episode_protocol(args: argparse.Namespace, result: dict, classes: list[str], support: dict,
                      query: dict) -> dict:
    """Where episodes draw from and which classes can take part (``data`` is the queries' split)."""
    pooled = result["pooled"]
    if pooled:
        rule = f"classes with >= {args.shot + args.queries} shapes in {_where(query)}"
    else:
        rule = (f"classes with >= {args.shot} support shapes in {_where(support)} and >= {args.queries} "
                f"query shapes in {_where(query)}")
    protocol = {"data": query, "support": support, "pooled": pooled, "queries_per_class": args.queries,
                "eligibility": rule, "eligible_classes": [classes[c] for c in result["eligible"]],
                "excluded_classes": [{"class": classes[e["label"]], **e} for e in result["excluded"]]}
    protocol["episodes"] = (f"{args.folds} folds, {args.way}-way {args.shot}-shot, {args.queries} queries "
                            f"per class, {_draws(protocol)}, numpy default_rng([seed, fold])")
    return protocol


def _warn_excluded(protocol: dict) -> None:
    """One stderr line naming the classes left out for lack of shapes: never drop them silently."""
    excluded = protocol["excluded_classes"]
    if not excluded:
        return
    pooled = protocol["pooled"]
    listed = ", ".join(f"{e['class']} ({e['query_shapes']} shapes)" if pooled else
                       f"{e['class']} ({e['support_shapes']} support, {e['query_shapes']} query shapes)"
                       for e in excluded)
    print(f"i2pmae fewshot: warning: {len(excluded)} of {_class_total(protocol)} classes excluded for lack "
          f"of shapes (eligible: {protocol['eligibility']}): {listed}", file=sys.stderr)


def _draws(protocol: dict, *, shapes: bool = False) -> str:
    """'support from A [train], queries from B [test]', or 'support and queries from B [test]'."""
    def where(record: dict) -> str:
        return f"{_where(record)} ({record['shapes']} shapes)" if shapes else _where(record)

    if protocol["pooled"]:
        return f"support and queries from {where(protocol['data'])}"
    return f"support from {where(protocol['support'])}, queries from {where(protocol['data'])}"


def _where(record: dict) -> str:
    return f"{record['path']} [{record['split']}]"


def _class_total(protocol: dict) -> int:
    return len(protocol["eligible_classes"]) + len(protocol["excluded_classes"])


def _eligible_count(protocol: dict) -> str:
    return f"{len(protocol['eligible_classes'])} of {_class_total(protocol)}"


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="fit the linear probe `classify` uses (C chosen by CV on train only)")
    add_eval_options(p)
    p.add_argument("--train", required=True, help="data set whose train split fits the probe")
    p.add_argument("--out", default=None,
                   help="probe file (default: <stem>_probe.safetensors beside the checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="CV-split seed")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from ..evaluate import fit_linear_probe, probe_path, save_probe

    model, metadata = load_pretrained(args.checkpoint, resolve_device(args.device))
    feats, labels, dataset = feature_set(model, args.train, "train", args.num_points, args)
    probe = fit_linear_probe(feats, labels, dataset.classes, seed=args.seed)
    probe.info.update(pool=args.pool, checkpoint=Path(args.checkpoint).name,
                      data=data_record(args.train, "train", dataset))
    out = Path(args.out) if args.out else probe_path(args.checkpoint)
    save_probe(probe, out)
    info = probe.info
    print(f"probe: {out}, {len(probe.classes)} classes, C={info['C']:g} chosen by {info['cv_folds']}-fold CV "
          f"on train (CV accuracy {PERCENT * info['cv_accuracy']:.2f} %)")
    return 0


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="class probabilities of one shape file")
    p.add_argument("shape", help="a shape file (ply obj off stl glb pcd xyz txt npy npz, or one compressed)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="a fine-tuned classifier, or a pre-trained model with a linear probe")
    p.add_argument("--probe", default=None,
                   help="linear probe (default: <stem>_probe.safetensors beside the checkpoint)")
    p.add_argument("--novelty", default=None,
                   help="novelty model (default: <stem>_novelty.safetensors beside the checkpoint, made by "
                        "`i2pmae novelty`)")
    p.add_argument("--top-k", type=int, default=TOP_K)
    p.add_argument("--num-points", type=int, default=None)
    p.add_argument("--json", default=None)
    add_device(p)
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoints import load_checkpoint
    from ..evaluate import load_probe, probe_path, top_k
    from ..novelty import load_novelty, novelty_path

    device = resolve_device(args.device)
    model, metadata = load_checkpoint(args.checkpoint, device=device)
    model.eval()
    points = shape_points(args, args.num_points or model.cfg.num_points)
    batch = torch.from_numpy(points)[None].to(device)  # (1, N, 3)
    novelty = None
    with torch.no_grad():
        if type(model).__name__ == "PointClassifier":
            probs, classes = torch.softmax(model(batch), -1)[0], metadata["classes"]
            how = "fine-tuned classifier"
        else:
            probe_file = Path(args.probe) if args.probe else probe_path(args.checkpoint)
            probe = load_probe(probe_file)
            features = model.extract_features(batch, pool=probe.info.get("pool", "max"))  # (1, C)
            probs = probe.predict_proba(features)[0]
            classes, how = probe.classes, f"linear probe {probe_file}"
            novelty_file = Path(args.novelty) if args.novelty else novelty_path(args.checkpoint)
            if args.novelty or novelty_file.is_file():
                novelty = load_novelty(novelty_file).assess(features.cpu())[0]
    if not bool(torch.isfinite(probs).all()):
        raise ValueError(f"{args.shape}: the {how} gave NaN or infinite probabilities, so no class is "
                         "reported; its weights or this shape's features are broken")
    ranked = top_k(probs.cpu(), classes, args.top_k)
    print(f"{args.shape} ({how}):")
    for name, prob in ranked:
        print(f"  {name:<20s} {PERCENT * prob:6.2f} %")
    if novelty is not None:
        verdict = ("known: looks like the training shapes" if novelty["known"]
                   else f"novel: not one of the {len(classes)} classes this classifier knows")
        print(f"novelty: score {novelty['score']:.4g}, threshold {novelty['threshold']:.4g} -> {verdict}")
    write_json(args.json, {"shape": args.shape, "checkpoint": args.checkpoint, "top_k": ranked,
                           "novelty": novelty})
    return 0


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="frozen feature vector of one shape file, saved as .npy")
    p.add_argument("shape")
    p.add_argument("--out", required=True, help="output .npy file: (C,) float32")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--pool", default="max", choices=("max", "meanmax"))
    p.add_argument("--num-points", type=int, default=None)
    add_device(p)
    p.set_defaults(func=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    device = resolve_device(args.device)
    model, _ = load_pretrained(args.checkpoint, device)
    points = shape_points(args, args.num_points or model.cfg.num_points)
    with torch.no_grad():
        feature = model.extract_features(torch.from_numpy(points)[None].to(device), pool=args.pool)[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feature.cpu().numpy().astype(np.float32))
    print(f"{out}: ({feature.numel()},) float32, {args.pool}-pool of the top-level tokens")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    _add_svm(sub)
    _add_fewshot(sub)
    _add_probe(sub)
    _add_classify(sub)
    _add_encode(sub)
