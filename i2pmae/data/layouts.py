"""On-disk data-set layouts: one reader per layout, layout detection and :func:`open_dataset`.

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

Class folders are read with :func:`i2pmae.io.load_points`, which already returns ``num_points``
points (FPS for clouds, area-weighted surface samples for meshes); there ``"random"`` only redraws the
mesh surface samples.
"""

from __future__ import annotations

import functools
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .datasets import (
    DEFAULT_NUM_POINTS,
    XYZ,
    ArrayPointCloudDataset,
    DatasetError,
    FilePointCloudDataset,
    PointCloudDataset,
    _check_options,
    _raise_if_missing,
)
from .limits import MAX_GIB, SizeBudget, check_max_gib, npy_nbytes, npz_nbytes

SPLITS = ("train", "test")
SEED_RANGE = 2**31  # seeds drawn for io.load_points in "random" mode
CLASSES_FILE = "classes.txt"
NPZ_ARRAYS = ("points", "labels", "names", "classes")  # the arrays of our .npz format that are read
MAX_NUMBERED_CLASSES = 10_000  # unnamed labels become the names "0".."max": refuse absurd maxima
H5_POINT_KINDS, H5_LABEL_KINDS = "fiu", "iu"  # numpy dtype kinds accepted for data / label

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


# --------------------------------------------------------------------------- file and split helpers


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
    max_gib: float

    def as_kwargs(self) -> dict:
        return {"num_points": self.num_points, "sampling": self.sampling, "transform": self.transform}


def _open_npz(path: Path, split: str, opts: _Options) -> PointCloudDataset:
    try:
        points, labels, names, classes = _read_npz_arrays(path, SizeBudget(opts.max_gib))
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


def _read_npz_arrays(
    path: Path, budget: SizeBudget
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list | None]:
    """(points, labels, names or None, classes or None) of one of our .npz files; pickles are refused.

    The arrays' declared sizes are claimed from ``budget`` before any of them is decompressed.
    """
    if not zipfile.is_zipfile(path):  # np.load would read a bare .npy renamed .npz whole
        raise DatasetError(f"{path}: not a readable .npz archive of plain arrays (not a zip file)")
    with np.load(path, allow_pickle=False) as archive:
        missing = {"points", "labels"} - set(archive.files)
        if missing:
            raise DatasetError(
                f"{path}: missing array(s) {sorted(missing)}; found {sorted(archive.files)} (expected "
                "points (N, P, 3), labels (N,), and classes or a classes.txt beside it)"
            )
        budget.claim(npz_nbytes(archive, [k for k in NPZ_ARRAYS if k in archive.files]), str(path))
        names = archive["names"] if "names" in archive.files else None
        classes = archive["classes"].tolist() if "classes" in archive.files else None
        return archive["points"], archive["labels"], names, classes


def _open_npz_folder(root: Path, split: str, opts: _Options) -> PointCloudDataset:
    dataset = _open_npz(_require(root / f"{split}.npz", f"{split} split"), split, opts)
    dataset.layout = "npz-folder"
    return dataset


