"""Downstream evaluation of a pre-trained encoder: frozen features, SVM, few-shot, linear probe, voting.

Protocols (DESIGN.md 1.9), written so that a number can be reproduced from what is recorded next to it:

- **Linear SVM** (:func:`linear_svm_eval`): a linear SVM on the frozen max-pool feature of the top-level
  tokens. C (from a small grid) and whether features are standardised are chosen by stratified k-fold
  cross-validation on the TRAIN features only; the chosen model is refitted on all of train and scored once on
  test. The result records C, the choice of scaling, the CV accuracy and the fold setup.
- **Few-shot** (:func:`few_shot_eval`): N-way K-shot episodes (10 folds, 20 queries per class by default);
  per episode ``way`` classes are drawn, then ``shot + queries`` distinct shapes of each from one split, or
  (the ModelNet40 protocol of Sharma & Kaul 2020) ``shot`` from a support split and ``queries`` from
  another; a linear SVM with a fixed C is fitted on the support set and scored on the queries. Mean and
  standard deviation over the folds; the classes left out for lack of shapes are part of the result.
- **Linear probe** (:func:`fit_linear_probe`): multinomial logistic regression (C chosen by CV on train)
  giving class probabilities; the standardisation is folded into one linear layer so that the shipped
  classifier is just ``softmax(features @ W.T + b)``.
- **Voting** (:func:`predict_with_voting`): class probabilities averaged over N augmented passes of a
  fine-tuned classifier (the mean of the votes, never the best of many runs). For frozen features,
  :func:`extract_features` with ``votes`` > 1 averages the pooled feature over point orders (an option of
  ``svm`` / ``fewshot``; the official SVM protocol has one pass).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SVM_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)  # the official protocol uses C = 0.01
PROBE_C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
CV_FOLDS = 5
FEW_SHOT_C = 0.01  # fixed a priori: K-shot support sets are too small to choose C on
FEW_SHOT_FOLDS = 10
FEW_SHOT_QUERIES = 20
SVM_MAX_ITER = 20_000
PROBE_MAX_ITER = 2_000
FEATURE_BATCH = 64
# Feature votes: each is a full encoder pass, and the orders of one point count take votes x points int64
# (64 x 10,000 points: 5 MiB); past a few dozen the mean feature no longer changes.
MAX_VOTES = 64
PROBE_FORMAT = "i2pmae-linear-probe-v1"
PROBE_SUFFIX = "_probe.safetensors"  # the linear probe of a pre-trained checkpoint lives beside it


# --------------------------------------------------------------------------------------------- features
@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    pool: str = "max",
    batch_size: int = FEATURE_BATCH,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "features",
    votes: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of every shape of a data set, in data-set order.

    Args:
        model: an ``I2PMAE`` (anything with ``extract_features(points, pool=...) -> (B, C)``).
        dataset: items are dicts with ``points`` (N, 3) and ``label``.
        pool: "max" (the SVM feature) or "meanmax".
        votes: passes averaged per shape, 1 to :data:`MAX_VOTES`: pass 0 sees the points in their stored
            order, pass k a random order (``point_orders``). The points are the same, but FPS starts at the
            first point, so each order gives other centres and groups: the mean is a feature less tied to
            one grouping.
        seed: seed of those orders (the same for every batch, so the result does not depend on batching).

    Returns:
        features (num_shapes, C) float32 and labels (num_shapes,) int64.
    """
    from tqdm import tqdm

    check_votes(votes)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    orders_by_count: dict[int, list[Tensor]] = {}  # built once per point count, already on the device
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        points = batch["points"].to(device=device, dtype=torch.float32)  # (B, N, 3)
        count = points.shape[1]
        if count not in orders_by_count:
            orders_by_count[count] = [o.to(device) for o in point_orders(count, votes, seed=seed)]
        total = sum(model.extract_features(points[:, o], pool=pool).float() for o in orders_by_count[count])
        feats.append((total / votes).cpu())  # (B, C)
        labels.append(torch.as_tensor(batch["label"]).long())
    model.train(was_training)
    if not feats:
        raise ValueError("the data set is empty: no features to extract")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def point_orders(num_points: int, votes: int, *, seed: int = 0) -> list[Tensor]:
    """``votes`` index orders of ``num_points`` points: the identity, then ``votes - 1`` seeded shuffles."""
    check_votes(votes)
    generator = torch.Generator().manual_seed(seed)
    shuffles = [torch.randperm(num_points, generator=generator) for _ in range(votes - 1)]
    return [torch.arange(num_points), *shuffles]


