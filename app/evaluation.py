"""Classification and few-shot episodes on frozen features of the shipped checkpoint (no Gradio here).

Features are the max-pooled top-level tokens (``I2PMAE.extract_features``) of clouds of the checkpoint's
``num_points`` (1024 for the shipped one, the size of the bundled support shapes). The ModelNet10 classifier
is the linear probe beside the checkpoint (``i2pmae.evaluate.probe_path``, as ``i2pmae classify`` finds it)
when there is one, else a probe fitted once on the bundled support shapes (train split).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from i2pmae.checkpoints import CheckpointError
from i2pmae.data import PointCloudDataset
from i2pmae.evaluate import (
    FEW_SHOT_QUERIES,
    LinearProbe,
    extract_features,
    few_shot_eval,
    fit_linear_probe,
    load_probe,
    probe_path,
)
from i2pmae.novelty import NoveltyModel, fit_novelty, load_novelty, novelty_path

from .resources import InvalidInput, Unavailable, get_model, locked_cache
from .shapes import load_shape
from .support_set import support_set

FEATURE_SEED = 0
MIN_SHOTS = 2  # the probe picks its regularisation by cross-validation, which needs 2 shapes per class
MAX_SHOTS = 10
EMBED_DIMS = 2
UPLOAD_CLASS = re.compile(r"^(?P<name>.*?)[_\-\s]*\d+$")  # "mug_01" -> "mug"


@locked_cache
def _dataset_features(model: nn.Module, dataset: PointCloudDataset) -> np.ndarray:
    """Features (n, C) of every shape of a data set, once per model."""
    features, _ = extract_features(model, dataset, progress=False)
    return features


def support_features() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, C), labels (n,) and class names of the bundled support shapes."""
    _, model = get_model()
    dataset = support_set()
    return _dataset_features(model, dataset), dataset.labels, dataset.classes


