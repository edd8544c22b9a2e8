"""How unlike the training shapes a shape's features are: a novelty score with a threshold from train only.

A classifier trained on ModelNet10 names one of its 10 classes for any shape, an airplane included. The
novelty score tells when that answer should not be trusted: higher = more novel.

- **Scores** (on standardised frozen features, the probe's max-pool feature):
  ``mahalanobis``: the smallest Mahalanobis distance to a class mean under one shared, Ledoit-Wolf-shrunk
  covariance (Lee et al., NeurIPS 2018); ``relative_mahalanobis`` (the default): the smallest squared
  class distance minus the squared distance to one Gaussian of all training features (Ren et al. 2021,
  "A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection"), which discounts directions
  in which every shape varies; ``knn``: the cosine distance to the k-th nearest training feature after L2
  normalisation (Sun et al., ICML 2022).
- **Choosing the score** (:func:`compare_methods`): leave classes out of TRAIN. Each fold fits on the
  shapes of all but ``held_out`` classes and ranks held-out validation shapes of the fitted classes
  (known) against the shapes of the left-out classes (novel); the AUROC is averaged over folds.
- **Threshold** (:func:`fit_novelty`): the model is fitted on train minus a stratified validation split;
  the threshold is the ``quantile`` of the validation shapes' scores, so about ``1 - quantile`` of unseen
  shapes of known classes are called novel. The test split is never read.

The fitted model is shipped beside the checkpoint (:func:`novelty_path`), written by
``i2pmae novelty --checkpoint CKPT --train DATA``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

NOVELTY_FORMAT = "i2pmae-novelty-v1"
NOVELTY_SUFFIX = "_novelty.safetensors"
METHODS = ("relative_mahalanobis", "mahalanobis", "knn")
DEFAULT_METHOD = "relative_mahalanobis"  # best leave-classes-out AUROC on ModelNet10 train (README)
DEFAULT_K = 10
DEFAULT_QUANTILE = 0.95
DEFAULT_VAL_FRACTION = 0.2
HELD_OUT_CLASSES = 2
COMPARE_FOLDS = 5
STD_FLOOR = 1e-6  # features that never vary get this scale, not a division by zero


@dataclass
class NoveltyModel:
    """Everything the score needs, as tensors: standardisation, references and the threshold."""

    method: str
    mean: Tensor  # (C,) standardisation
    scale: Tensor  # (C,)
    references: Tensor  # (K, C) class means (mahalanobis) or unit-norm training features (knn)
    precision: Tensor | None  # (C, C) shared within-class inverse covariance (mahalanobis)
    background: Tensor | None  # (C,) mean of all training features (relative_mahalanobis)
    background_precision: Tensor | None  # (C, C) their inverse covariance (relative_mahalanobis)
    k: int
    threshold: float
    info: dict = field(default_factory=dict)

    def score(self, features: Tensor) -> Tensor:
        """(n, C) features -> (n,) novelty scores, higher = more novel."""
        z = (features.double() - self.mean.double()) / self.scale.double()  # (n, C)
        refs = self.references.double()
        if self.method == "mahalanobis":
            return _squared_distances(z, refs, self.precision).amin(dim=1).clamp(min=0).sqrt()
        if self.method == "relative_mahalanobis":
            to_classes = _squared_distances(z, refs, self.precision).amin(dim=1)  # (n,)
            return to_classes - _squared_distances(z, self.background[None], self.background_precision)[:, 0]
        unit = z / z.norm(dim=1, keepdim=True).clamp(min=STD_FLOOR)  # (n, C)
        distance = 1 - unit @ refs.T  # (n, K) cosine distances
        return distance.topk(min(self.k, refs.shape[0]), dim=1, largest=False).values[:, -1]

    def assess(self, features: Tensor) -> list[dict]:
        """Per shape: ``{"score", "known", "threshold"}`` (the ``/novelty`` answer)."""
        return [{"score": float(s), "known": bool(s <= self.threshold), "threshold": self.threshold}
                for s in self.score(features)]


def _squared_distances(z: Tensor, centres: Tensor, precision: Tensor) -> Tensor:
    """(n, C) points, (K, C) centres, (C, C) precision -> (n, K) squared Mahalanobis distances."""
    diff = z[:, None, :] - centres.double()[None]  # (n, K, C)
    return torch.einsum("nkc,cd,nkd->nk", diff, precision.double(), diff)


def novelty_path(checkpoint: str | os.PathLike) -> Path:
    """Where a checkpoint's novelty model lives: ``<stem>_novelty.safetensors`` beside it."""
    from .checkpoints import beside

    return beside(checkpoint, NOVELTY_SUFFIX)


def fit_scorer(features: np.ndarray, labels: np.ndarray, *, method: str = DEFAULT_METHOD,
               k: int = DEFAULT_K) -> NoveltyModel:
    """Fit a score (threshold left at +inf) on known shapes' features (n, C) and labels (n,)."""
    from sklearn.covariance import LedoitWolf

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels) or len(x) < 2:
        raise ValueError(f"need (n >= 2, C) features with one label each, got {x.shape} and {len(labels)}")
    mean, scale = x.mean(0), np.maximum(x.std(0), STD_FLOOR)
    z = (x - mean) / scale
    precision = background = background_precision = None
    if method == "knn":
        references = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), STD_FLOOR)
    else:
        classes = np.unique(labels)
        references = np.stack([z[labels == c].mean(0) for c in classes])  # (K, C)
        residual = z - references[np.searchsorted(classes, labels)]  # within-class deviations
        precision = torch.from_numpy(LedoitWolf(assume_centered=True).fit(residual).precision_)
    if method == "relative_mahalanobis":
        everything = LedoitWolf().fit(z)
        background = torch.from_numpy(everything.location_)
        background_precision = torch.from_numpy(everything.precision_)
    return NoveltyModel(method=method, mean=torch.from_numpy(mean), scale=torch.from_numpy(scale),
                        references=torch.from_numpy(references), precision=precision, background=background,
                        background_precision=background_precision, k=k, threshold=float("inf"))


