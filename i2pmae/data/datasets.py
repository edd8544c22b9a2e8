"""Labelled point-cloud data sets: checks, sub-sampling, the ``.npz`` writer, the train/val split.

Items are ``{'points': (num_points, 3) float32 in the unit sphere, 'label': int, 'index': int}``.
Sub-sampling when a file holds more points than ``num_points`` (``sampling=``):

- ``"first"`` (default): the first ``num_points`` points. Deterministic and free. For files of uniform
  surface samples stored in random order this is an unbiased uniform subset: the ModelNet10 npz
  (checked: consecutive points are as far apart as random pairs) and ModelNet40 h5 / resampled, where
  PointNet, DGCNN and PointNet++ themselves take the first n points. ScanObjectNN is used with all
  its 2,048 points. For ShapeNet-55 (8,192 points) the stored order was not verified here: prefer
  ``"fps"`` or ``"random"`` there. Exact FPS costs milliseconds per shape (over a minute for all of
  ModelNet40 at 2,048 -> 1,024 points on one CPU core), which is why it is not the default.
- ``"fps"``: exact farthest point sampling (:func:`i2pmae.geometry.farthest_point_sample`), more even
  coverage. Precomputed once in the constructor for array layouts; per item for file-per-shape layouts.
- ``"random"``: a fresh random subset at every access, from torch's global generator (which a
  ``DataLoader`` seeds per worker and per epoch).

A file with fewer points than ``num_points`` raises :class:`DatasetError` (no silent resampling with
duplicates, which would bias FPS and kNN). ``num_points=None`` keeps every point of the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..geometry import farthest_point_sample, gather, normalize_unit_sphere

SAMPLING_MODES = ("first", "fps", "random")
DEFAULT_NUM_POINTS = 1024
XYZ = 3  # coordinates per point
MISSING_EXAMPLES = 3  # missing paths named in an error message
NUMBER_KINDS = "fiu"  # numpy dtype kinds read as coordinates


class DatasetError(ValueError):
    """A data set is missing, incomplete or malformed; the message says what and where."""


# --------------------------------------------------------------------------- data set classes


class PointCloudDataset(Dataset):
    """Labelled point clouds; item ``i`` is ``{'points': (num_points, 3), 'label': int, 'index': i}``.

    Attributes: ``classes`` (list[str], label i is ``classes[i]``), ``labels`` (N,) int64,
    ``names`` (list[str] | None), ``layout``, ``source`` (the path read), ``up_axis`` ('y', 'z' or None
    when unknown), ``variant`` (ScanObjectNN variant or None), ``num_points``, ``sampling``, ``transform``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes: Sequence[str],
        *,
        num_points: int | None,
        sampling: str,
        transform: Callable[[Tensor], Tensor] | None,
        names: Sequence[str] | None,
        layout: str,
        source: str,
        up_axis: str | None = None,
        variant: str | None = None,
    ) -> None:
        _check_options(num_points, sampling)
        self.source = source
        self.classes = np.asarray(classes).astype(str).tolist()  # bytes (b'chair') -> 'chair'
        self.labels = _check_labels(labels, len(self.classes), source)
        if names is not None and len(names) != len(self.labels):
            raise DatasetError(f"{source}: {len(names)} names for {len(self.labels)} shapes")
        self.names = None if names is None else np.asarray(names).astype(str).tolist()
        self.num_points, self.sampling, self.transform = num_points, sampling, transform
        self.layout, self.up_axis, self.variant = layout, up_axis, variant

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} shapes")
        index = int(index) % len(self)
        points = self.points_at(index)  # (num_points, 3)
        if self.transform is not None:
            points = self.transform(points)
        return {"points": points, "label": int(self.labels[index]), "index": index}

    def points_at(self, index: int) -> Tensor:
        """Normalised, sub-sampled points of shape ``index`` before ``transform``: (num_points, 3)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layout={self.layout!r}, source={self.source!r}, shapes={len(self)}, "
            f"classes={len(self.classes)}, num_points={self.num_points}, sampling={self.sampling!r})"
        )


class ArrayPointCloudDataset(PointCloudDataset):
    """Shapes held in memory as one (N, P, 3) array; sub-sampling and normalisation are done once here.

    Args:
        points: (N, P, 3) float coordinates, any scale.
        labels: (N,) integer labels into ``classes``.
        classes: class names.
        other keyword arguments: see :class:`PointCloudDataset`.
    """

    def __init__(
        self,
        points: np.ndarray | Tensor,
        labels: np.ndarray,
        classes: Sequence[str],
        *,
        num_points: int | None = DEFAULT_NUM_POINTS,
        sampling: str = "first",
        transform: Callable[[Tensor], Tensor] | None = None,
        names: Sequence[str] | None = None,
        layout: str = "arrays",
        source: str = "<arrays>",
        up_axis: str | None = None,
        variant: str | None = None,
    ) -> None:
        super().__init__(
            labels, classes, num_points=num_points, sampling=sampling, transform=transform, names=names,
            layout=layout, source=source, up_axis=up_axis, variant=variant,
        )  # fmt: skip
        raw = _check_points_array(points, source)  # (N, P, 3)
        if len(raw) != len(self.labels):
            raise DatasetError(f"{source}: {len(raw)} point clouds but {len(self.labels)} labels")
        _check_enough_points(raw.shape[1], num_points, source)
        self._per_item = sampling == "random" and num_points is not None and raw.shape[1] > num_points
        self._points = raw if self._per_item else _normalise(_subsample(raw, num_points, sampling), source)
        self.points_per_shape = raw.shape[1]

    def points_at(self, index: int) -> Tensor:
        if self._per_item:
            return _normalise(_subsample(self._points[index][None], self.num_points, "random"), self.source)[
                0
            ]
        return self._points[index].clone()  # (num_points, 3); a copy, so callers may modify it


class FilePointCloudDataset(PointCloudDataset):
    """One file per shape, read at access time with ``reader(path) -> (P, 3)`` float points.

    All files are checked to exist in the constructor; their content is validated when read.
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: np.ndarray,
        classes: Sequence[str],
        *,
        reader: Callable[[Path], np.ndarray],
        num_points: int | None = DEFAULT_NUM_POINTS,
        sampling: str = "first",
        transform: Callable[[Tensor], Tensor] | None = None,
        names: Sequence[str] | None = None,
        layout: str = "files",
        source: str = "<files>",
        up_axis: str | None = None,
    ) -> None:
        super().__init__(
            labels, classes, num_points=num_points, sampling=sampling, transform=transform, names=names,
            layout=layout, source=source, up_axis=up_axis,
        )  # fmt: skip
        if len(files) != len(self.labels):
            raise DatasetError(f"{source}: {len(files)} files but {len(self.labels)} labels")
        self.files = [Path(f) for f in files]
        _raise_if_missing(self.files, f"{source} lists")
        self.reader = reader

    def points_at(self, index: int) -> Tensor:
        path = self.files[index]
        raw = _check_points_array(self.reader(path)[None], str(path))  # (1, P, 3)
        _check_enough_points(raw.shape[1], self.num_points, str(path))
        return _normalise(_subsample(raw, self.num_points, self.sampling), str(path))[0]


