"""Layout check and download instructions: what ``i2pmae data check`` prints; nothing is downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import DatasetError, PointCloudDataset
from .layouts import (
    CLASSES_FILE,
    SPLITS,
    _has_split_dirs,
    detect_layout,
    open_dataset,
    scanobjectnn_variant,
)
from .limits import MAX_GIB

LAYOUT_TITLES = {
    "npz": "one .npz file (points, labels, and classes or a classes.txt beside it)",
    "npz-folder": "a folder of train.npz / test.npz (this project's format: shared/data/modelnet10, the "
    "ModelNet40 build of shared/data/modelnet40/build.py)",
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
# Without class names the class count is the largest label + 1, so one stray label (99 among 0..4) makes
# up classes; fewer present than this share of 0..max is a problem.
MIN_PRESENT_SHARE = 0.5


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


def _describe_split(dataset: PointCloudDataset, where: str) -> str:
    """Read a few items of one opened split and describe it; raises DatasetError on any problem."""
    picks = sorted({0, len(dataset) // 2, len(dataset) - 1})[:CHECK_SAMPLES]
    sizes = sorted({len(dataset.points_at(i)) for i in picks})
    present = len(np.unique(dataset.labels))
    up = f", {dataset.up_axis} up" if dataset.up_axis else ""
    return (
        f"{where}: {len(dataset)} shapes, {present} of {len(dataset.classes)} classes present, "
        f"{'/'.join(map(str, sizes))} points per shape{up}"
    )


def _label_problems(dataset: PointCloudDataset, where: str) -> list[str]:
    """A problem when the classes are numbered from the labels and most of 0..max label hold no shapes.

    Named classes need no such check: a label outside the names is already refused when opening.
    """
    num_classes = len(dataset.classes)
    if dataset.classes != [str(i) for i in range(num_classes)]:
        return []
    labels, counts = np.unique(dataset.labels, return_counts=True)
    if len(labels) >= MIN_PRESENT_SHARE * num_classes:
        return []
    return [
        f"{where} labels: only {len(labels)} of the {num_classes} classes 0..{num_classes - 1} have shapes; "
        f"without class names the class count is the largest label + 1, and label {labels[-1]} "
        f"({counts[-1]} shape(s)) may be wrong; fix the labels or put the class names in a {CLASSES_FILE} "
        "beside the file"
    ]


def check_dataset(path: str | os.PathLike, *, max_gib: float = MAX_GIB) -> DatasetReport:
    """Validate the data set at ``path`` (both splits of a folder layout) without downloading anything.

    Returns a :class:`DatasetReport`; ``str(report)`` is the text ``i2pmae data check`` prints,
    with the exact manual download steps and expected paths when something is missing or unknown.
    A split whose arrays would take more than ``max_gib`` GiB once read is a problem, found before
    reading it (see :func:`~i2pmae.data.open_dataset`). So are labels without class names that leave
    most of the classes 0..max label empty (:data:`MIN_PRESENT_SHARE`).
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
    label_problems: list[str] = []
    for split in splits:
        where = "file" if len(splits) == 1 else split
        try:
            dataset = open_dataset(path, split=split, num_points=None, max_gib=max_gib)
            report.facts.append(_describe_split(dataset, where))
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        label_problems += _label_problems(dataset, where)
    if report.problems:  # download steps help with missing or unreadable files, not with wrong labels
        report.instructions = download_instructions(*LAYOUT_DATASETS[report.layout])
    report.problems += label_problems
    return report
