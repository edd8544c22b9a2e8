"""Data sets and augmentations: every layout built as tiny files in tmp_path, checked against numpy."""

from __future__ import annotations

import io
import math
import pickle
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from i2pmae import data
from i2pmae.data import (
    SCANOBJECTNN_CLASSES,
    Compose,
    DatasetError,
    Jitter,
    RandomRotation,
    ScaleAndTranslate,
    check_dataset,
    datasets,
    describe_layout,
    download_instructions,
    open_dataset,
    save_npz,
    split_train_val,
)
from i2pmae.data.limits import GIB
from i2pmae.io import load_points

NUM_SHAPES, NUM_RAW = 6, 32


def _clouds(num_shapes: int = NUM_SHAPES, num_raw: int = NUM_RAW, seed: int = 0) -> np.ndarray:
    """Random clouds far from the origin and at varied scales, so normalisation matters."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(1, 100, size=(num_shapes, 1, 1))
    offset = rng.uniform(-50, 50, size=(num_shapes, 1, 3))
    return (rng.normal(size=(num_shapes, num_raw, 3)) * scale + offset).astype(np.float32)


def _normalised(points: np.ndarray) -> np.ndarray:
    """Closed-form reference of the unit-sphere normalisation: centroid to 0, largest norm 1."""
    centred = points - points.mean(axis=-2, keepdims=True)
    return centred / np.linalg.norm(centred, axis=-1).max(axis=-1)[..., None, None]


def _fps_reference(points: np.ndarray, num_samples: int) -> np.ndarray:
    """Brute-force farthest point sampling from index 0: (P, 3) -> (num_samples,) indices."""
    chosen, dist = [0], np.linalg.norm(points - points[0], axis=1)
    for _ in range(num_samples - 1):
        chosen.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(chosen)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """np.testing rather than torch.testing, whose first call imports torch.distributed (seconds)."""
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def _write_npz(path: Path, points: np.ndarray, labels: np.ndarray, **extra) -> Path:
    np.savez_compressed(path, points=points, labels=labels, **extra)
    return path


def _labels(num: int = NUM_SHAPES, num_classes: int = 3) -> np.ndarray:
    return (np.arange(num) % num_classes).astype(np.int64)


def _write_h5(path: Path, points: np.ndarray, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["data"], f["label"] = points, labels
    return path


# --------------------------------------------------------------------------- npz


def test_npz_items_are_first_n_points_normalised(tmp_path):
    raw = _clouds()
    path = _write_npz(
        tmp_path / "shapes.npz",
        raw,
        _labels(),
        classes=np.array(["a", "b", "c"]),
        names=np.array([f"s{i}" for i in range(NUM_SHAPES)]),
    )
    dataset = open_dataset(path, num_points=16)
    assert (len(dataset), dataset.classes, dataset.layout) == (NUM_SHAPES, ["a", "b", "c"], "npz")
    bytes_names = _write_npz(tmp_path / "b.npz", raw, _labels(), classes=np.array([b"a", b"b", b"c"]))
    assert open_dataset(bytes_names, num_points=16).classes == ["a", "b", "c"]
    assert dataset.names == [f"s{i}" for i in range(NUM_SHAPES)]
    np.testing.assert_array_equal(dataset.labels, _labels())
    item = dataset[4]
    assert item["points"].shape == (16, 3) and item["points"].dtype == torch.float32
    assert (item["label"], item["index"]) == (1, 4)
    np.testing.assert_allclose(item["points"].numpy(), _normalised(raw[4, :16]), atol=1e-5)
    assert dataset[-1]["index"] == NUM_SHAPES - 1
    with pytest.raises(IndexError):
        dataset[NUM_SHAPES]


def test_items_are_copies(tmp_path):
    path = _write_npz(tmp_path / "s.npz", _clouds(), _labels(), classes=np.array(list("abc")))
    dataset = open_dataset(path, num_points=None)
    dataset[0]["points"].zero_()
    assert dataset[0]["points"].abs().sum() > 0


def test_npz_classes_txt_beside_and_missing(tmp_path):
    path = _write_npz(tmp_path / "shapes.npz", _clouds(), _labels())
    with pytest.raises(DatasetError, match=str(tmp_path / "classes.txt")):
        open_dataset(path, num_points=None)
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    assert open_dataset(path, num_points=None).classes == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"pts": _clouds(), "labels": _labels()},
            r"missing array\(s\) \['points'\]; found \['classes', 'lab",
        ),
        ({"points": _clouds(), "labels": _labels(NUM_SHAPES - 1)}, "6 point clouds but 5 labels"),
        ({"points": _clouds(0), "labels": _labels(0)}, "holds no shapes"),
        ({"points": _clouds()[..., :2], "labels": _labels()}, r"shape \(N, P, 3\)"),
        ({"points": _clouds(), "labels": _labels() + 3}, r"outside \[0, 3\)"),
        ({"points": _clouds(), "labels": _labels().astype(float)}, "must be integers"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", classes=np.array(list("abc")), **arrays)
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path / "bad.npz", num_points=None)


def test_unreadable_npz_files_raise_dataset_errors(tmp_path):
    good = _write_npz(tmp_path / "good.npz", _clouds(), _labels(), classes=np.array(list("abc")))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "text.npz").write_text("points,labels\n1,2\n")
    np.savez(tmp_path / "pickled.npz", points=np.array([object()] * 2), labels=_labels(2))
    for name in ("empty", "truncated", "text", "pickled"):
        with pytest.raises(DatasetError, match=rf"{name}\.npz: not a readable \.npz archive"):
            open_dataset(tmp_path / f"{name}.npz", num_points=None)


def test_nan_points_are_refused(tmp_path):
    raw = _clouds()
    raw[3, 5, 1] = np.nan
    path = _write_npz(tmp_path / "nan.npz", raw, _labels(), classes=np.array(list("abc")))
    with pytest.raises(DatasetError, match=r"NaN or infinite coordinates \(first: shape 3\)"):
        open_dataset(path, num_points=None)


def test_degenerate_shape_is_refused(tmp_path):
    raw = _clouds()
    raw[2] = 7.0
    path = _write_npz(tmp_path / "flat.npz", raw, _labels(), classes=np.array(list("abc")))
    with pytest.raises(DatasetError, match=r"all their points at one place.*\(first: shape 2\)"):
        open_dataset(path, num_points=None)


def test_too_few_points_is_an_error_and_none_keeps_all(tmp_path):
    path = _write_npz(tmp_path / "s.npz", _clouds(), _labels(), classes=np.array(list("abc")))
    with pytest.raises(DatasetError, match="shapes have 32 points but num_points=33"):
        open_dataset(path, num_points=33)
    assert open_dataset(path, num_points=None)[0]["points"].shape == (NUM_RAW, 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DatasetError, match="num_points"):
            open_dataset(path, num_points=bad)
    with pytest.raises(DatasetError, match="sampling"):
        open_dataset(path, sampling="uniform")
    with pytest.raises(DatasetError, match="split must be one of"):
        open_dataset(path, split="val")


def test_fps_sampling_matches_brute_force(tmp_path):
    raw = _clouds()
    path = _write_npz(tmp_path / "s.npz", raw, _labels(), classes=np.array(list("abc")))
    dataset = open_dataset(path, num_points=8, sampling="fps")
    for i in range(NUM_SHAPES):
        expected = _normalised(raw[i, _fps_reference(raw[i], 8)])
        np.testing.assert_allclose(dataset[i]["points"].numpy(), expected, atol=1e-5)


def test_random_sampling_draws_fresh_subsets(tmp_path):
    path = _write_npz(tmp_path / "s.npz", _clouds(), _labels(), classes=np.array(list("abc")))
    dataset = open_dataset(path, num_points=8, sampling="random")
    torch.manual_seed(0)
    first = dataset[0]["points"]
    torch.manual_seed(0)
    assert torch.equal(dataset[0]["points"], first)
    assert not torch.equal(dataset[0]["points"], first)
    np.testing.assert_allclose(first.norm(dim=1).max(), 1.0, atol=1e-6)
    raw = torch.from_numpy(_clouds())
    subset = datasets._subsample(raw, 8, "random")  # (6, 8, 3): rows of each cloud, without repeats
    for cloud, picked in zip(raw, subset, strict=True):
        rows = {tuple(r) for r in cloud.tolist()}
        assert {tuple(r) for r in picked.tolist()} <= rows and len(set(map(tuple, picked.tolist()))) == 8


def test_npz_folder_split_and_loader(tmp_path):
    _write_npz(tmp_path / "train.npz", _clouds(), _labels())
    _write_npz(tmp_path / "test.npz", _clouds(3, seed=1), _labels(3))
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    train, test = open_dataset(tmp_path, num_points=None), open_dataset(tmp_path, split="test", num_points=10)
    assert (len(train), len(test), train.layout) == (NUM_SHAPES, 3, "npz-folder")
    batch = next(iter(DataLoader(test, batch_size=3)))
    assert batch["points"].shape == (3, 10, 3)
    assert batch["label"].tolist() == [0, 1, 2] and batch["index"].tolist() == [0, 1, 2]
    (tmp_path / "test.npz").unlink()
    with pytest.raises(DatasetError, match=f"missing test split: expected {tmp_path / 'test.npz'}"):
        open_dataset(tmp_path, split="test", num_points=None)


def test_transform_is_applied(tmp_path):
    path = _write_npz(tmp_path / "s.npz", _clouds(), _labels(), classes=np.array(list("abc")))
    plain = open_dataset(path, num_points=16)[2]["points"]
    doubled = open_dataset(path, num_points=16, transform=lambda p: 2 * p)[2]["points"]
    _assert_close(doubled, 2 * plain)


def test_save_npz_round_trip(tmp_path):
    raw = _clouds()
    names = [f"n{i}" for i in range(NUM_SHAPES)]
    save_npz(tmp_path / "out.npz", raw, _labels(), ["a", "b", "c"], names=names)
    dataset = open_dataset(tmp_path / "out.npz", num_points=None)
    assert dataset.classes == ["a", "b", "c"] and dataset.names[5] == "n5"
    np.testing.assert_allclose(dataset[1]["points"].numpy(), _normalised(raw[1]), atol=1e-5)


# --------------------------------------------------------------------------- h5: ScanObjectNN and ModelNet40


def _scanobjectnn_tree(root: Path) -> Path:
    labels = np.array([0, 14, 3, 7, 7, 1], dtype=np.int8)
    variants = [("main_split", ""), ("main_split", "_augmentedrot_scale75"), ("main_split_nobg", "")]
    for folder, suffix in variants:
        _write_h5(root / folder / f"training_objectdataset{suffix}.h5", _clouds(), labels)
        _write_h5(root / folder / f"test_objectdataset{suffix}.h5", _clouds(2, seed=3), labels[:2])
    return root


@pytest.mark.parametrize(
    ("relative", "variant"),
    [
        ("main_split/training_objectdataset.h5", "OBJ_BG"),
        ("main_split_nobg/training_objectdataset.h5", "OBJ_ONLY"),
        ("main_split/training_objectdataset_augmentedrot_scale75.h5", "PB_T50_RS"),
    ],
)
def test_scanobjectnn_file_variants(tmp_path, relative, variant):
    raw = _clouds()
    dataset = open_dataset(_scanobjectnn_tree(tmp_path) / relative, num_points=16)
    assert (dataset.variant, dataset.layout, dataset.up_axis) == (variant, "scanobjectnn", "y")
    assert dataset.classes == list(SCANOBJECTNN_CLASSES) and len(dataset.classes) == 15
    assert dataset.labels.dtype == np.int64 and dataset[1]["label"] == 14
    assert dataset.classes[dataset[1]["label"]] == "toilet"
    np.testing.assert_allclose(dataset[1]["points"].numpy(), _normalised(raw[1, :16]), atol=1e-5)
    assert "variant " + variant in describe_layout(tmp_path / relative)


def test_scanobjectnn_folder_split_and_ambiguity(tmp_path):
    root = _scanobjectnn_tree(tmp_path)
    test = open_dataset(root / "main_split_nobg", split="test", num_points=None)
    assert (len(test), test.variant, test.layout) == (2, "OBJ_ONLY", "scanobjectnn-folder")
    with pytest.raises(DatasetError, match="holds 2 ScanObjectNN variants.*OBJ_BG.*PB_T50_RS"):
        open_dataset(root / "main_split")


def test_h5_errors(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["points"], f["label"] = _clouds(), _labels()
    with pytest.raises(DatasetError, match=r"missing dataset\(s\) \['data'\]; found \['label', 'points'\]"):
        open_dataset(tmp_path / "bad.h5")
    _write_h5(tmp_path / "generic.h5", _clouds(), _labels())
    assert open_dataset(tmp_path / "generic.h5", num_points=None).classes == ["0", "1", "2"]


def _modelnet40_h5_tree(root: Path) -> tuple[Path, np.ndarray]:
    raw = _clouds(5, 40)
    root.mkdir()
    _write_h5(root / "ply_data_train0.h5", raw[:3], np.array([[0], [2], [1]], dtype=np.uint8))
    _write_h5(root / "ply_data_train1.h5", raw[3:], np.array([[1], [1]], dtype=np.uint8))
    _write_h5(root / "ply_data_test0.h5", _clouds(2, 40, seed=2), np.array([[2], [0]], dtype=np.uint8))
    prefix = "data/modelnet40_ply_hdf5_2048/"
    (root / "train_files.txt").write_text(f"{prefix}ply_data_train0.h5\n{prefix}ply_data_train1.h5\n")
    (root / "test_files.txt").write_text(f"{prefix}ply_data_test0.h5\n")
    (root / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    return root, raw


def test_modelnet40_h5_folder(tmp_path):
    root, raw = _modelnet40_h5_tree(tmp_path / "modelnet40_ply_hdf5_2048")
    train = open_dataset(root, num_points=32)
    assert (len(train), train.classes, train.layout) == (5, ["airplane", "bathtub", "bed"], "modelnet40-h5")
    np.testing.assert_array_equal(train.labels, [0, 2, 1, 1, 1])
    np.testing.assert_allclose(train[3]["points"].numpy(), _normalised(raw[3, :32]), atol=1e-5)
    assert len(open_dataset(root, split="test", num_points=None)) == 2
    part = open_dataset(root / "ply_data_train1.h5", num_points=None)  # names from shape_names.txt beside it
    assert (part.classes[1], part.layout, part.up_axis) == ("bathtub", "h5", "y")
    (root / "ply_data_train1.h5").unlink()
    with pytest.raises(DatasetError, match="2 files and 1 are missing, e.g. .*ply_data_train1.h5"):
        open_dataset(root)
    (root / "shape_names.txt").unlink()
    with pytest.raises(DatasetError, match=f"expected {root / 'shape_names.txt'}"):
        open_dataset(root, split="test")


# --------------------------------------------------------------------------- text and npy files


def _resampled_tree(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    clouds = {}
    for i, name in enumerate(["night_stand_0001", "night_stand_0002", "chair_0001", "chair_0002"]):
        table = np.concatenate([_clouds(1, 24, seed=i)[0], np.zeros((24, 3), np.float32)], axis=1)
        folder = root / name.rsplit("_", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / f"{name}.txt", table, delimiter=",", fmt="%.6f")
        clouds[name] = table[:, :3]
    (root / "modelnet40_shape_names.txt").write_text("chair\nnight_stand\n")
    (root / "modelnet40_train.txt").write_text("night_stand_0001\nchair_0001\nchair_0002\n")
    (root / "modelnet40_test.txt").write_text("night_stand_0002\n")
    return root, clouds


def test_modelnet40_resampled(tmp_path):
    root, clouds = _resampled_tree(tmp_path / "modelnet40_normal_resampled")
    train = open_dataset(root, num_points=20)
    assert (train.layout, train.classes, train.names) == (
        "modelnet40-resampled",
        ["chair", "night_stand"],
        ["night_stand_0001", "chair_0001", "chair_0002"],
    )
    np.testing.assert_array_equal(train.labels, [1, 0, 0])
    np.testing.assert_allclose(
        train[0]["points"].numpy(), _normalised(clouds["night_stand_0001"][:20]), atol=1e-4
    )
    assert open_dataset(root, split="test", num_points=None)[0]["label"] == 1
    np.savetxt(root / "chair" / "chair_0002.txt", np.ones((5, 4)), delimiter=",")
    with pytest.raises(DatasetError, match="chair_0002.txt: expected 6 columns x,y,z,nx,ny,nz, got 4"):
        train[2]
    (root / "chair" / "chair_0001.txt").unlink()
    with pytest.raises(DatasetError, match="3 files and 1 are missing.*chair_0001.txt"):
        open_dataset(root)


def _shapenet_tree(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    files = ["03001627-aaa.npy", "02691156-bbb.npy", "03001627-ccc.npy", "04379243-ddd.npy"]
    (root / "shapenet_pc").mkdir(parents=True)
    (root / "ShapeNet-55").mkdir()
    clouds = {}
    for i, name in enumerate(files):
        clouds[name] = _clouds(1, 40, seed=i)[0]
        np.save(root / "shapenet_pc" / name, clouds[name])
    (root / "ShapeNet-55" / "train.txt").write_text("\n".join(files[:3]) + "\n")
    (root / "ShapeNet-55" / "test.txt").write_text(files[3] + "\n")
    return root, clouds


def test_shapenet55(tmp_path):
    root, clouds = _shapenet_tree(tmp_path / "ShapeNet55-34")
    for path in (root, root / "ShapeNet-55"):
        train = open_dataset(path, num_points=32)
        assert (train.layout, len(train), train.names) == (
            "shapenet55",
            3,
            ["03001627-aaa", "02691156-bbb", "03001627-ccc"],
        )
        assert train.classes == ["airplane", "chair", "table"]  # sorted synsets of both lists
        np.testing.assert_array_equal(train.labels, [1, 0, 1])
    np.testing.assert_allclose(
        train[1]["points"].numpy(), _normalised(clouds["02691156-bbb.npy"][:32]), atol=1e-5
    )
    assert open_dataset(root, split="test", num_points=None)[0]["label"] == 2
    (root / "ShapeNet-55" / "train.txt").rename(root / "train.txt")  # flat: lists beside shapenet_pc/
    (root / "ShapeNet-55" / "test.txt").rename(root / "test.txt")
    (root / "ShapeNet-55").rmdir()
    assert len(open_dataset(root, num_points=None)) == 3


def test_shapenet_nan_file(tmp_path):
    root, clouds = _shapenet_tree(tmp_path / "ShapeNet55-34")
    bad = clouds["02691156-bbb.npy"].copy()
    bad[0, 0] = np.inf
    np.save(root / "shapenet_pc" / "02691156-bbb.npy", bad)
    with pytest.raises(DatasetError, match="02691156-bbb.npy: 1 shape.*NaN or infinite"):
        open_dataset(root, num_points=None)[1]


def test_shapenet55_synset_table_has_55_distinct_classes():
    assert len(data.SHAPENET55_SYNSETS) == 55 == len(set(data.SHAPENET55_SYNSETS.values()))
    assert all(len(s) == 8 and s.isdigit() for s in data.SHAPENET55_SYNSETS)


def test_class_folders_with_and_without_splits(tmp_path):
    rng = np.random.default_rng(0)
    flat = tmp_path / "flat"
    for cls in ("table", "chair"):
        (flat / cls).mkdir(parents=True)
        np.savetxt(flat / cls / f"{cls}_1.xyz", rng.normal(size=(64, 3)))
        np.save(flat / cls / f"{cls}_2.npy", rng.normal(size=(64, 3)).astype(np.float32))
    (flat / "chair" / "notes.md").write_text("not a shape")
    dataset = open_dataset(flat, num_points=32)
    assert (dataset.layout, dataset.classes) == ("class-folders", ["chair", "table"])
    assert dataset.names == ["chair/chair_1", "chair/chair_2", "table/table_1", "table/table_2"]
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1])
    expected = load_points(flat / "table" / "table_2.npy", 32)
    np.testing.assert_allclose(dataset[3]["points"].numpy(), expected, atol=1e-5)
    copy = pickle.loads(pickle.dumps(dataset))  # DataLoader workers started by spawn receive a pickle
    np.testing.assert_array_equal(copy[3]["points"].numpy(), dataset[3]["points"].numpy())

    split = tmp_path / "split"
    for cls, part in [("bed", "train"), ("bed", "test"), ("sofa", "train")]:
        (split / cls / part).mkdir(parents=True)
        np.savetxt(split / cls / part / f"{cls}_{part}.xyz", rng.normal(size=(64, 3)))
    train, test = open_dataset(split, num_points=16), open_dataset(split, split="test", num_points=16)
    assert train.classes == test.classes == ["bed", "sofa"]
    assert (len(train), len(test), test.names) == (2, 1, ["bed/bed_test"])


def test_class_folder_bad_file_names_the_file(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "broken.xyz").write_text("1 2 three\n")
    with pytest.raises(DatasetError, match="broken.xyz"):
        open_dataset(tmp_path, num_points=8)[0]


def test_unknown_layouts(tmp_path):
    with pytest.raises(DatasetError, match="data set not found"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no known data-set layout"):
        open_dataset(tmp_path)
    (tmp_path / "mesh.ply").write_text("ply\n")
    with pytest.raises(DatasetError, match="unknown data-set file type '.ply'"):
        open_dataset(tmp_path / "mesh.ply")


# --------------------------------------------------------------------------- train / validation split


def test_split_train_val_is_stratified_and_deterministic():
    labels = np.repeat(np.arange(4), [50, 20, 7, 1])
    train, val = split_train_val(labels, val_fraction=0.1, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert np.all(np.diff(val) > 0) and train.dtype == val.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=4), [5, 2, 1, 0])  # round(0.7) = 1
    assert set(labels[train]) == {0, 1, 2, 3}  # every class keeps training shapes
    again = split_train_val(labels, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(split_train_val(labels, val_fraction=0.1, seed=1)[1], val)
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(labels, val_fraction=1.0)


def test_split_train_val_accepts_a_dataset(tmp_path):
    path = _write_npz(tmp_path / "s.npz", _clouds(12), _labels(12), classes=np.array(list("abc")))
    train, val = split_train_val(open_dataset(path, num_points=None), val_fraction=0.25)
    np.testing.assert_array_equal(np.bincount(_labels(12)[val]), [1, 1, 1])
    assert len(train) == 9


# --------------------------------------------------------------------------- augmentations


def _unit_pair(batch: int) -> torch.Tensor:
    """(B, 2, 3): the origin and (1, 1, 1), so p' = p * s + t reads t and s + t directly."""
    return torch.stack([torch.zeros(batch, 3), torch.ones(batch, 3)], dim=1)