@torch.no_grad()
def shape_features(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Features (n, C) of shape files, each read as a cloud of the model's ``num_points`` points."""
    _, model = get_model()
    clouds = np.stack([load_shape(p, model.cfg.num_points, FEATURE_SEED).points for p in paths])  # (n, P, 3)
    return model.extract_features(torch.from_numpy(clouds)).numpy()  # (n, C)


@locked_cache
@torch.no_grad()
def _probe(model: nn.Module, shipped: Path | None, support: PointCloudDataset) -> LinearProbe:
    if shipped is None:
        features, labels, classes = support_features()
        return fit_linear_probe(features, labels, classes)
    try:
        probe = load_probe(shipped)
    except CheckpointError as err:  # NaN / infinite weights: refused with the tensor's name
        raise Unavailable(f"the probe {shipped} cannot be used: {err}") from err
    _check_width(f"the probe {shipped}", probe.weight.shape[1], model, support)
    return probe


@torch.no_grad()
def _check_width(what: str, width: int, model: nn.Module, support: PointCloudDataset) -> None:
    """A shipped file that takes ``width`` features must belong to this checkpoint."""
    given = model.extract_features(support[0]["points"][None]).shape[1]
    if width != given:
        raise Unavailable(f"{what} takes {width} features; the checkpoint gives {given}: they do not belong "
                          "together")


def shipped_probe(checkpoint: Path) -> Path | None:
    """The checkpoint's linear probe file (``i2pmae.evaluate.probe_path``) if it exists."""
    return _if_file(probe_path(checkpoint))


def _if_file(path: Path) -> Path | None:
    return path if path.is_file() else None


def modelnet_probe() -> LinearProbe:
    """The ModelNet10 linear probe of the checkpoint (shipped beside it, or fitted on the support shapes)."""
    path, model = get_model()
    return _probe(model, shipped_probe(path), support_set())


def probe_description() -> str:
    """Where the ModelNet10 probe comes from, in a few words."""
    probe, shipped = modelnet_probe(), shipped_probe(get_model()[0])
    source = (f"shipped probe `{shipped.name}`" if shipped is not None
              else f"fitted on the {len(support_set())} bundled ModelNet10 train shapes")
    cv = probe.info.get("cv_accuracy")
    return source + (f", cross-validated accuracy {100 * cv:.1f} %" if cv is not None else "")


def classify(path: str | os.PathLike) -> dict[str, float]:
    """Class name -> probability for one shape file."""
    return _confidences(torch.from_numpy(shape_features([path])))


def _confidences(features: torch.Tensor) -> dict[str, float]:
    """(1, C) features -> class name -> probability under the ModelNet10 probe."""
    probe = modelnet_probe()
    probabilities = probe.predict_proba(features)[0]  # (K,)
    return {name: float(p) for name, p in zip(probe.classes, probabilities, strict=True)}


@locked_cache
def _novelty(model: nn.Module, shipped: Path | None, support: PointCloudDataset) -> NoveltyModel:
    if shipped is None:
        features, labels, _ = support_features()
        return fit_novelty(features, labels)
    try:
        novelty = load_novelty(shipped)
    except ValueError as err:  # another kind of file, NaN / infinite tensors, a bad threshold
        raise Unavailable(f"the novelty model {shipped} cannot be used: {err}") from err
    _check_width(f"the novelty model {shipped}", novelty.mean.shape[0], model, support)
    return novelty


def shipped_novelty(checkpoint: Path) -> Path | None:
    """The checkpoint's novelty model (``i2pmae.novelty.novelty_path``) if it exists."""
    return _if_file(novelty_path(checkpoint))


def modelnet_novelty() -> NoveltyModel:
    """How unlike the ModelNet10 training shapes a feature is: the model shipped beside the checkpoint, or one
    fitted on the bundled support shapes (threshold from a validation split of them)."""
    path, model = get_model()
    return _novelty(model, shipped_novelty(path), support_set())


def novelty(path: str | os.PathLike) -> dict:
    """``{"score", "known", "threshold"}`` of one shape file (higher score = more novel)."""
    return modelnet_novelty().assess(torch.from_numpy(shape_features([path])))[0]


def classify_with_novelty(path: str | os.PathLike) -> tuple[dict[str, float], dict]:
    """:func:`classify` and :func:`novelty` of one shape file from one pass of the encoder."""
    features = torch.from_numpy(shape_features([path]))  # (1, C)
    return _confidences(features), modelnet_novelty().assess(features)[0]


def upload_class(path: str | os.PathLike) -> str:
    """The class an uploaded support file belongs to, from its name ``<class>_<number>.<ext>``."""
    stem = Path(path).stem
    match = UPLOAD_CLASS.match(stem)
    name = match.group("name") if match else stem
    if not name:
        raise InvalidInput(f"{Path(path).name}: name support files <class>_<number>.<ext>, e.g. mug_1.obj")
    return name


@dataclass
class Episode:
    """One N-way K-shot episode: indices into the support shapes (bundled classes only)."""

    support: np.ndarray  # (N_b * K,)
    query: np.ndarray  # (N_b * Q,)


def draw_episode(labels: np.ndarray, class_ids: Sequence[int], shot: int, seed: int) -> Episode:
    """K support and up to :data:`FEW_SHOT_QUERIES` distinct query shapes per class, seeded."""
    rng = np.random.default_rng(seed)
    support, query = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]  # no bundled class: empty
    for c in class_ids:
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) <= shot:
            raise InvalidInput(f"class {c} has {len(members)} support shapes; {shot} shots leave no query")
        support.append(members[:shot])
        query.append(members[shot:shot + FEW_SHOT_QUERIES])
    return Episode(support=np.concatenate(support), query=np.concatenate(query))


@dataclass
class FewShotResult:
    """An episode's outcome and a 2D picture of its features."""

    classes: list[str]  # the N classes, bundled first, then uploaded
    query_accuracy: float | None  # on the bundled queries; None without any
    protocol: dict | None  # ``few_shot_eval`` over 10 episodes of the bundled classes; None if < 2 of them
    prediction: dict[str, float] | None  # for the current shape
    coords: np.ndarray  # (n, 2) PCA of support + query features
    labels: np.ndarray  # (n,) index into ``classes``
    is_query: np.ndarray  # (n,) bool
    current: np.ndarray | None  # (2,) the current shape in the same PCA


