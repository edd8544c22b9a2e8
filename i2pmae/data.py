"""Point-cloud data sets and the augmentations of the paper.

One entry point, :func:`open_dataset`, detects the layout of a path and returns a
:class:`PointCloudDataset` whose items are ``{'points': (num_points, 3) float32 in the unit sphere,
'label': int, 'index': int}``. Supported layouts (the names are the ``layout`` attribute):

- ``npz``: one ``.npz`` file with ``points`` (N, P, 3), ``labels`` (N,) and ``classes`` or a
  ``classes.txt`` beside it; ``npz-folder``: a folder holding ``train.npz`` / ``test.npz``.
- ``h5`` / ``scanobjectnn``: one HDF5 file with ``data`` / ``label`` (a ScanObjectNN file or one part
  of ModelNet40 h5); ``scanobjectnn-folder``: a folder with one ``training_*.h5`` / ``test_*.h5`` pair.
- ``modelnet40-h5``: ``modelnet40_ply_hdf5_2048`` (``train_files.txt``, ``test_files.txt``,
  ``shape_names.txt``); ``modelnet40-resampled``: ``modelnet40_normal_resampled`` text files.
- ``shapenet55``: Point-BERT's ``ShapeNet55-34`` (``shapenet_pc/*.npy`` + ``ShapeNet-55/{train,test}.txt``).
- ``class-folders``: ``DIR/<class>/<shape files>`` or ``DIR/<class>/{train,test}/<shape files>``.

``split`` picks the file or list inside a folder layout; a path to a single file is read as it is.

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
Class folders are read with :func:`i2pmae.io.load_points`, which already returns ``num_points``
points (FPS for clouds, area-weighted surface samples for meshes); there ``"random"`` only redraws the
mesh surface samples.
"""

from __future__ import annotations

import functools
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .geometry import farthest_point_sample, gather, normalize_unit_sphere

SPLITS = ("train", "test")
SAMPLING_MODES = ("first", "fps", "random")
DEFAULT_NUM_POINTS = 1024
XYZ = 3  # coordinates per point
AXES = ("x", "y", "z")
SEED_RANGE = 2**31  # seeds drawn for io.load_points in "random" mode
CLASSES_FILE = "classes.txt"
MISSING_EXAMPLES = 3  # missing paths named in an error message

SCANOBJECTNN_CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip
# file-name suffix after "objectdataset" -> variant name of the ScanObjectNN paper
SCANOBJECTNN_SUFFIXES = {
    "": "OBJ_BG",
    "_augmented25_norot": "PB_T25",
    "_augmented25rot": "PB_T25_R",
    "_augmentedrot": "PB_T50_R",
    "_augmentedrot_scale75": "PB_T50_RS",
}
SCANOBJECTNN_FILE = re.compile(r"^(training|test)_objectdataset(.*)\.h5$")
SCANOBJECTNN_NOBG_DIR = "main_split_nobg"
SCANOBJECTNN_SPLIT_PREFIX = {"train": "training", "test": "test"}

# ShapeNetCore v2 synset id -> category name (the 55 classes of ShapeNet-55)
SHAPENET55_SYNSETS = {
    "02691156": "airplane", "02747177": "trash bin", "02773838": "bag", "02801938": "basket",
    "02808440": "bathtub", "02818832": "bed", "02828884": "bench", "02843684": "birdhouse",
    "02871439": "bookshelf", "02876657": "bottle", "02880940": "bowl", "02924116": "bus",
    "02933112": "cabinet", "02942699": "camera", "02946921": "can", "02954340": "cap",
    "02958343": "car", "02992529": "cellphone", "03001627": "chair", "03046257": "clock",
    "03085013": "keyboard", "03207941": "dishwasher", "03211117": "display", "03261776": "earphone",
    "03325088": "faucet", "03337140": "file cabinet", "03467517": "guitar", "03513137": "helmet",
    "03593526": "jar", "03624134": "knife", "03636649": "lamp", "03642806": "laptop",
    "03691459": "loudspeaker", "03710193": "mailbox", "03759954": "microphone", "03761084": "microwave",
    "03790512": "motorbike", "03797390": "mug", "03928116": "piano", "03938244": "pillow",
    "03948459": "pistol", "03991062": "pot", "04004475": "printer", "04074963": "remote",
    "04090263": "rifle", "04099429": "rocket", "04225987": "skateboard", "04256520": "sofa",
    "04330267": "stove", "04379243": "table", "04401088": "telephone", "04460130": "tower",
    "04468005": "train", "04530566": "watercraft", "04554684": "washer",
}  # fmt: skip
SHAPENET_PC_DIR = "shapenet_pc"
SHAPENET55_LIST_DIR = "ShapeNet-55"