def test_scale_and_translate_ranges_and_per_sample_draws():
    out = ScaleAndTranslate()(_unit_pair(4000), generator=torch.Generator().manual_seed(0))
    translation, scale = out[:, 0], out[:, 1] - out[:, 0]  # (B, 3) each
    assert translation.min() >= -0.2 and translation.max() <= 0.2
    assert scale.min() >= 2 / 3 and scale.max() <= 3 / 2
    assert translation.min() < -0.19 and translation.max() > 0.19  # the whole range is used
    assert scale.min() < 0.68 and scale.max() > 1.48
    assert (scale[:, 0] != scale[:, 1]).all() and (scale[0] != scale[1]).any()  # per axis, per sample


def test_augmentations_reproducible_with_a_seed():
    points = torch.randn(3, 50, 3)
    augments = [
        ScaleAndTranslate(),
        RandomRotation(axis="y"),
        Jitter(),
        Compose([Jitter(), RandomRotation(axis=2)]),
    ]
    for augment in augments:
        first = augment(points, generator=torch.Generator().manual_seed(7))
        _assert_close(augment(points, generator=torch.Generator().manual_seed(7)), first)
        assert not torch.equal(augment(points, generator=torch.Generator().manual_seed(8)), first)
        assert augment(points[0], generator=torch.Generator().manual_seed(7)).shape == (50, 3)


