"""The bundled few-shot support shapes (``assets/fewshot_support.npz``): how the file is made and read.

Made once from the ModelNet10 **train** split (never the test split)::

    python -m app.support_set /work/shared/data/modelnet10/train.npz assets/fewshot_support.npz

The file is the project's ``.npz`` data-set format with float16 points to stay small: ``points``
(n, 1024, 3) normalised to the unit sphere, ``labels`` int64 (n,), ``classes`` (C,) and ``names``
(n,); a fixed, seeded draw of :data:`SHAPES_PER_CLASS` shapes per class. Shapes of the gallery
(``assets/manifest.json``) are left out, so that the current shape is never its own support example.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from i2pmae.data import PointCloudDataset, open_dataset

from .paths import MANIFEST_PATH, SUPPORT_PATH

SHAPES_PER_CLASS = 30  # 10 shots + 20 queries per class, the paper's largest few-shot setting
DRAW_SEED = 0
STORE_DTYPE = np.float16


def support_set() -> PointCloudDataset:
    """The bundled support shapes (:data:`SUPPORT_PATH`) as a data set; items: points (P, 3), label, index."""
    return _read_support(SUPPORT_PATH)


@functools.cache
def _read_support(path: Path) -> PointCloudDataset:
    return open_dataset(path, num_points=None)


def gallery_names(manifest: str | os.PathLike = MANIFEST_PATH) -> set[str]:
    """File stems of the gallery shapes (e.g. ``chair_0001``)."""
    return {Path(entry["file"]).stem for entry in json.loads(Path(manifest).read_text())}


def build_support_set(source: str | os.PathLike, out: str | os.PathLike, *,
                      per_class: int = SHAPES_PER_CLASS, seed: int = DRAW_SEED) -> Path:
    """Draw ``per_class`` shapes of every class from a TRAIN data set and write the support file."""
    dataset = open_dataset(source, split="train", num_points=None)
    excluded = gallery_names()
    allowed = np.array([name not in excluded for name in dataset.names or []] or [True] * len(dataset))
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([
        np.sort(rng.choice(np.flatnonzero((dataset.labels == c) & allowed), size=per_class, replace=False))
        for c in range(len(dataset.classes))
    ])  # (C * per_class,)
    points = torch.stack([dataset.points_at(int(i)) for i in chosen])  # (n, P, 3), unit sphere
    names = [dataset.names[i] for i in chosen] if dataset.names else [str(i) for i in chosen]
    out = Path(out)
    np.savez_compressed(out, points=points.numpy().astype(STORE_DTYPE), labels=dataset.labels[chosen],
                        classes=np.array(dataset.classes), names=np.array(names))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write the bundled few-shot support shapes")
    parser.add_argument("source", help="a data set of the TRAIN split (e.g. modelnet10/train.npz)")
    parser.add_argument("out", help="the .npz to write")
    parser.add_argument("--per-class", type=int, default=SHAPES_PER_CLASS)
    parser.add_argument("--seed", type=int, default=DRAW_SEED)
    args = parser.parse_args(argv)
    print(build_support_set(args.source, args.out, per_class=args.per_class, seed=args.seed))


if __name__ == "__main__":
    main()