def check_votes(votes: int) -> int:
    """``votes`` if it is a number of feature votes from 1 to :data:`MAX_VOTES`; a ValueError otherwise."""
    if not 1 <= votes <= MAX_VOTES:
        raise ValueError(f"votes must be from 1 to {MAX_VOTES} (point orders per shape), got {votes}")
    return votes


# --------------------------------------------------------------------------------------------- linear SVM
def _svm(c: float, standardize: bool, seed: int):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    svc = LinearSVC(C=c, max_iter=SVM_MAX_ITER, random_state=seed)
    return make_pipeline(StandardScaler(), svc) if standardize else svc


def _check_xy(features: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels).astype(np.int64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"{what}: expected features (n, C) and labels (n,), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN or inf")
    return x, y


def _cv_folds(labels: np.ndarray, folds: int) -> int:
    """Folds of a stratified CV: at most the size of the smallest class, at least 2."""
    smallest = int(np.unique(labels, return_counts=True)[1].min())  # not bincount: sized by the largest label
    if smallest < 2:
        raise ValueError("cross-validation needs at least 2 training shapes in every class")
    return min(folds, smallest)


def select_svm(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    c_grid: Sequence[float] = SVM_C_GRID,
    cv_folds: int = CV_FOLDS,
    seed: int = 0,
) -> dict:
    """Choose C and standardisation of a linear SVM by stratified k-fold CV on the given (training) set.

    Returns:
        dict(C, standardize, cv_accuracy, cv_folds, scores) where scores maps "C=...,std=..." to CV accuracy.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, y = _check_xy(features, labels, "svm train")
    folds = _cv_folds(y, cv_folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {}
    for standardize in (False, True):
        for c in c_grid:
            acc = cross_val_score(_svm(c, standardize, seed), x, y, cv=splitter).mean()
            scores[(float(c), standardize)] = float(acc)
    # Ties go to the smaller C and to raw features (the simpler model): the grid is visited in that order.
    (best_c, best_std), best = max(scores.items(), key=lambda kv: kv[1])
    return {
        "C": best_c, "standardize": best_std, "cv_accuracy": best, "cv_folds": folds,
        "scores": {f"C={c:g},std={s}": v for (c, s), v in scores.items()},
    }


def linear_svm_eval(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    c_grid: Sequence[float] = SVM_C_GRID,
    cv_folds: int = CV_FOLDS,
    seed: int = 0,
) -> dict:
    """Linear-SVM accuracy on test with C and scaling chosen by CV on train only.

    Args:
        train_features: (n_train, C); train_labels: (n_train,).
        test_features: (n_test, C); test_labels: (n_test,).

    Returns:
        dict(accuracy, class_accuracy, C, standardize, cv_accuracy, cv_folds, c_grid, scores), accuracies in
        [0, 1]; ``class_accuracy`` is the mean of the per-class accuracies over the classes present in test
        (ModelNet's "mAcc"; it differs from ``accuracy`` when test and train class frequencies differ).
    """
    x_test, y_test = _check_xy(test_features, test_labels, "svm test")
    x_train, y_train = _check_xy(train_features, train_labels, "svm train")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train and test features differ in width: {x_train.shape[1]} vs {x_test.shape[1]}")
    choice = select_svm(x_train, y_train, c_grid=c_grid, cv_folds=cv_folds, seed=seed)
    clf = _svm(choice["C"], choice["standardize"], seed).fit(x_train, y_train)
    predicted = clf.predict(x_test)
    return {"accuracy": float((predicted == y_test).mean()),
            "class_accuracy": mean_class_accuracy(predicted, y_test), **choice,
            "c_grid": [float(c) for c in c_grid]}


def mean_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the fraction of their shapes predicted right."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"expected two equal non-empty (n,) arrays, got {predicted.shape}, {labels.shape}")
    return float(np.mean([(predicted[labels == c] == c).mean() for c in np.unique(labels)]))


# --------------------------------------------------------------------------------------------- few-shot
def few_shot_eval(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    way: int,
    shot: int,
    folds: int = FEW_SHOT_FOLDS,
    queries: int = FEW_SHOT_QUERIES,
    seed: int = 0,
    C: float = FEW_SHOT_C,  # noqa: N803 - the SVM's name for it
    support_features: np.ndarray | None = None,
    support_labels: np.ndarray | None = None,
) -> dict:
    """N-way K-shot accuracy of a linear SVM fitted per episode on frozen features.

    Episode ``f`` draws, with ``numpy.random.default_rng([seed, f])``, ``way`` classes among the eligible
    ones, then for each class its support and query shapes; a linear SVM fitted on the support set is scored
    on the queries.

    - Pooled (no ``support_*``): both come from ``features``. Eligible classes have at least
      ``shot + queries`` shapes; ``shot + queries`` distinct shapes are drawn and the first ``shot`` are the
      support set, so support and queries never overlap.
    - Separate support set (``support_features`` and ``support_labels``, e.g. train while ``features`` is
      test: the ModelNet40 few-shot protocol of Sharma & Kaul 2020): ``shot`` shapes are drawn from the
      support set, then ``queries`` from ``features``. Eligible classes have at least ``shot`` support and
      ``queries`` query shapes.

    Args:
        features: (n, C) query (and, pooled, support) features; labels: (n,).
        support_features: (m, C) features the support set is drawn from; support_labels: (m,).

    Returns:
        dict(mean, std, accs, way, shot, folds, queries, seed, C, pooled, eligible, excluded); accuracies in
        [0, 1], std over the folds (ddof=0). ``eligible`` lists the labels episodes draw from; ``excluded``
        the classes present but short of shapes, as dicts (label, support_shapes, query_shapes), where
        pooled both counts are the class's shapes in the one set.
    """
    query = _check_xy(features, labels, "few-shot")
    support = query if support_features is None and support_labels is None else _check_support(
        support_features, support_labels, query[0].shape[1])
    pooled = support is query
    for name, value in (("way", way), ("shot", shot), ("folds", folds), ("queries", queries)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if way < 2:
        raise ValueError(f"way must be at least 2 (a 1-way episode has nothing to classify), got {way}")
    eligible, excluded = few_shot_classes(support[1], query[1], shot=shot, queries=queries, pooled=pooled)
    if len(eligible) < way:
        need = f">= {shot + queries} shapes" if pooled else f">= {shot} support and >= {queries} query shapes"
        raise ValueError(
            f"{way}-way {shot}-shot with {queries} queries needs {way} classes with {need}; "
            f"this data set has {len(eligible)}"
        )
    accs = [
        _episode(support, query, eligible, (way, shot, queries), np.random.default_rng([seed, fold]), C)
        for fold in range(folds)
    ]
    return {
        "mean": float(np.mean(accs)), "std": float(np.std(accs)), "accs": [float(a) for a in accs],
        "way": int(way), "shot": int(shot), "folds": int(folds), "queries": int(queries), "seed": int(seed),
        "C": float(C), "pooled": pooled, "eligible": [int(c) for c in eligible], "excluded": excluded,
    }


def few_shot_classes(
    support_labels: np.ndarray, query_labels: np.ndarray, *, shot: int, queries: int, pooled: bool = False
) -> tuple[np.ndarray, list[dict]]:
    """Classes :func:`few_shot_eval` can draw: (eligible labels, sorted; excluded classes as dicts of
    label, support_shapes, query_shapes). Pooled, the two label arrays are the same one set."""
    classes = np.union1d(support_labels, query_labels)
    in_support, in_query = _class_counts(support_labels, classes), _class_counts(query_labels, classes)
    ok = in_query >= shot + queries if pooled else (in_support >= shot) & (in_query >= queries)
    excluded = [{"label": int(c), "support_shapes": int(s), "query_shapes": int(q)}
                for c, s, q in zip(classes[~ok], in_support[~ok], in_query[~ok], strict=True)]
    return classes[ok], excluded


def _class_counts(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Shapes of each of ``classes`` (sorted, a superset of the labels) in ``labels``; not bincount, which
    is sized by the largest label."""
    present, counts = np.unique(labels, return_counts=True)
    out = np.zeros(len(classes), dtype=np.int64)
    out[np.searchsorted(classes, present)] = counts
    return out


def _check_support(
    features: np.ndarray | None, labels: np.ndarray | None, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The checked (features, labels) of a separate support set, as wide as the query features."""
    if features is None or labels is None:
        raise ValueError("a separate few-shot support set needs both support_features and support_labels")
    x, y = _check_xy(features, labels, "few-shot support")
    if x.shape[1] != width:
        raise ValueError(f"support and query features differ in width: {x.shape[1]} vs {width}")
    return x, y


def _episode(
    support: tuple[np.ndarray, np.ndarray], query: tuple[np.ndarray, np.ndarray], eligible: np.ndarray,
    sizes: tuple[int, int, int], rng: np.random.Generator, c: float,
) -> float:
    """Accuracy of one episode; pooled (support and queries drawn from one set) when ``support is query``."""
    (xs, ys), (xq, yq) = support, query
    way, shot, queries = sizes
    chosen = rng.choice(eligible, size=way, replace=False)
    picks = [_draw(ys, yq, cls, shot, queries, rng, pooled=support is query) for cls in chosen]
    s, q = np.concatenate([p[0] for p in picks]), np.concatenate([p[1] for p in picks])
    clf = _svm(c, True, 0).fit(xs[s], ys[s])
    return float((clf.predict(xq[q]) == yq[q]).mean())


def _draw(
    ys: np.ndarray, yq: np.ndarray, cls: int, shot: int, queries: int, rng: np.random.Generator, *,
    pooled: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of one class's support shapes (into ``ys``) and queries (into ``yq``)."""
    if pooled:  # one draw from the one set, so support and queries never overlap
        members = rng.choice(np.flatnonzero(yq == cls), size=shot + queries, replace=False)
        return members[:shot], members[shot:]
    return (rng.choice(np.flatnonzero(ys == cls), size=shot, replace=False),
            rng.choice(np.flatnonzero(yq == cls), size=queries, replace=False))


def summarize(values: Sequence[float]) -> dict:
    """Mean and standard deviation (ddof=0) of per-seed results."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": [float(v) for v in arr]}


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, sample standard deviation (ddof=1) and the Student-t ``level`` interval of the mean.

    With n seeds the interval is mean +- t_{(1+level)/2, n-1} * std / sqrt(n); it needs n >= 2.
    """
    from scipy import stats

    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) < 2:
        raise ValueError(f"an interval needs at least 2 values, got {arr.shape}")
    mean, std = float(arr.mean()), float(arr.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, len(arr) - 1) * std / np.sqrt(len(arr)))
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "level": level,
            "n": len(arr), "values": [float(v) for v in arr]}


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """``a - b`` per seed (the same seeds, in order) and :func:`mean_interval` of the differences."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds, got {len(a)} and {len(b)}")
    return mean_interval(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), level)


# --------------------------------------------------------------------------------------------- linear probe
@dataclass
class LinearProbe:
    """A linear classifier on frozen features: probabilities = softmax(features @ weight.T + bias)."""

    weight: Tensor  # (K, C)
    bias: Tensor  # (K,)
    classes: list[str]
    info: dict = field(default_factory=dict)  # how it was fitted (C, CV accuracy, data, pool)

    def __post_init__(self) -> None:
        k, c = self.weight.shape
        if self.bias.shape != (k,) or len(self.classes) != k:
            raise ValueError(
                f"linear probe: weight {tuple(self.weight.shape)}, bias {tuple(self.bias.shape)} and "
                f"{len(self.classes)} class names do not match"
            )

    def predict_proba(self, features: Tensor) -> Tensor:
        """(B, C) features -> (B, K) class probabilities."""
        w = self.weight.to(features)
        return torch.softmax(features @ w.T + self.bias.to(features), dim=-1)  # (B, K)


def fit_linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    c_grid: Sequence[float] = PROBE_C_GRID,
    cv_folds: int = CV_FOLDS,
    seed: int = 0,
) -> LinearProbe:
    """Multinomial logistic regression on standardised features, C chosen by stratified CV on these data.

    The standardisation is folded into the returned weights: W' = W / sigma, b' = b - W' mu.

    Args:
        features: (n, C); labels: (n,) indices into ``classes``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, y = _check_xy(features, labels, "linear probe")
    if y.min() < 0 or y.max() >= len(classes):
        raise ValueError(f"labels must index the {len(classes)} class names, got [{y.min()}, {y.max()}]")
    mu, sigma = x.mean(0), x.std(0)
    sigma = np.where(sigma > 0, sigma, 1.0)
    xs = (x - mu) / sigma
    folds = _cv_folds(y, cv_folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)

    def make(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=PROBE_MAX_ITER)

    scores = {float(c): float(cross_val_score(make(c), xs, y, cv=splitter).mean()) for c in c_grid}
    best_c = max(scores, key=scores.get)
    clf = make(best_c).fit(xs, y)
    coef = np.zeros((len(classes), x.shape[1]))
    intercept = np.full(len(classes), -np.inf)  # classes absent from train are never predicted
    coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
    weight = coef / sigma  # (K, C)
    bias = intercept - weight @ mu  # (K,)
    info = {"C": best_c, "cv_accuracy": scores[best_c], "cv_folds": folds,
            "scores": {f"C={c:g}": v for c, v in scores.items()}, "train_shapes": len(y)}
    return LinearProbe(torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32),
                       [str(c) for c in classes], info)