def test_rotation_matches_closed_form():
    theta = 0.3
    c, s = math.cos(theta), math.sin(theta)
    closed_form = {
        "x": [[1, 0, 0], [0, c, -s], [0, s, c]],
        "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }
    points = torch.randn(2, 20, 3, dtype=torch.float64)
    for axis, matrix in closed_form.items():
        out = RandomRotation(axis=axis, angle_range=(theta, theta))(points)
        _assert_close(out, points @ torch.tensor(matrix, dtype=torch.float64).T)


def test_random_rotation_keeps_the_axis_and_norms():
    points = torch.randn(64, 30, 3)
    out = RandomRotation(axis="z")(points, generator=torch.Generator().manual_seed(0))
    _assert_close(out[..., 2], points[..., 2])
    _assert_close(out.norm(dim=-1), points.norm(dim=-1))
    assert not torch.allclose(out, points)
    with pytest.raises(ValueError, match="axis"):
        RandomRotation(axis="up")


def test_jitter_is_clipped_and_compose_chains():
    points = torch.zeros(10, 100, 3)
    noise = Jitter(sigma=1.0, clip=0.05)(points, generator=torch.Generator().manual_seed(0))
    assert noise.abs().max() <= 0.05 and noise.abs().max() > 0.049
    _assert_close(Jitter(sigma=0.0)(points), points)
    chain = Compose([ScaleAndTranslate(), RandomRotation(axis="y")])
    generator = torch.Generator().manual_seed(3)
    by_hand = RandomRotation(axis="y")(ScaleAndTranslate()(points + 1, generator), generator)
    _assert_close(chain(points + 1, torch.Generator().manual_seed(3)), by_hand)
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\) or \(B, N, 3\)"):
        ScaleAndTranslate()(torch.zeros(5, 2))