def _check_request(bundled: Sequence[str], uploaded: dict[str, list[str]], shot: int) -> None:
    if not MIN_SHOTS <= shot <= MAX_SHOTS:
        raise InvalidInput(f"shots per class must be in [{MIN_SHOTS}, {MAX_SHOTS}], got {shot}")
    if len(bundled) + len(uploaded) < 2:
        raise InvalidInput("pick at least 2 classes (bundled or uploaded) for an N-way episode")
    small = [name for name, files in uploaded.items() if len(files) < MIN_SHOTS]
    if small:
        raise InvalidInput(f"upload at least {MIN_SHOTS} files per class; too few for: {', '.join(small)}")
    clash = set(bundled) & set(uploaded)
    if clash:
        raise InvalidInput(f"uploaded classes clash with bundled ones: {', '.join(sorted(clash))}")


def group_uploads(paths: Sequence[str | os.PathLike]) -> dict[str, list[str]]:
    """Uploaded files grouped by class name (from the file names), in upload order."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(upload_class(path), []).append(str(path))
    return groups


@dataclass
class _Labelled:
    """Features (n, C) and episode labels (n,)."""

    x: np.ndarray
    y: np.ndarray


def _episode_sets(class_names: Sequence[str], shot: int, seed: int, uploads: Sequence[str | os.PathLike]
                  ) -> tuple[_Labelled, _Labelled, list[str], np.ndarray]:
    """Support and query sets of one episode, the class names, and the chosen bundled class ids."""
    features, labels, all_classes = support_features()
    unknown = [c for c in class_names if c not in all_classes]
    if unknown:
        raise InvalidInput(f"unknown classes {', '.join(unknown)}; bundled ones: {', '.join(all_classes)}")
    uploaded = group_uploads(uploads)
    _check_request(class_names, uploaded, shot)
    ids = np.array([all_classes.index(c) for c in class_names], dtype=np.int64)
    episode = draw_episode(labels, ids, shot, seed)
    to_local = np.full(len(all_classes), -1, dtype=np.int64)
    to_local[ids] = np.arange(len(ids))  # bundled class id -> episode label
    xs, ys = [features[episode.support]], [to_local[labels[episode.support]]]
    for label, files in enumerate(uploaded.values(), start=len(ids)):
        xs.append(shape_features(files))
        ys.append(np.full(len(files), label, dtype=np.int64))
    support = _Labelled(np.concatenate(xs), np.concatenate(ys))
    query = _Labelled(features[episode.query], to_local[labels[episode.query]])
    return support, query, list(class_names) + list(uploaded), ids


def _protocol(ids: np.ndarray, shot: int, seed: int) -> dict | None:
    """``few_shot_eval`` (10 episodes) restricted to the chosen bundled classes, if there are 2 or more;
    as many queries per class as the support shapes allow, at most the protocol's 20."""
    if len(ids) < 2:
        return None
    features, labels, _ = support_features()
    chosen = np.isin(labels, ids)
    queries = min(FEW_SHOT_QUERIES, int(np.bincount(labels[chosen])[ids].min()) - shot)
    return few_shot_eval(features[chosen], labels[chosen], way=len(ids), shot=shot, queries=queries,
                         seed=seed)


def run_few_shot(class_names: Sequence[str], shot: int, seed: int, uploads: Sequence[str | os.PathLike] = (),
                 current: str | os.PathLike | None = None) -> FewShotResult:
    """Fit a linear probe on K shots of each chosen class (+ uploaded classes) and score it on queries."""
    support, query, names, ids = _episode_sets(class_names, int(shot), int(seed), uploads)
    probe = fit_linear_probe(support.x, support.y, names, seed=int(seed))
    accuracy = None
    if len(query.y):
        predicted = probe.predict_proba(torch.from_numpy(query.x)).argmax(-1).numpy()  # (Q,)
        accuracy = float((predicted == query.y).mean())
    x_current = (shape_features([current]) if current is not None
                 else np.zeros((0, support.x.shape[1]), dtype=support.x.dtype))
    prediction = None
    if len(x_current):
        proba = probe.predict_proba(torch.from_numpy(x_current))[0]  # (N,)
        prediction = {n: float(p) for n, p in zip(names, proba, strict=True)}
    coords = PCA(n_components=EMBED_DIMS).fit_transform(np.concatenate([support.x, query.x, x_current]))
    num = len(support.y) + len(query.y)
    return FewShotResult(
        classes=names, query_accuracy=accuracy, protocol=_protocol(ids, int(shot), int(seed)),
        prediction=prediction, coords=coords[:num], labels=np.concatenate([support.y, query.y]),
        is_query=np.arange(num) >= len(support.y), current=coords[num] if len(x_current) else None,
    )