MODELNET40_H5_FILES = {"train": "train_files.txt", "test": "test_files.txt"}
MODELNET40_H5_NAMES = "shape_names.txt"
RESAMPLED_NAMES = "modelnet40_shape_names.txt"
RESAMPLED_LISTS = {"train": "modelnet40_train.txt", "test": "modelnet40_test.txt"}
RESAMPLED_COLUMNS = 6  # x, y, z, nx, ny, nz
UP_Y = "y"  # ModelNet40 (h5 and resampled), ScanObjectNN and ShapeNet are y-up; ModelNet10 npz is z-up


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
    points = torch.as_tensor(np.asarray(points) if not isinstance(points, Tensor) else points)
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


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"missing {what}: expected {path}")
    return path


def _read_lines(path: Path, what: str) -> list[str]:
    lines = [line.strip() for line in _require(path, what).read_text().splitlines()]
    return [line for line in lines if line]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DatasetError(
            f"split must be one of {SPLITS}, got {split!r} (validation comes from "
            "split_train_val on the train split)"
        )
    return split


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class _Options:
    num_points: int | None
    sampling: str
    transform: Callable[[Tensor], Tensor] | None

    def as_kwargs(self) -> dict:
        return {"num_points": self.num_points, "sampling": self.sampling, "transform": self.transform}


def _open_npz(path: Path, split: str, opts: _Options) -> PointCloudDataset:
    try:
        points, labels, names, classes = _read_npz_arrays(path)
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        # Empty, truncated or renamed files and pickled object arrays (never loaded) end up here.
        raise DatasetError(f"{path}: not a readable .npz archive of plain arrays ({exc})") from exc
    if classes is None:
        classes = _read_lines(path.parent / CLASSES_FILE, f"class names for {path.name} (no 'classes' array)")
    return ArrayPointCloudDataset(
        points, labels, classes, names=names, layout="npz", source=str(path), **opts.as_kwargs()
    )


def _read_npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list | None]:
    """(points, labels, names or None, classes or None) of one of our .npz files; pickles are refused."""
    with np.load(path, allow_pickle=False) as archive:
        missing = {"points", "labels"} - set(archive.files)
        if missing:
            raise DatasetError(
                f"{path}: missing array(s) {sorted(missing)}; found {sorted(archive.files)} (expected "
                "points (N, P, 3), labels (N,), and classes or a classes.txt beside it)"
            )
        names = archive["names"] if "names" in archive.files else None
        classes = archive["classes"].tolist() if "classes" in archive.files else None
        return archive["points"], archive["labels"], names, classes