# --------------------------------------------------------------------------- check_dataset and instructions


def test_check_dataset_ok_folder(tmp_path):
    _write_npz(tmp_path / "train.npz", _clouds(), _labels())
    _write_npz(tmp_path / "test.npz", _clouds(3, seed=1), _labels(3))
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    report = check_dataset(tmp_path)
    assert report.ok and report.layout == "npz-folder" and report.instructions == ""
    assert report.facts == [
        "train: 6 shapes, 3 of 3 classes present, 32 points per shape",
        "test: 3 shapes, 3 of 3 classes present, 32 points per shape",
    ]
    assert str(report).endswith("OK")


MODELNET40_CLASSES = (
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door dresser "
    "flower_pot glass_box guitar keyboard lamp laptop mantel monitor night_stand person piano plant radio "
    "range_hood sink sofa stairs stool table tent toilet tv_stand vase wardrobe xbox"
).split()  # the 40 official names, alphabetical: classes.txt of shared/data/modelnet40/build.py


def _modelnet40_build(root: Path, per_class: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The layout build.py writes: {train,test}.npz (points float32 (N, 1024, 3) centred and scaled to the
    unit sphere, labels int64, names str '<class>_<nnnn>', sorted by class then name) and classes.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    written = {}
    for seed, (split, count) in enumerate(per_class.items()):
        labels = np.repeat(np.arange(len(MODELNET40_CLASSES)), count).astype(np.int64)
        names = np.array([f"{MODELNET40_CLASSES[k]}_{i % count + 1:04d}" for i, k in enumerate(labels)])
        points = _normalised(_clouds(len(labels), 1024, seed=seed)).astype(np.float32)
        np.savez_compressed(root / f"{split}.npz", points=points, labels=labels, names=names)
        written[split] = (points, labels)
    return written


def test_modelnet40_build_layout_is_read_as_it_is(tmp_path):
    root = tmp_path / "modelnet40"
    written = _modelnet40_build(root, {"train": 2, "test": 1})
    report = check_dataset(root)
    assert report.ok and report.layout == "npz-folder" and report.problems == []
    assert report.facts == [
        "train: 80 shapes, 40 of 40 classes present, 1024 points per shape",
        "test: 40 shapes, 40 of 40 classes present, 1024 points per shape",
    ]
    assert "ModelNet40 build" in str(report).splitlines()[0]  # not called "the ModelNet10 layout"
    for split, (points, labels) in written.items():
        for source in (root, root / f"{split}.npz"):  # the folder with --split, or the file itself
            dataset = open_dataset(source, split=split)  # default num_points 1024: every point, in order
            assert dataset.classes == MODELNET40_CLASSES and len(dataset.classes) == 40
            np.testing.assert_array_equal(dataset.labels, labels)
            per_class = len(labels) // 40
            assert dataset.names[-1] == f"xbox_{per_class:04d}"  # str, not bytes or objects
            assert dataset.names[23 * per_class] == "night_stand_0001"  # underscores in class names
            assert all(isinstance(n, str) for n in dataset.names)
            item = dataset[len(dataset) - 1]
            assert item["label"] == 39 and item["points"].shape == (1024, 3)
            # already unit-sphere: the normalisation leaves the stored points as they are
            np.testing.assert_allclose(item["points"].numpy(), points[-1], atol=1e-6)
        assert check_dataset(root / f"{split}.npz").ok
    test_set = open_dataset(root, split="test", num_points=512)  # fewer points: the first 512, re-centred
    expected = _normalised(written["test"][0][0, :512])
    np.testing.assert_allclose(test_set[0]["points"].numpy(), expected, atol=1e-5)


def test_check_dataset_missing_files_gives_instructions(tmp_path):
    root, _ = _modelnet40_h5_tree(tmp_path / "modelnet40_ply_hdf5_2048")
    (root / "ply_data_test0.h5").unlink()
    report = check_dataset(root)
    assert not report.ok and report.layout == "modelnet40-h5"
    assert report.facts[0].startswith("train: 5 shapes") and "y up" in report.facts[0]
    assert "ply_data_test0.h5" in report.problems[0]
    assert "ply_data_train0.h5 ... ply_data_train4.h5" in report.instructions
    assert "NOT OK" in str(report) and "nothing is downloaded" in str(report)


def test_check_dataset_unknown_path_guesses_the_data_set(tmp_path):
    report = check_dataset(tmp_path / "ScanObjectNN" / "main_split" / "training_objectdataset.h5")
    assert not report.ok and report.layout is None
    assert "hkust-vgd.github.io/scanobjectnn" in report.instructions
    assert "agreement form" in report.instructions
    assert "ShapeNet" not in report.instructions
    everything = check_dataset(tmp_path / "mystery").instructions
    assert everything == download_instructions()
    for needle in (
        "Point-BERT",
        "shapenet_pc",
        "modelnet40_ply_hdf5_2048.zip",
        "modelnet40_shape_names.txt",
        "main_split_nobg/training_objectdataset.h5",
        "train.npz",
    ):
        assert needle in everything


def test_check_dataset_flags_a_stray_label_that_makes_up_numbered_classes(tmp_path):
    labels = np.array([0, 1, 2, 3, 4, 99])  # no class names: 100 classes inferred, 94 of them empty
    report = check_dataset(_write_h5(tmp_path / "stray.h5", _clouds(), labels))
    assert not report.ok and report.facts == ["file: 6 shapes, 6 of 100 classes present, 32 points per shape"]
    assert report.problems == [
        "file labels: only 6 of the 100 classes 0..99 have shapes; without class names the class count is "
        "the largest label + 1, and label 99 (1 shape(s)) may be wrong; fix the labels or put the class "
        "names in a classes.txt beside the file"
    ]
    assert str(report).endswith("NOT OK") and report.instructions == ""  # no download steps
    gaps = check_dataset(_write_h5(tmp_path / "gaps.h5", _clouds(), np.array([0, 1, 1, 3, 4, 4])))
    assert gaps.ok  # 4 of 5 numbered classes present: a small split may miss a few
    (tmp_path / "named").mkdir()
    (tmp_path / "named" / "classes.txt").write_text("a\nb\nc\nd\ne\n")
    named = check_dataset(_write_h5(tmp_path / "named" / "stray.h5", _clouds(), labels))
    assert not named.ok  # named classes: the stray label is refused when opening
    assert named.problems[0].endswith("stray.h5: label 99 (shape 5) is outside [0, 5) for 5 class names")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 2, 0, 1, -1], "label -1 is negative; labels number the classes from 0"),
        ([-3] * NUM_SHAPES, "label -3 is negative; labels number the classes from 0"),
        ([0, 1, 2, 0, 1, 10**8], r"label 100000000 would make 100000001 unnamed classes \(at most 10000\)"),
    ],
    ids=["one-negative", "all-negative", "huge"],
)
def test_check_dataset_refuses_negative_and_huge_unnamed_labels(tmp_path, labels, message):
    path = _write_h5(tmp_path / "bad.h5", _clouds(), np.array(labels, dtype=np.int64))
    report = check_dataset(path)
    assert not report.ok and len(report.problems) == 1
    assert re.fullmatch(f"{re.escape(str(path))}: {message}.*", report.problems[0])


