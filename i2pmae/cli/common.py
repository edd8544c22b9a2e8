"""Pieces every command group shares: the default checkpoint, device choice, the data-set memory limit,
JSON output, feature sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "i2pmae_tiny_modelnet10.safetensors"
PERCENT = 100.0


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: a GPU when visible)")


def add_max_gib(p: argparse.ArgumentParser) -> None:
    """``--max-gib``: the memory limit of ``i2pmae.data.open_dataset`` for the data sets a command opens."""
    from ..data import MAX_GIB

    p.add_argument("--max-gib", type=float, default=MAX_GIB,
                   help="refuse a data set whose arrays take more than this many GiB once read, judged "
                        "from the sizes its files declare before reading (default: %(default)g)")


def resolve_device(name: str | None):
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def load_pretrained(path: str, device):
    """A checkpoint's model (eval mode) and its metadata."""
    from ..checkpoints import load_checkpoint

    model, metadata = load_checkpoint(path, device=device)
    return model.eval(), metadata


def feature_set(
    model, data: str, split: str, num_points: int | None, args: argparse.Namespace, votes: int = 1
):
    """(features (n, C), labels (n,), dataset) of one split of ``data`` (``votes``: see extract_features)."""
    dataset = open_split(model, data, split, num_points, args)
    feats, labels = split_features(model, dataset, split, args, votes)
    return feats, labels, dataset


def open_split(model, data: str, split: str, num_points: int | None, args: argparse.Namespace):
    """One split of ``data`` with ``num_points`` points per shape (default: the model's)."""
    from ..data import open_dataset

    return open_dataset(data, split=split, num_points=num_points or model.cfg.num_points,
                        max_gib=args.max_gib)


def split_features(model, dataset, split: str, args: argparse.Namespace, votes: int = 1):
    """(features (n, C), labels (n,)) of an opened split, with the ``--pool`` / ``--batch-size`` options."""
    from ..evaluate import extract_features

    return extract_features(model, dataset, pool=args.pool, batch_size=args.batch_size,
                            device=resolve_device(args.device), desc=f"{split} features", votes=votes)


def data_record(path: str, split: str, dataset) -> dict:
    return {"path": str(path), "split": split, "layout": dataset.layout, "shapes": len(dataset),
            "classes": len(dataset.classes), "points": dataset.num_points, "sampling": dataset.sampling}


def checkpoint_record(path: str, metadata: dict) -> dict:
    keep = ("kind", "teacher", "data", "epoch", "step", "epochs")
    return {"path": str(path), **{k: metadata[k] for k in keep if k in metadata}}


def add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="pre-trained model (.safetensors)")
    p.add_argument("--num-points", type=int, default=None, help="points per shape (default: the model's)")
    p.add_argument("--pool", default="max", choices=("max", "meanmax"), help="token pooling of the feature")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", default=None, help="also write the result and its protocol to this JSON file")
    add_max_gib(p)
    add_device(p)


def add_votes(p: argparse.ArgumentParser) -> None:
    from ..evaluate import MAX_VOTES

    p.add_argument("--votes", type=_votes, default=1,
                   help="average each shape's feature over this many point orders (other FPS centres), "
                        f"1 to {MAX_VOTES}; 1 (default) is the official protocol")


def _votes(text: str) -> int:
    """``--votes``: refused here, before the model and data are loaded, when out of range."""
    from ..evaluate import check_votes

    try:
        votes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    try:
        return check_votes(votes)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def shape_points(args: argparse.Namespace, num_points: int, seed: int = 0):
    """``args.shape`` as (N, 3) float32 points, read once; what the loader changed goes to stderr
    (through ``tqdm.write``, so an open progress bar stays intact)."""
    import sys

    from tqdm import tqdm

    from ..io import load_points, read_shape

    shape = read_shape(args.shape)
    for note in shape.notes:  # e.g. dropped NaN points, a skipped header row
        tqdm.write(f"i2pmae {args.command}: {Path(args.shape).name}: {note}", file=sys.stderr)
    return load_points(shape, num_points, seed=seed)