# --------------------------------------------------------------------------- validation helpers


def _check_options(num_points: int | None, sampling: str) -> None:
    if sampling not in SAMPLING_MODES:
        raise DatasetError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if num_points is not None and (
        isinstance(num_points, bool) or int(num_points) != num_points or num_points < 1
    ):
        raise DatasetError(f"num_points must be a positive integer or None, got {num_points!r}")


def _check_labels(labels: np.ndarray | Sequence[int], num_classes: int, source: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:  # ModelNet40 h5 stores (N, 1)
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(f"{source}: labels must have shape (N,), got {labels.shape}")
    if len(labels) == 0:
        raise DatasetError(f"{source}: the data set holds no shapes")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{source}: labels must be integers, got dtype {labels.dtype}")
    if num_classes == 0:
        raise DatasetError(f"{source}: no class names")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise DatasetError(
            f"{source}: label {labels[bad][0]} (shape {int(np.flatnonzero(bad)[0])}) is outside "
            f"[0, {num_classes}) for {num_classes} class names"
        )
    return labels.astype(np.int64)


def _check_points_array(points: np.ndarray | Tensor, source: str) -> Tensor:
    """(N, P, 3) numbers -> float32 tensor, after checking the shape and that all values are finite."""
    if not isinstance(points, Tensor):
        points = np.asarray(points)
        if points.dtype.kind not in NUMBER_KINDS:  # strings, objects: torch would raise a TypeError
            raise DatasetError(f"{source}: points must be numbers, got dtype {points.dtype}")
    points = torch.as_tensor(points)
    if points.ndim != 3 or points.shape[-1] != XYZ:
        raise DatasetError(f"{source}: points must have shape (N, P, 3), got {tuple(points.shape)}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise DatasetError(f"{source}: no points (shape {tuple(points.shape)})")
    if not (points.is_floating_point() or points.dtype in (torch.int32, torch.int64)):
        raise DatasetError(f"{source}: points must be numbers, got dtype {points.dtype}")
    points = points.float()
    finite = torch.isfinite(points).all(dim=-1).all(dim=-1)  # (N,)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten()
        raise DatasetError(
            f"{source}: {len(bad)} shape(s) contain NaN or infinite coordinates (first: shape {int(bad[0])})"
        )
    return points


def _check_enough_points(available: int, num_points: int | None, source: str) -> None:
    if num_points is not None and available < num_points:
        raise DatasetError(
            f"{source}: shapes have {available} points but num_points={num_points} were requested; "
            f"ask for at most {available}"
        )


def _normalise(points: Tensor, source: str) -> Tensor:
    """(B, P, 3) -> (B, P, 3) in the unit sphere; a shape whose points all coincide is a DatasetError."""
    flat = (points == points[:, :1]).all(dim=-1).all(dim=-1)  # (B,) all points equal to the first
    if flat.any():
        raise DatasetError(
            f"{source}: {int(flat.sum())} shape(s) have all their points at one place, so they cannot be "
            f"scaled to the unit sphere (first: shape {int(torch.nonzero(flat)[0])})"
        )
    return normalize_unit_sphere(points)


def _subsample(points: Tensor, num_points: int | None, sampling: str) -> Tensor:
    """(B, P, 3) -> (B, num_points, 3) by ``sampling``; unchanged when P == num_points or None."""
    if num_points is None or points.shape[1] == num_points:
        return points
    if sampling == "first":
        return points[:, :num_points]
    if sampling == "fps":
        idx = farthest_point_sample(points, num_points)  # (B, num_points)
    else:
        idx = torch.rand(points.shape[:2]).argsort(dim=1)[:, :num_points]  # (B, num_points)
    return gather(points, idx)  # (B, num_points, 3)


def _raise_if_missing(files: Sequence[Path], what: str) -> None:
    """One listing per folder instead of one stat per file: fast for ShapeNet's 52k files."""
    listings: dict[Path, set[str]] = {}
    missing = []
    for f in files:
        if f.parent not in listings:
            listings[f.parent] = set(os.listdir(f.parent)) if f.parent.is_dir() else set()
        if f.name not in listings[f.parent]:
            missing.append(f)
    if missing:
        examples = ", ".join(str(m) for m in missing[:MISSING_EXAMPLES])
        raise DatasetError(f"{what} {len(files)} files and {len(missing)} are missing, e.g. {examples}")


# --------------------------------------------------------------------------- the project's .npz format


def save_npz(
    path: str | os.PathLike,
    points: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    names: Sequence[str] | None = None,
) -> None:
    """Write the project's ``.npz`` format: points (N, P, 3) float32, labels (N,) int64, classes, names."""
    points = _check_points_array(points, str(path)).numpy()
    labels = _check_labels(labels, len(classes), str(path))
    if len(points) != len(labels):
        raise DatasetError(f"{path}: {len(points)} point clouds but {len(labels)} labels")
    arrays = {"points": points, "labels": labels, "classes": np.array([str(c) for c in classes])}
    if names is not None:
        arrays["names"] = np.array([str(n) for n in names])
    np.savez_compressed(path, **arrays)


# --------------------------------------------------------------------------- train / validation split


def split_train_val(
    dataset_or_labels: PointCloudDataset | np.ndarray | Sequence[int] | Tensor,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic split of a TRAIN set into (train_idx, val_idx), sorted int64 arrays.

    Each class gives round(val_fraction * n_c) of its shapes to validation (at most n_c - 1, so every
    class stays in training). Validation is always carved from the train split; never select on test.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = getattr(dataset_or_labels, "labels", dataset_or_labels)
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty (N,) array, got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        num_val = min(math.floor(val_fraction * len(members) + 0.5), len(members) - 1)
        val.append(rng.permutation(members)[:num_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx).astype(np.int64)
    return train_idx, val_idx