def test_download_instructions_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown data set"):
        download_instructions("imagenet")


# --------------------------------------------------------------------------- memory limit and hostile files

HUGE_SHAPES = 200_000  # x 2,048 points x 3 float32 = 4.6 GiB once read, over the 2 GiB default limit
SMALL_ON_DISK = 64 * 1024
ZEROS_SHAPE = (2048, 1024, 3)  # 24 MiB of float32 zeros, deflated to a few kB
ZEROS_LIMIT_GIB = 0.01


def _npy_header(handle, shape, dtype="<f4") -> None:
    np.lib.format.write_array_header_1_0(handle, {"descr": dtype, "fortran_order": False, "shape": shape})


def _deflated_npz(path: Path, points_shape, *, with_data: bool) -> Path:
    """An .npz whose points member declares ``points_shape``: zeros streamed through deflate, or no data."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("points.npy", "w", force_zip64=True) as member:
            _npy_header(member, points_shape)
            if with_data:
                row = bytes(math.prod(points_shape[1:]) * 4)
                for _ in range(points_shape[0]):
                    member.write(row)
        labels = io.BytesIO()
        np.save(labels, np.zeros(points_shape[0], dtype=np.int64))
        archive.writestr("labels.npy", labels.getvalue())
        archive.writestr("classes.npy", _npy_bytes(np.array(["a"])))
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_h5_small_on_disk_but_huge_when_read_is_refused_before_reading(tmp_path):
    path = tmp_path / "fill_value.h5"
    with h5py.File(path, "w") as f:  # nothing written: every chunk is the fill value
        f.create_dataset("data", shape=(HUGE_SHAPES, 2048, 3), dtype="f4", chunks=(64, 2048, 3),
                         compression="gzip")
        f.create_dataset("label", shape=(HUGE_SHAPES,), dtype="i8", chunks=True, compression="gzip")
    assert path.stat().st_size < SMALL_ON_DISK
    limit = r"4\.58 GiB once read, over the limit of 2 GiB per data set, so nothing was read.*max_gib="
    with pytest.raises(DatasetError, match=limit):
        open_dataset(path)
    report = check_dataset(path)
    assert not report.ok and "over the limit of 2 GiB" in report.problems[0]


def test_npz_that_decompresses_to_many_gib_is_refused_before_reading(tmp_path):
    declared = _deflated_npz(tmp_path / "declared.npz", (HUGE_SHAPES * 10, 2048, 3), with_data=False)
    with pytest.raises(DatasetError, match=r"declared\.npz: its arrays take 45\.8 GiB once read, over the"):
        open_dataset(declared)
    zeros = _deflated_npz(tmp_path / "zeros.npz", ZEROS_SHAPE, with_data=True)
    assert zeros.stat().st_size < SMALL_ON_DISK
    with pytest.raises(DatasetError, match=r"zeros\.npz: its arrays take 24 MiB once read, over the limit of "
                                           r"0\.01 GiB"):
        open_dataset(zeros, max_gib=ZEROS_LIMIT_GIB)
    (tmp_path / "bare.npz").write_bytes(_npy_bytes(_clouds()))  # an .npy renamed: np.load would read it all
    with pytest.raises(DatasetError, match=r"bare\.npz: not a readable \.npz archive.*not a zip file"):
        open_dataset(tmp_path / "bare.npz")


def test_the_limit_is_an_option_of_open_dataset_and_check_dataset(tmp_path):
    path = _write_npz(tmp_path / "small.npz", _clouds(), _labels(), classes=np.array(list("abc")))
    assert len(open_dataset(path, num_points=None)) == NUM_SHAPES
    with pytest.raises(DatasetError, match=r"small\.npz: its arrays take .* MiB once read, over the limit"):
        open_dataset(path, max_gib=1e-6)
    assert check_dataset(path).ok and not check_dataset(path, max_gib=1e-6).ok
    for bad in (0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(DatasetError, match="max_gib must be a positive number of GiB"):
            open_dataset(path, max_gib=bad)


def test_modelnet40_h5_parts_share_one_limit(tmp_path):
    root, _ = _modelnet40_h5_tree(tmp_path / "modelnet40_ply_hdf5_2048")
    one_part = (3 * 40 * 3 * 4 + 3) / GIB  # ply_data_train0.h5: (3, 40, 3) float32 and 3 uint8 labels
    with pytest.raises(DatasetError, match=r"ply_data_train1\.h5: its arrays take"):
        open_dataset(root, num_points=None, max_gib=one_part * 1.5)
    assert len(open_dataset(root, num_points=None, max_gib=one_part * 2)) == 5


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda f: f.update(data=_clouds(), label=np.array([b"chair", b"desk"] * 3)),
         r"'label' must hold integers, got dtype \|S5"),
        (lambda f: f.update(data=_clouds(), label=np.array(["chair", "desk"] * 3, dtype=h5py.string_dtype())),
         "'label' must hold integers, got dtype object"),
        (lambda f: f.update(data=np.array([[[b"x"] * 3] * 4] * 6), label=_labels()),
         r"'data' must hold numbers, got dtype \|S1"),
        (lambda f: (f.create_group("data"), f.update(label=_labels())), "'data' is a Group, not an array"),
        (lambda f: f.update(data=_clouds(), label=np.array([0, 1, 2, 0, 1, 10**9])),
         "label 1000000000 would make 1000000001 unnamed classes"),
        (lambda f: f.update(data=_clouds(0), label=np.zeros(0, dtype=np.int64)), "holds no shapes"),
    ],
    ids=["bytes-labels", "str-labels", "bytes-points", "group", "huge-label", "empty"],
)
def test_hostile_h5_files_raise_dataset_errors(tmp_path, write, message):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        write(f)
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path / "bad.h5", num_points=None)


def test_string_labels_in_a_scanobjectnn_file_and_junk_h5(tmp_path):
    named = tmp_path / "training_objectdataset.h5"
    _write_h5(named, _clouds(), np.array([b"bag", b"bin"] * 3))
    with pytest.raises(DatasetError, match="'label' must hold integers"):
        open_dataset(named)
    (tmp_path / "junk.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DatasetError, match=r"junk\.h5: not a readable HDF5 file"):
        open_dataset(tmp_path / "junk.h5")


def test_npz_string_points_are_a_dataset_error(tmp_path):
    np.savez(tmp_path / "text.npz", points=np.full((6, 4, 3), "1.0"), labels=_labels(),
             classes=np.array(list("abc")))
    with pytest.raises(DatasetError, match="points must be numbers, got dtype <U3"):
        open_dataset(tmp_path / "text.npz", num_points=None)


def test_shapenet_npy_files_are_sized_before_reading(tmp_path):
    root, _ = _shapenet_tree(tmp_path / "ShapeNet55-34")
    with open(root / "shapenet_pc" / "02691156-bbb.npy", "wb") as handle:
        _npy_header(handle, (10**9, 3))  # 11 GiB declared, no data
    (root / "shapenet_pc" / "03001627-ccc.npy").write_text("not an array")
    dataset = open_dataset(root, num_points=None)
    assert dataset[0]["points"].shape == (40, 3)
    with pytest.raises(DatasetError, match=r"02691156-bbb\.npy: its arrays take 11\.2 GiB once read"):
        dataset[1]
    with pytest.raises(DatasetError, match=r"03001627-ccc\.npy: not an \.npy file"):
        dataset[2]
