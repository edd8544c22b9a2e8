"""Point-cloud data sets, their on-disk layouts, the augmentations of the paper and the layout check.

:func:`open_dataset` detects the layout of a path and returns a :class:`PointCloudDataset` whose items
are ``{'points': (num_points, 3) float32 in the unit sphere, 'label': int, 'index': int}``.

The project's own format (DESIGN.md section 4), written by :func:`save_npz`: one ``.npz`` with
``points`` float32 (N, P, 3), ``labels`` int64 (N,), and either ``classes`` (array of names) or a
``classes.txt`` beside it (line i = name of label i); optional ``names`` (N,) str.

Modules:

- ``datasets``: :class:`DatasetError`, the data-set classes, their checks and sub-sampling
  (``sampling=`` 'first', 'fps', 'random'), :func:`save_npz` and :func:`split_train_val`.
- ``layouts``: one reader per on-disk layout (npz, h5 / ScanObjectNN, ModelNet40 h5 and resampled
  text, ShapeNet-55, class folders), :func:`detect_layout` and :func:`open_dataset`.
- ``augment``: :class:`ScaleAndTranslate`, :class:`RandomRotation`, :class:`Jitter`, :class:`Compose`.
- ``check``: :func:`check_dataset` (``i2pmae data check``), :func:`describe_layout` and the manual
  download steps of :func:`download_instructions`.
- ``limits``: the memory limit on one data set (:data:`MAX_GIB`, the ``max_gib`` argument), checked
  against the sizes a file declares before anything is read.
"""

from .augment import Compose, Jitter, RandomRotation, ScaleAndTranslate, rotation_matrices
from .check import DatasetReport, check_dataset, describe_layout, download_instructions
from .datasets import (
    DEFAULT_NUM_POINTS,
    SAMPLING_MODES,
    ArrayPointCloudDataset,
    DatasetError,
    FilePointCloudDataset,
    PointCloudDataset,
    save_npz,
    split_train_val,
)
from .layouts import (
    SCANOBJECTNN_CLASSES,
    SHAPENET55_SYNSETS,
    SPLITS,
    detect_layout,
    open_dataset,
    scanobjectnn_variant,
)
from .limits import MAX_GIB

__all__ = [
    "DEFAULT_NUM_POINTS",
    "MAX_GIB",
    "SAMPLING_MODES",
    "SCANOBJECTNN_CLASSES",
    "SHAPENET55_SYNSETS",
    "SPLITS",
    "ArrayPointCloudDataset",
    "Compose",
    "DatasetError",
    "DatasetReport",
    "FilePointCloudDataset",
    "Jitter",
    "PointCloudDataset",
    "RandomRotation",
    "ScaleAndTranslate",
    "check_dataset",
    "describe_layout",
    "detect_layout",
    "download_instructions",
    "open_dataset",
    "rotation_matrices",
    "save_npz",
    "scanobjectnn_variant",
    "split_train_val",
]