def probe_path(checkpoint: str | os.PathLike) -> Path:
    """Where the linear probe of a pre-trained checkpoint lives: ``<stem>_probe.safetensors`` beside it.

    The one lookup of the CLI (``classify``, ``probe``) and the app; the file may not exist yet.
    """
    from .checkpoints import beside

    return beside(checkpoint, PROBE_SUFFIX)


def save_probe(probe: LinearProbe, path: str | os.PathLike) -> None:
    """Write the probe as safetensors (``weight``, ``bias``), class names and fit info in its metadata."""
    from .checkpoints import save_safetensors_atomic

    meta = {"format": PROBE_FORMAT, "classes": json.dumps(probe.classes), "info": json.dumps(probe.info)}
    tensors = {"weight": probe.weight.contiguous(), "bias": probe.bias.contiguous()}
    save_safetensors_atomic(path, tensors, meta)


def load_probe(path: str | os.PathLike) -> LinearProbe:
    """Read a probe written by :func:`save_probe`.

    Raises :class:`~i2pmae.checkpoints.CheckpointError` when a weight is NaN or infinite, or a bias is NaN
    or +inf (-inf marks a class the probe never predicts), or when every class has bias -inf.
    """
    from .checkpoints import CheckpointError, read_tagged_safetensors, require_finite

    tensors, meta = read_tagged_safetensors(path, PROBE_FORMAT, "linear probe")
    weight, bias = tensors["weight"], tensors["bias"]
    require_finite({"weight": weight, "bias": bias}, path, minus_inf_ok={"bias"})
    if bias.numel() and bool((bias == -torch.inf).all()):
        raise CheckpointError(f"{os.fspath(path)}: every class has bias -inf, so the probe predicts nothing")
    return LinearProbe(weight, bias, json.loads(meta["classes"]), json.loads(meta["info"]))


def top_k(probabilities: Tensor, classes: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """(K,) probabilities -> the k most likely (class name, probability), most likely first."""
    values, idx = torch.topk(probabilities, min(k, probabilities.numel()))
    return [(classes[int(i)], float(v)) for v, i in zip(values, idx, strict=True)]


# --------------------------------------------------------------------------------------------- voting
@torch.no_grad()
def predict_with_voting(
    classifier: Callable[[Tensor], Tensor],
    points: Tensor,
    *,
    votes: int = 1,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Class probabilities averaged over ``votes`` passes: pass 0 sees the input, the others augmentations.

    Args:
        classifier: (B, N, 3) -> (B, K) logits.
        points: (B, N, 3).
        augment: (points, generator) -> augmented points; required when votes > 1.

    Returns:
        (B, K) mean of the per-pass softmax probabilities.
    """
    if votes < 1:
        raise ValueError(f"votes must be >= 1, got {votes}")
    if votes > 1 and augment is None:
        raise ValueError("voting with more than one pass needs an augmentation")
    total = torch.softmax(classifier(points), dim=-1)  # (B, K)
    for _ in range(votes - 1):
        total = total + torch.softmax(classifier(augment(points, generator)), dim=-1)
    return total / votes