def _read_h5(path: Path, budget: SizeBudget) -> tuple[np.ndarray, np.ndarray]:
    """(data, label) of one HDF5 file, dtypes checked and sizes claimed from ``budget``."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from err
    with f:
        missing = {"data", "label"} - set(f.keys())
        if missing:
            raise DatasetError(
                f"{path}: missing dataset(s) {sorted(missing)}; found {sorted(f.keys())} "
                "(expected 'data' (N, P, 3) and 'label' (N,))"
            )
        data, label = f["data"], f["label"]
        for name, item, kinds, what in (("data", data, H5_POINT_KINDS, "numbers"),
                                        ("label", label, H5_LABEL_KINDS, "integers")):
            if not isinstance(item, h5py.Dataset):
                raise DatasetError(f"{path}: '{name}' is a {type(item).__name__}, not an array")
            if item.dtype.kind not in kinds:
                raise DatasetError(f"{path}: '{name}' must hold {what}, got dtype {item.dtype}")
        budget.claim(data.nbytes + label.nbytes, str(path))  # declared sizes: fill values and compression
        return data[...], label[...]


def _numbered_classes(labels: np.ndarray, source: str) -> list[str]:
    """Class names "0" .. "max label" for labels of an unknown source (already checked to be integers)."""
    if labels.size == 0:
        raise DatasetError(f"{source}: the data set holds no shapes")
    bottom, top = int(labels.min()), int(labels.max())
    if bottom < 0:  # else the names would start at "0" and the error speak of made-up class names
        raise DatasetError(f"{source}: label {bottom} is negative; labels number the classes from 0")
    if top >= MAX_NUMBERED_CLASSES:
        raise DatasetError(
            f"{source}: label {top} would make {top + 1} unnamed classes (at most {MAX_NUMBERED_CLASSES}); "
            f"put the class names in a {CLASSES_FILE} beside the file"
        )
    return [str(i) for i in range(top + 1)]


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
    points, labels = _read_h5(path, SizeBudget(opts.max_gib))
    variant = scanobjectnn_variant(path)
    layout, up_axis = "h5", None
    if variant is not None:
        classes, layout, up_axis = list(SCANOBJECTNN_CLASSES), "scanobjectnn", UP_Y
    elif (path.parent / MODELNET40_H5_NAMES).exists():  # one part of ModelNet40 h5
        classes, up_axis = _read_lines(path.parent / MODELNET40_H5_NAMES, "class names"), UP_Y
    elif (path.parent / CLASSES_FILE).exists():
        classes = _read_lines(path.parent / CLASSES_FILE, "class names")
    else:  # unknown source: the labels are still usable, the names are the label numbers
        classes = _numbered_classes(labels, str(path))
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
    budget = SizeBudget(opts.max_gib)  # one limit for all the parts together
    parts = [_read_h5(f, budget) for f in files]
    if not parts:
        raise DatasetError(f"{root / MODELNET40_H5_FILES[split]} lists no files")
    points = np.concatenate([p for p, _ in parts])  # (N, 2048, 3)
    labels = np.concatenate([lab.reshape(len(lab), -1)[:, 0] for _, lab in parts])  # (N,)
    return ArrayPointCloudDataset(
        points, labels, classes, layout="modelnet40-h5", source=str(root), up_axis=UP_Y, **opts.as_kwargs()
    )


def _read_resampled_txt(path: Path, *, max_gib: float) -> np.ndarray:
    """One modelnet40_normal_resampled file: (P, 6) comma-separated x,y,z,nx,ny,nz -> (P, 3)."""
    SizeBudget(max_gib).claim(path.stat().st_size, str(path))  # text: the parsed floats are no bigger
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
        reader=functools.partial(_read_resampled_txt, max_gib=opts.max_gib),
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


def _read_npy(path: Path, *, max_gib: float) -> np.ndarray:
    """One ``.npy`` file, after claiming its declared size; unreadable files raise DatasetError."""
    try:
        with open(path, "rb") as handle:
            declared = npy_nbytes(handle)
            if declared is None:
                raise DatasetError(f"{path}: not an .npy file")
            SizeBudget(max_gib).claim(declared, str(path))
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable .npy array of plain numbers ({err})") from err


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
        reader=functools.partial(_read_npy, max_gib=opts.max_gib),
        names=names,
        layout="shapenet55",
        source=str(root),
        up_axis=UP_Y,
        **opts.as_kwargs(),
    )


def _read_shape_file(path: Path, *, num_points: int | None, random_seed: bool) -> np.ndarray:
    from ..io import ShapeError, load_points

    seed = int(torch.randint(SEED_RANGE, ())) if random_seed else 0
    try:
        if num_points is None:
            return load_points(path, seed=seed)
        return load_points(path, num_points, seed=seed)
    except ShapeError as err:
        raise DatasetError(f"{path}: {err}") from err


def _shape_files(folder: Path) -> list[Path]:
    from ..io import SUPPORTED_EXTENSIONS

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
    max_gib: float = MAX_GIB,
) -> PointCloudDataset:
    """Open any supported data set (layout detected from ``path``).

    Args:
        path: an ``.npz`` / ``.h5`` file or a data-set folder (see the module docstring).
        split: 'train' or 'test'; picks the file or list inside folder layouts. Ignored for a single
            file and for class folders without train/test sub-folders: they are one data set.
        num_points: points per item; None keeps all the points of the file.
        sampling: 'first' (default), 'fps' or 'random' sub-sampling (see :mod:`i2pmae.data.datasets`).
        transform: applied to each item's (num_points, 3) points after normalisation, e.g. an augmentation.
        max_gib: refuse (DatasetError) a file whose arrays would take more than this many GiB once read,
            judged from the sizes the file declares before anything is read (:mod:`i2pmae.data.limits`).
            For a file-per-shape layout the limit applies to each ``.npy`` / text file.

    Returns:
        a :class:`PointCloudDataset`; items ``{'points': (num_points, 3), 'label': int, 'index': int}``.
    """
    _check_split(split)
    _check_options(num_points, sampling)
    path = Path(path)
    layout = detect_layout(path)
    opts = _Options(num_points, sampling, transform, check_max_gib(max_gib))
    if path.is_file():
        return FILE_LAYOUTS[path.suffix.lower()][1](path, split, opts)
    return FOLDER_LAYOUTS[layout][1](path, split, opts)