def fit_novelty(features: np.ndarray, labels: np.ndarray, *, method: str = DEFAULT_METHOD,
                k: int = DEFAULT_K, val_fraction: float = DEFAULT_VAL_FRACTION,
                quantile: float = DEFAULT_QUANTILE, seed: int = 0) -> NoveltyModel:
    """Fit on train minus a stratified validation split; threshold = ``quantile`` of the validation scores."""
    from .data import split_train_val

    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    fit_idx, val_idx = split_train_val(labels, val_fraction, seed=seed)
    model = fit_scorer(features[fit_idx], labels[fit_idx], method=method, k=k)
    val_scores = model.score(torch.from_numpy(np.asarray(features[val_idx]))).numpy()
    model.threshold = float(np.quantile(val_scores, quantile))
    model.info = {"method": method, "k": k, "quantile": quantile, "val_fraction": val_fraction, "seed": seed,
                  "fitted_shapes": len(fit_idx), "validation_shapes": len(val_idx),
                  "validation_novel_rate": float((val_scores > model.threshold).mean()),
                  "validation_median": float(np.median(val_scores))}
    return model


def auroc(known: np.ndarray, novel: np.ndarray) -> float:
    """Chance that a novel shape scores above a known one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.zeros(len(known)), np.ones(len(novel))]
    return float(roc_auc_score(truth, np.r_[known, novel]))


def compare_methods(features: np.ndarray, labels: np.ndarray, *, candidates: list[tuple[str, int]],
                    held_out: int = HELD_OUT_CLASSES, folds: int = COMPARE_FOLDS,
                    val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> dict[str, dict]:
    """Leave-classes-out AUROC on train for each (method, k): mean and std over ``folds`` class draws."""
    from .data import split_train_val

    classes = np.unique(labels)
    if len(classes) <= held_out:
        raise ValueError(f"need more than {held_out} classes to hold some out, got {len(classes)}")
    rng = np.random.default_rng(seed)
    left_out = [rng.choice(classes, size=held_out, replace=False) for _ in range(folds)]
    results = {}
    for method, k in candidates:
        scores = []
        for fold, novel_classes in enumerate(left_out):
            novel = np.isin(labels, novel_classes)
            known_idx = np.flatnonzero(~novel)
            fit_idx, val_idx = split_train_val(labels[known_idx], val_fraction, seed=seed + fold)
            scorer = fit_scorer(features[known_idx[fit_idx]], labels[known_idx[fit_idx]], method=method, k=k)
            known_scores = scorer.score(torch.from_numpy(features[known_idx[val_idx]])).numpy()
            novel_scores = scorer.score(torch.from_numpy(features[novel])).numpy()
            scores.append(auroc(known_scores, novel_scores))
        name = f"knn k={k}" if method == "knn" else method
        results[name] = {"method": method, "k": k, "auroc_mean": float(np.mean(scores)),
                         "auroc_std": float(np.std(scores)),
                         "held_out_classes": [[int(c) for c in f] for f in left_out]}
    return results


def save_novelty(model: NoveltyModel, path: str | os.PathLike) -> None:
    """Write the model as safetensors (tensors) with the method, k, threshold and fit info as metadata."""
    from .checkpoints import save_safetensors_atomic

    tensors = {"mean": model.mean, "scale": model.scale, "references": model.references}
    for name in ("precision", "background", "background_precision"):
        if getattr(model, name) is not None:
            tensors[name] = getattr(model, name)
    meta = {"format": NOVELTY_FORMAT, "method": model.method, "k": str(model.k),
            "threshold": repr(model.threshold), "info": json.dumps(model.info)}
    save_safetensors_atomic(path, {k: v.contiguous() for k, v in tensors.items()}, meta)


def load_novelty(path: str | os.PathLike) -> NoveltyModel:
    """Read a model written by :func:`save_novelty`; refuses other files and non-finite tensors."""
    from .checkpoints import read_tagged_safetensors, require_finite

    tensors, meta = read_tagged_safetensors(path, NOVELTY_FORMAT, "novelty model")
    require_finite(tensors, path)  # a CheckpointError (a ValueError) naming the tensor
    method, threshold = meta.get("method"), float(meta.get("threshold", "nan"))
    if method not in METHODS or not np.isfinite(threshold):
        raise ValueError(f"{os.fspath(path)}: bad method {method!r} or threshold {threshold!r}")
    return NoveltyModel(method=method, mean=tensors["mean"], scale=tensors["scale"],
                        references=tensors["references"], precision=tensors.get("precision"),
                        background=tensors.get("background"),
                        background_precision=tensors.get("background_precision"), k=int(meta["k"]),
                        threshold=threshold, info=json.loads(meta.get("info", "{}")))