def _open_npz_folder(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    dataset = _open_npz(_require(root / f"{split}.npz", f"{split} split"), split, opts)
    dataset.layout = "npz-folder"
    return dataset


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        missing = {"data", "label"} - set(f.keys())
        if missing:
            raise DatasetError(
                f"{path}: missing dataset(s) {sorted(missing)}; found {sorted(f.keys())} "
                "(expected 'data' (N, P, 3) and 'label' (N,))"
            )
        return f["data"][...], f["label"][...]


def scanobjectnn_variant(path: str | os.PathLike) -> str | None:
    """The ScanObjectNN variant a file name stands for (OBJ_BG, OBJ_ONLY, PB_T50_RS, ...) or None."""
    path = Path(path)
    match = SCANOBJECTNN_FILE.match(path.name)
    if match is None or match.group(2) not in SCANOBJECTNN_SUFFIXES:
        return None
    variant = SCANOBJECTNN_SUFFIXES[match.group(2)]
    if path.parent.name == SCANOBJECTNN_NOBG_DIR:
        return "OBJ_ONLY" if variant == "OBJ_BG" else f"{variant} (no background)"
    return variant


def _open_h5_file(path: Path, split: str, opts: _Options) -> PointCloudDataset:
    points, labels = _read_h5(path)
    variant = scanobjectnn_variant(path)
    layout, up_axis = "h5", None
    if variant is not None:
        classes, layout, up_axis = list(SCANOBJECTNN_CLASSES), "scanobjectnn", UP_Y
    elif (path.parent / MODELNET40_H5_NAMES).exists():  # one part of ModelNet40 h5
        classes, up_axis = _read_lines(path.parent / MODELNET40_H5_NAMES, "class names"), UP_Y
    elif (path.parent / CLASSES_FILE).exists():
        classes = _read_lines(path.parent / CLASSES_FILE, "class names")
    else:  # unknown source: the labels are still usable, the names are the label numbers
        classes = [str(i) for i in range(int(np.max(labels)) + 1)]
    return ArrayPointCloudDataset(
        points,
        labels,
        classes,
        layout=layout,
        source=str(path),
        up_axis=up_axis,
        variant=variant,
        **opts.as_kwargs(),
    )


def _scanobjectnn_pairs(root: Path) -> dict[str, dict[str, Path]]:
    """Variant -> {'train': path, 'test': path} for the ScanObjectNN files in root and main_split*/."""
    pairs: dict[str, dict[str, Path]] = {}
    for path in sorted(root.glob("*.h5")) + sorted(root.glob("main_split*/*.h5")):
        match, variant = SCANOBJECTNN_FILE.match(path.name), scanobjectnn_variant(path)
        if match is not None and variant is not None:
            split = "train" if match.group(1) == "training" else "test"
            pairs.setdefault(variant, {})[split] = path
    return pairs


def _open_scanobjectnn_folder(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    pairs = _scanobjectnn_pairs(root)
    if len(pairs) != 1:
        listing = "; ".join(f"{v}: {', '.join(str(p) for p in files.values())}" for v, files in pairs.items())
        raise DatasetError(
            f"{root} holds {len(pairs)} ScanObjectNN variants; pass the file of the one you want ({listing})"
        )
    ((variant, files),) = pairs.items()
    prefix = SCANOBJECTNN_SPLIT_PREFIX[split]
    if split not in files:
        raise DatasetError(f"missing ScanObjectNN {variant} {split} file: expected {root}/{prefix}_*.h5")
    dataset = _open_h5_file(files[split], split, opts)
    dataset.layout = "scanobjectnn-folder"
    return dataset


def _open_modelnet40_h5(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    classes = _read_lines(root / MODELNET40_H5_NAMES, "ModelNet40 class names")
    listed = _read_lines(root / MODELNET40_H5_FILES[split], f"ModelNet40 h5 {split} file list")
    files = [root / Path(line).name for line in listed]  # lines are 'data/modelnet40_ply_hdf5_2048/x.h5'
    _raise_if_missing(files, str(root / MODELNET40_H5_FILES[split]))
    parts = [_read_h5(f) for f in files]
    if not parts:
        raise DatasetError(f"{root / MODELNET40_H5_FILES[split]} lists no files")
    points = np.concatenate([p for p, _ in parts])  # (N, 2048, 3)
    labels = np.concatenate([lab.reshape(len(lab), -1)[:, 0] for _, lab in parts])  # (N,)
    return ArrayPointCloudDataset(
        points, labels, classes, layout="modelnet40-h5", source=str(root), up_axis=UP_Y, **opts.as_kwargs()
    )


def _read_resampled_txt(path: Path) -> np.ndarray:
    """One modelnet40_normal_resampled file: (P, 6) comma-separated x,y,z,nx,ny,nz -> (P, 3)."""
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as err:
        raise DatasetError(f"{path}: not comma-separated numbers ({err})") from err
    if rows.shape[1] != RESAMPLED_COLUMNS:
        raise DatasetError(
            f"{path}: expected {RESAMPLED_COLUMNS} columns x,y,z,nx,ny,nz, got {rows.shape[1]}"
        )
    return rows[:, :XYZ]


def _open_modelnet40_resampled(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    classes = _read_lines(root / RESAMPLED_NAMES, "ModelNet40 class names")
    names = _read_lines(root / RESAMPLED_LISTS[split], f"ModelNet40 {split} list")
    index = {c: i for i, c in enumerate(classes)}
    shape_classes = [name.rsplit("_", 1)[0] for name in names]  # 'night_stand_0001' -> 'night_stand'
    unknown = sorted(set(shape_classes) - set(index))
    if unknown:
        raise DatasetError(f"{root / RESAMPLED_LISTS[split]}: classes {unknown} are not in {RESAMPLED_NAMES}")
    files = [root / c / f"{n}.txt" for c, n in zip(shape_classes, names, strict=True)]
    labels = np.array([index[c] for c in shape_classes], dtype=np.int64)
    return FilePointCloudDataset(
        files,
        labels,
        classes,
        reader=_read_resampled_txt,
        names=names,
        layout="modelnet40-resampled",
        source=str(root),
        up_axis=UP_Y,
        **opts.as_kwargs(),
    )


def _shapenet_dirs(root: Path) -> tuple[Path, Path]:
    """(folder of train.txt/test.txt, folder of the .npy files) for the accepted ShapeNet-55 roots."""
    list_dir = root / SHAPENET55_LIST_DIR if (root / SHAPENET55_LIST_DIR).is_dir() else root
    pc_dir = root / SHAPENET_PC_DIR if (root / SHAPENET_PC_DIR).is_dir() else root.parent / SHAPENET_PC_DIR
    return list_dir, pc_dir


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _open_shapenet55(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    list_dir, pc_dir = _shapenet_dirs(root)
    _require(pc_dir, "ShapeNet-55 point folder")
    lists = {s: list_dir / f"{s}.txt" for s in SPLITS}
    lines = _read_lines(lists[split], f"ShapeNet-55 {split} list")
    # labels index the synsets of both lists, so train and test agree
    all_lines = [line for s in SPLITS if lists[s].exists() for line in _read_lines(lists[s], s)]
    synsets = sorted({line.split("-", 1)[0] for line in all_lines})
    index = {s: i for i, s in enumerate(synsets)}
    labels = np.array([index[line.split("-", 1)[0]] for line in lines], dtype=np.int64)
    classes = [SHAPENET55_SYNSETS.get(s, s) for s in synsets]
    names = [Path(line).stem for line in lines]
    return FilePointCloudDataset(
        [pc_dir / line for line in lines],
        labels,
        classes,
        reader=_read_npy,
        names=names,
        layout="shapenet55",
        source=str(root),
        up_axis=UP_Y,
        **opts.as_kwargs(),
    )


def _read_shape_file(path: Path, *, num_points: int | None, random_seed: bool) -> np.ndarray:
    from .io import ShapeError, load_points

    seed = int(torch.randint(SEED_RANGE, ())) if random_seed else 0
    try:
        if num_points is None:
            return load_points(path, seed=seed)
        return load_points(path, num_points, seed=seed)
    except ShapeError as err:
        raise DatasetError(f"{path}: {err}") from err


def _shape_files(folder: Path) -> list[Path]:
    from .io import SUPPORTED_EXTENSIONS

    if not folder.is_dir():
        return []
    extensions = {e.lower() for e in SUPPORTED_EXTENSIONS}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_split_dirs(root: Path) -> bool:
    return any((d / s).is_dir() for d in _class_dirs(root) for s in SPLITS)


def _open_class_folders(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    with_splits = _has_split_dirs(root)
    folders = {d.name: (d / split if with_splits else d) for d in _class_dirs(root)}
    files_per_class = {c: _shape_files(f) for c, f in folders.items()}
    classes = sorted(c for c in folders if with_splits or files_per_class[c])
    files = [f for c in classes for f in files_per_class[c]]
    if not files:
        where = f"{root}/<class>/{split}/" if with_splits else f"{root}/<class>/"
        raise DatasetError(f"no shape files found in {where}")
    labels = np.array([i for i, c in enumerate(classes) for _ in files_per_class[c]], dtype=np.int64)
    reader = functools.partial(
        _read_shape_file, num_points=opts.num_points, random_seed=opts.sampling == "random"
    )
    names = [f"{classes[label]}/{f.stem}" for label, f in zip(labels, files, strict=True)]
    return FilePointCloudDataset(
        files,
        labels,
        classes,
        reader=reader,
        names=names,
        layout="class-folders",
        source=str(root),
        **opts.as_kwargs(),
    )


# --------------------------------------------------------------------------- layout detection


def _is_modelnet40_h5(root: Path) -> bool:
    markers = [MODELNET40_H5_NAMES, *MODELNET40_H5_FILES.values()]
    return any((root / m).exists() for m in markers) or any(root.glob("ply_data_*.h5"))


def _is_resampled(root: Path) -> bool:
    return any((root / m).exists() for m in (RESAMPLED_NAMES, *RESAMPLED_LISTS.values()))


def _is_shapenet55(root: Path) -> bool:
    has_lists = any((root / f"{s}.txt").exists() for s in SPLITS)
    return (
        (root / SHAPENET_PC_DIR).is_dir()
        or (root / SHAPENET55_LIST_DIR).is_dir()
        or (has_lists and (root.parent / SHAPENET_PC_DIR).is_dir())
    )


def _is_npz_folder(root: Path) -> bool:
    return any((root / f"{s}.npz").exists() for s in SPLITS)


def _is_scanobjectnn_folder(root: Path) -> bool:
    return bool(_scanobjectnn_pairs(root))


def _is_class_folders(root: Path) -> bool:
    return any(_shape_files(d) or any(_shape_files(d / s) for s in SPLITS) for d in _class_dirs(root))


_Opener = Callable[[Path, str, _Options], PointCloudDataset]
FOLDER_LAYOUTS: dict[str, tuple[Callable[[Path], bool], _Opener]] = {
    "npz-folder": (_is_npz_folder, _open_npz_folder),
    "modelnet40-h5": (_is_modelnet40_h5, _open_modelnet40_h5),
    "modelnet40-resampled": (_is_resampled, _open_modelnet40_resampled),
    "shapenet55": (_is_shapenet55, _open_shapenet55),
    "scanobjectnn-folder": (_is_scanobjectnn_folder, _open_scanobjectnn_folder),
    "class-folders": (_is_class_folders, _open_class_folders),
}  # checked in this order; the first match wins
FILE_LAYOUTS = {".npz": ("npz", _open_npz), ".h5": ("h5", _open_h5_file), ".hdf5": ("h5", _open_h5_file)}


def detect_layout(path: str | os.PathLike) -> str:
    """Name of the layout at ``path`` (see the module docstring); raises DatasetError if none fits."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"data set not found: {path}")
    if path.is_file():
        if path.suffix.lower() not in FILE_LAYOUTS:
            raise DatasetError(
                f"{path}: unknown data-set file type {path.suffix!r}; expected one of "
                f"{sorted(FILE_LAYOUTS)} or a folder"
            )
        layout = FILE_LAYOUTS[path.suffix.lower()][0]
        return "scanobjectnn" if layout == "h5" and scanobjectnn_variant(path) else layout
    for name, (detect, _) in FOLDER_LAYOUTS.items():
        if detect(path):
            return name
    raise DatasetError(
        f"{path}: no known data-set layout (expected one of: {', '.join(FOLDER_LAYOUTS)}, "
        "or an .npz / .h5 file); run `i2pmae data check` on it for the expected files"
    )


def open_dataset(
    path: str | os.PathLike,
    *,
    split: str = "train",
    num_points: int | None = DEFAULT_NUM_POINTS,
    sampling: str = "first",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> PointCloudDataset:
    """Open any supported data set (layout detected from ``path``).

    Args:
        path: an ``.npz`` / ``.h5`` file or a data-set folder (see the module docstring).
        split: 'train' or 'test'; picks the file or list inside folder layouts. Ignored for a single
            file and for class folders without train/test sub-folders: they are one data set.
        num_points: points per item; None keeps all the points of the file.
        sampling: 'first' (default), 'fps' or 'random' sub-sampling (see the module docstring).
        transform: applied to each item's (num_points, 3) points after normalisation, e.g. an augmentation.

    Returns:
        a :class:`PointCloudDataset`; items ``{'points': (num_points, 3), 'label': int, 'index': int}``.
    """
    _check_split(split)
    _check_options(num_points, sampling)
    path = Path(path)
    layout = detect_layout(path)
    opts = _Options(num_points, sampling, transform)
    if path.is_file():
        return FILE_LAYOUTS[path.suffix.lower()][1](path, split, opts)
    return FOLDER_LAYOUTS[layout][1](path, split, opts)


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


# --------------------------------------------------------------------------- augmentations


def _as_batch(points: Tensor) -> tuple[Tensor, bool]:
    """(N, 3) or (B, N, 3) -> ((B, N, 3), whether a batch axis was added)."""
    if points.ndim not in (2, 3) or points.shape[-1] != XYZ:
        raise ValueError(f"points must have shape (N, 3) or (B, N, 3), got {tuple(points.shape)}")
    return (points[None], True) if points.ndim == 2 else (points, False)


def _uniform(
    shape: tuple[int, ...], low: float, high: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """U(low, high) of ``shape`` drawn on the generator's device, returned on ``like``'s device/dtype."""
    device = generator.device if generator is not None else like.device
    draw = torch.rand(shape, generator=generator, device=device)
    return (low + (high - low) * draw).to(like)


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    if len(bounds) != 2 or bounds[0] > bounds[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {bounds}")


@dataclass(frozen=True)
class ScaleAndTranslate:
    """Per-sample, per-axis scale s ~ U(scale) then translation t ~ U(translate): p' = p * s + t.

    The paper's pre-training and fine-tuning augmentation (scale U(2/3, 3/2), translation U(-0.2, 0.2)).
    Call on (N, 3) or (B, N, 3) points; an optional torch.Generator makes it reproducible.
    """

    scale: tuple[float, float] = (2.0 / 3.0, 3.0 / 2.0)
    translate: tuple[float, float] = (-0.2, 0.2)

    def __post_init__(self) -> None:
        _check_range("scale", self.scale)
        _check_range("translate", self.translate)
        if self.scale[0] <= 0:
            raise ValueError(f"scale factors must be positive, got {self.scale}")

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        batch, added = _as_batch(points)  # (B, N, 3)
        shape = (batch.shape[0], 1, XYZ)
        out = batch * _uniform(shape, *self.scale, batch, generator) + _uniform(
            shape, *self.translate, batch, generator
        )
        return out[0] if added else out


def rotation_matrices(angles: Tensor, axis: int) -> Tensor:
    """(B,) angles in radians -> (B, 3, 3) right-handed rotations about coordinate ``axis`` (0, 1, 2)."""
    first, second = (axis + 1) % XYZ, (axis + 2) % XYZ  # the rotated plane, in cyclic order
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.zeros(*angles.shape, XYZ, XYZ, dtype=angles.dtype, device=angles.device)  # (B, 3, 3)
    rot[..., axis, axis] = 1.0
    rot[..., first, first], rot[..., first, second] = cos, -sin
    rot[..., second, first], rot[..., second, second] = sin, cos
    return rot


@dataclass(frozen=True)
class RandomRotation:
    """Rotation about one coordinate axis by an angle ~ U(angle_range) per sample.

    ``axis`` is the data set's vertical axis: 'y' for ScanObjectNN, ModelNet40 h5 / resampled and
    ShapeNet; 'z' for the ModelNet10 npz in shared/ (a data set's ``up_axis`` attribute says which).
    """

    axis: str | int
    angle_range: tuple[float, float] = (0.0, 2.0 * math.pi)

    def __post_init__(self) -> None:
        if self.axis not in AXES and self.axis not in range(XYZ):
            raise ValueError(f"axis must be one of {AXES} or 0, 1, 2, got {self.axis!r}")
        _check_range("angle_range", self.angle_range)

    @property
    def axis_index(self) -> int:
        return AXES.index(self.axis) if isinstance(self.axis, str) else int(self.axis)

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        batch, added = _as_batch(points)  # (B, N, 3)
        angles = _uniform((batch.shape[0],), *self.angle_range, batch, generator)  # (B,)
        rot = rotation_matrices(angles, self.axis_index)  # (B, 3, 3)
        out = torch.einsum("bij,bnj->bni", rot, batch)  # (B, N, 3)
        return out[0] if added else out


@dataclass(frozen=True)
class Jitter:
    """Independent Gaussian noise N(0, sigma^2) on every coordinate, clipped to [-clip, clip]."""

    sigma: float = 0.01
    clip: float = 0.05

    def __post_init__(self) -> None:
        if self.sigma < 0 or self.clip < 0:
            raise ValueError(f"sigma and clip must be non-negative, got {self.sigma}, {self.clip}")

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else points.device
        noise = torch.randn(points.shape, generator=generator, device=device).to(points)
        return points + (self.sigma * noise).clamp(-self.clip, self.clip)


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order, passing the same generator to each."""

    transforms: Sequence[Callable[..., Tensor]] = field(default_factory=tuple)

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for transform in self.transforms:
            points = transform(points, generator=generator)
        return points


# --------------------------------------------------------------------------- layout checks and instructions

LAYOUT_TITLES = {
    "npz": "one .npz file (points, labels, classes)",
    "npz-folder": "a folder of train.npz / test.npz (the ModelNet10 layout of shared/data/modelnet10)",
    "h5": "one HDF5 file with data / label",
    "scanobjectnn": "one ScanObjectNN HDF5 file",
    "scanobjectnn-folder": "a ScanObjectNN folder with one training_*.h5 / test_*.h5 pair",
    "modelnet40-h5": "ModelNet40 HDF5 folder (modelnet40_ply_hdf5_2048)",
    "modelnet40-resampled": "ModelNet40 text folder (modelnet40_normal_resampled)",
    "shapenet55": "ShapeNet-55 (Point-BERT's ShapeNet55-34: shapenet_pc/*.npy + ShapeNet-55/*.txt)",
    "class-folders": "a folder of class sub-folders holding shape files",
}

INSTRUCTIONS = {
    "modelnet10": """\
ModelNet10 (.npz, this project's format; z is up)
  Expected: DIR/train.npz, DIR/test.npz and DIR/classes.txt (line i = name of label i), or a
  'classes' array inside each .npz. Arrays: points float32 (N, P, 3), labels int64 (N,), optional
  names (N,) str. Pass DIR with --split train/test, or one .npz file.
  To build it from the original meshes:
    1. Download ModelNet10.zip from the Princeton ModelNet page, https://modelnet.cs.princeton.edu/
       (file http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip).
    2. Unzip it: ModelNet10/<class>/{train,test}/<class>_0001.off. That tree is itself a supported
       layout (class folders with train/test sub-folders); for fast loading, write .npz files from it
       with i2pmae.data.save_npz.
  ModelNet is for academic research use; cite Wu et al., "3D ShapeNets", CVPR 2015.""",
    "modelnet40-h5": """\
ModelNet40, PointNet's HDF5 files (modelnet40_ply_hdf5_2048; y is up)
    1. Get modelnet40_ply_hdf5_2048.zip (PointNet, Qi et al., CVPR 2017). Its original address,
       https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip, is offline: use a copy of
       that same zip.
    2. Unzip it so that DIR holds ply_data_train0.h5 ... ply_data_train4.h5, ply_data_test0.h5,
       ply_data_test1.h5, train_files.txt, test_files.txt and shape_names.txt.
  Expect 9,840 train / 2,468 test shapes of 2,048 points, 40 classes.""",
    "modelnet40-resampled": """\
ModelNet40, PointNet++'s resampled text files (modelnet40_normal_resampled; y is up)
    1. Get modelnet40_normal_resampled.zip (PointNet++, Qi et al., NeurIPS 2017). Its original address,
       https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip, is offline: use a copy
       of that same zip.
    2. Unzip it so that DIR holds modelnet40_shape_names.txt, modelnet40_train.txt,
       modelnet40_test.txt and DIR/<class>/<class>_0001.txt (10,000 lines 'x,y,z,nx,ny,nz').
  Expect 9,843 train / 2,468 test shapes, 40 classes. The 'processed ModelNet' of Point-BERT holds
  only modelnet40_{train,test}_8192pts_fps.dat, which are Python pickles: they are not read here
  (unpickling a file can run code), so use the text files.""",
    "scanobjectnn": """\
ScanObjectNN (HDF5; y is up; 15 classes, 2,048 points per object)
    1. Open https://hkust-vgd.github.io/scanobjectnn/, read the terms of use and fill in the authors'
       agreement form; they send the download link by e-mail (there is no public direct link).
    2. Download the h5 files archive and unzip it into DIR, giving DIR/main_split/ and
       DIR/main_split_nobg/.
    3. The three variants of the paper are files; pass the training file for train, the test file
       for test:
         OBJ_BG     DIR/main_split/training_objectdataset.h5, DIR/main_split/test_objectdataset.h5
         OBJ_ONLY   DIR/main_split_nobg/training_objectdataset.h5, DIR/main_split_nobg/test_objectdataset.h5
         PB_T50_RS  DIR/main_split/training_objectdataset_augmentedrot_scale75.h5,
                    DIR/main_split/test_objectdataset_augmentedrot_scale75.h5
  Expect 2,309 / 581 objects for OBJ_BG and OBJ_ONLY, 11,416 / 2,882 for PB_T50_RS.""",
    "shapenet55": """\
ShapeNet-55 (Point-BERT's processed point clouds; y is up; 55 classes)
    1. Follow DATASET.md of the Point-BERT repository, https://github.com/lulutang0608/Point-BERT
       (section "ShapeNet55/34 Dataset"): download the processed ShapeNet55-34 archive from the Google
       Drive or BaiduCloud link given there.
    2. Unzip it so that DIR = ShapeNet55-34/ holds shapenet_pc/<synset>-<model>.npy (8,192 points
       each) and ShapeNet-55/train.txt, ShapeNet-55/test.txt (one .npy file name per line).
    3. Pass DIR (or DIR/ShapeNet-55).
  Expect 41,952 train / 10,518 test shapes. ShapeNet's terms of use apply (https://shapenet.org/).""",
    "class-folders": """\
Class folders (any shapes you have)
  DIR/<class>/<shape files> (one data set), or DIR/<class>/train/<files> and DIR/<class>/test/<files>
  (split chosen with --split). Class names are the sub-folder names, sorted. Any file type that
  i2pmae.io reads: meshes are surface-sampled, clouds FPS-sampled.""",
}

LAYOUT_DATASETS = {
    "npz": ("modelnet10",),
    "npz-folder": ("modelnet10",),
    "h5": ("modelnet40-h5", "scanobjectnn"),
    "scanobjectnn": ("scanobjectnn",),
    "scanobjectnn-folder": ("scanobjectnn",),
    "modelnet40-h5": ("modelnet40-h5",),
    "modelnet40-resampled": ("modelnet40-resampled",),
    "shapenet55": ("shapenet55",),
    "class-folders": ("class-folders",),
}
# words in a path that name the data set the user is after (for paths that do not exist yet)
PATH_HINTS = {
    "scanobjectnn": "scanobjectnn", "objectdataset": "scanobjectnn", "shapenet": "shapenet55",
    "ply_hdf5": "modelnet40-h5", "ply_data": "modelnet40-h5", "resampled": "modelnet40-resampled",
    "modelnet10": "modelnet10",
}  # fmt: skip
CHECK_SAMPLES = 3  # items read per split by check_dataset (first, middle, last)


def download_instructions(*datasets: str) -> str:
    """Manual download steps and expected paths for the named data sets (all when none is named)."""
    unknown = [d for d in datasets if d not in INSTRUCTIONS]
    if unknown:
        raise ValueError(f"unknown data set(s) {unknown}; known: {sorted(INSTRUCTIONS)}")
    return "\n\n".join(INSTRUCTIONS[d] for d in (datasets or tuple(INSTRUCTIONS)))


def describe_layout(path: str | os.PathLike) -> str:
    """One line naming the layout detected at ``path``; raises DatasetError when none fits."""
    layout = detect_layout(path)
    variant = scanobjectnn_variant(path) if Path(path).is_file() else None
    return f"{path}: {LAYOUT_TITLES[layout]}" + (f", variant {variant}" if variant else "")


@dataclass
class DatasetReport:
    """What ``check_dataset`` found: facts per split, problems, and download steps when it is not ok."""

    path: str
    layout: str | None = None
    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    instructions: str = ""

    @property
    def ok(self) -> bool:
        return self.layout is not None and not self.problems

    def __str__(self) -> str:
        lines = [f"{self.path}: " + (LAYOUT_TITLES[self.layout] if self.layout else "no data set found")]
        lines += [f"  {fact}" for fact in self.facts]
        lines += [f"  problem: {problem}" for problem in self.problems]
        lines.append("  OK" if self.ok else "  NOT OK")
        if self.instructions:
            lines += [
                "",
                "How to get the data (manual steps; nothing is downloaded for you):",
                "",
                self.instructions,
            ]
        return "\n".join(lines)


def _guess_datasets(path: Path) -> tuple[str, ...]:
    text = str(path).lower()
    return tuple(dict.fromkeys(name for word, name in PATH_HINTS.items() if word in text))


def _check_split_content(path: Path, split: str, is_file: bool) -> str:
    """Open one split, read a few items, and describe it; raises DatasetError on any problem."""
    dataset = open_dataset(path, split=split, num_points=None)
    picks = sorted({0, len(dataset) // 2, len(dataset) - 1})[:CHECK_SAMPLES]
    sizes = sorted({len(dataset.points_at(i)) for i in picks})
    present = len(np.unique(dataset.labels))
    where = "file" if is_file else split
    up = f", {dataset.up_axis} up" if dataset.up_axis else ""
    return (
        f"{where}: {len(dataset)} shapes, {present} of {len(dataset.classes)} classes present, "
        f"{'/'.join(map(str, sizes))} points per shape{up}"
    )


def check_dataset(path: str | os.PathLike) -> DatasetReport:
    """Validate the data set at ``path`` (both splits of a folder layout) without downloading anything.

    Returns a :class:`DatasetReport`; ``str(report)`` is the text ``i2pmae data check`` prints,
    with the exact manual download steps and expected paths when something is missing or unknown.
    """
    path = Path(path)
    report = DatasetReport(str(path))
    try:
        report.layout = detect_layout(path)
    except DatasetError as err:
        report.problems.append(str(err))
        report.instructions = download_instructions(*_guess_datasets(path))
        return report
    splits = SPLITS
    if path.is_file() or (report.layout == "class-folders" and not _has_split_dirs(path)):
        splits = ("train",)  # the split argument is ignored there: one data set
    for split in splits:
        try:
            report.facts.append(_check_split_content(path, split, len(splits) == 1))
        except DatasetError as err:
            report.problems.append(str(err))
    if report.problems:
        report.instructions = download_instructions(*LAYOUT_DATASETS[report.layout])
    return report
