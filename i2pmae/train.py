"""Pre-training and fine-tuning drivers: one process or many through ``torchrun`` (DDP), exact resume.

Each driver builds its model and data and says what one step computes and what a save writes; the loop,
the run directory, the log and exact resume are :mod:`i2pmae.engine`'s, the 2D targets of pre-training
(cached or live teacher maps) :mod:`i2pmae.teacher_cache`'s.

**Run directory** (``--out``): the engine's ``config.yaml``, ``log.csv`` and ``train_state.pt``, and the
weights as safetensors checkpoints (``model.safetensors`` after pre-training; ``best.safetensors`` (best on
validation) and ``last.safetensors`` after fine-tuning).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from . import dist, engine
from .checkpoints import load_pretrained_encoder, save_checkpoint
from .config import I2PMAEConfig, TrainConfig
from .data import MAX_GIB, PointCloudDataset, ScaleAndTranslate, open_dataset, split_train_val
from .engine import Generators, Loop, SavePoint
from .model import I2PMAE, PointClassifier
from .teacher_cache import batch_maps, teacher_source

PRETRAINED_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
LOSS_TERMS = ("loss", "loss_3d", "loss_2d")  # PretrainOutput fields logged every step


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    checkpoint: Path
    step: int
    epoch: int
    metrics: dict[str, float]


def _augmenter(train_cfg: TrainConfig):
    return ScaleAndTranslate() if train_cfg.augment else None


# --------------------------------------------------------------------------------------------- pre-training
def pretrain(
    model_cfg: I2PMAEConfig,
    train_cfg: TrainConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    max_gib: float = MAX_GIB,
) -> RunResult:
    """Pre-train an :class:`I2PMAE` on the train split of ``data`` (run layout: see the module docstring).

    Call it in every process of a ``torchrun`` launch (or in a single process). Returns the run's result on
    every rank; only rank 0 writes files. ``max_gib``: the memory limit of :func:`i2pmae.data.open_dataset`.
    """
    document = engine.config_document(model_cfg, train_cfg, os.fspath(data), "pretrain")
    run_dir, device = engine.prepare_run(document, train_cfg, out, resume=resume)
    dataset = open_dataset(data, split="train", num_points=model_cfg.num_points, sampling=train_cfg.sampling,
                           max_gib=max_gib)
    engine.seed_globals(train_cfg.seed, dist.get_rank())
    model = engine.compile_dense(I2PMAE(model_cfg).to(device), train_cfg.compile)
    source = teacher_source(model_cfg, train_cfg, dataset, run_dir, device)
    loop = engine.start_loop(model, train_cfg, run_dir, device, data=dataset, num_items=len(dataset),
                             resume=resume)
    # Every parameter reaches the pre-training loss (test_model's gradient test): DDP need not search for
    # unused ones at every step.
    ddp = engine.wrap_ddp(model, device, find_unused_parameters=False)
    augment = _augmenter(train_cfg)

    def step(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out_ = _pretrain_step(ddp, batch, source, augment, loop.gens, device,
                              teacher_on_augmented=train_cfg.teacher_on_augmented)
        return {k: getattr(out_, k) for k in LOSS_TERMS}

    metrics = engine.run_loop(loop, dataset, step, desc="pretrain", row_every=train_cfg.log_every,
                              save_weights=partial(_save_pretrained, loop, model, dataset, data))
    epoch = loop.step // loop.steps_per_epoch
    return RunResult(run_dir, run_dir / PRETRAINED_FILE, loop.step, epoch, metrics)


def _pretrain_step(model: nn.Module, batch: Mapping[str, Tensor], source, augment, gens: Generators,
                   device: torch.device, *, teacher_on_augmented: bool = False):
    """Forward pass of one batch; returns the model's PretrainOutput."""
    canonical = batch["points"].to(torch.float32)  # (B, N, 3)
    points = augment(canonical, gens.augment) if augment is not None else canonical
    canonical, points = canonical.to(device), points.to(device)
    if teacher_on_augmented:  # the official behaviour: the depth views are made of the augmented points
        canonical = points
    maps = batch_maps(source, batch["index"], canonical)
    return model(points, maps, canonical_points=canonical, generator=gens.mask)


def _save_pretrained(loop: Loop, model: I2PMAE, dataset: PointCloudDataset, data, point: SavePoint) -> None:
    """``model.safetensors`` at every save (rank 0)."""
    if dist.is_main_process():
        save_checkpoint(loop.run_dir / PRETRAINED_FILE, model, metadata={
            "kind": "pretrained", "teacher": model.cfg.teacher, "data": os.fspath(data),
            "classes": dataset.classes, "epoch": loop.step / loop.steps_per_epoch, "step": loop.step,
            "epochs": loop.train_cfg.epochs, "train": loop.train_cfg.to_dict(),
            "world_size": dist.get_world_size(), "wall_s_this_session": round(point.elapsed_s, 1),
        })


# --------------------------------------------------------------------------------------------- fine-tuning
def finetune(
    model_cfg: I2PMAEConfig,
    train_cfg: TrainConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    pretrained: str | os.PathLike | None = None,
    resume: bool = False,
    max_gib: float = MAX_GIB,
) -> RunResult:
    """Fine-tune a :class:`PointClassifier` on the train split of ``data`` (from ``pretrained`` if given).

    A stratified ``val_fraction`` of train (:func:`i2pmae.data.split_train_val`, seeded by ``train.seed``)
    is held out; after each epoch the model is scored on it (with ``votes`` voting passes) and the best
    epoch is saved as ``best.safetensors``. The test split is never looked at here. ``max_gib``: the memory
    limit of :func:`i2pmae.data.open_dataset`.
    """
    document = {**engine.config_document(model_cfg, train_cfg, os.fspath(data), "finetune"),
                "pretrained": os.fspath(pretrained) if pretrained else None}
    run_dir, device = engine.prepare_run(document, train_cfg, out, resume=resume)
    full = open_dataset(data, split="train", num_points=model_cfg.num_points, sampling=train_cfg.sampling,
                        max_gib=max_gib)
    train_idx, val_idx = split_train_val(full.labels, train_cfg.val_fraction, train_cfg.seed)
    train_set, val_set = (torch.utils.data.Subset(full, idx.tolist()) for idx in (train_idx, val_idx))
    engine.seed_globals(train_cfg.seed, dist.get_rank())
    model = PointClassifier(model_cfg, len(full.classes)).to(device)
    if pretrained is not None:
        load_pretrained_encoder(model, pretrained, fresh_final_norm=train_cfg.fresh_final_norm)
    engine.compile_dense(model, train_cfg.compile)
    loop = engine.start_loop(model, train_cfg, run_dir, device, data=full, num_items=len(train_set),
                             resume=resume, extra={"best_val": -1.0, "best_epoch": -1})
    # The LayerNorms of the lower encoder levels feed only the pre-training decoder: no gradient here.
    ddp = engine.wrap_ddp(model, device, find_unused_parameters=True)
    augment = _augmenter(train_cfg)
    criterion = nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
    meta = {"kind": "classifier", "classes": full.classes, "data": os.fspath(data),
            "pretrained": document["pretrained"], "teacher": model_cfg.teacher, "train": train_cfg.to_dict(),
            "val_fraction": train_cfg.val_fraction, "val_shapes": len(val_idx)}

    def step(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        points = batch["points"].to(torch.float32)
        if augment is not None:
            points = augment(points, loop.gens.augment)
        return {"loss": criterion(ddp(points.to(device)), batch["label"].to(device))}

    def evaluate(epoch: int) -> dict[str, float]:
        return {"val_acc": classifier_accuracy(model, val_set, votes=train_cfg.votes, device=device,
                                               seed=train_cfg.seed)}

    metrics = engine.run_loop(loop, train_set, step, desc="finetune", row_every=loop.steps_per_epoch,
                              save_weights=partial(_save_classifier, loop, model, meta), evaluate=evaluate,
                              postfix="val={val_acc:.3f}")
    return RunResult(run_dir, run_dir / BEST_FILE, loop.step, loop.step // loop.steps_per_epoch, metrics)


def _save_classifier(loop: Loop, model: PointClassifier, meta: Mapping, point: SavePoint) -> None:
    """At the end of an epoch (rank 0): ``last.safetensors``, and ``best.safetensors`` when the validation
    accuracy of this epoch's log row beats the best so far (kept in ``loop.extra``, saved with the state)."""
    if not point.epoch_end:
        return  # a save_every step: the engine saves the training state only
    val_acc = point.row["val_acc"]
    improved = val_acc > loop.extra["best_val"]
    if improved:
        loop.extra.update(best_val=val_acc, best_epoch=point.epoch)
    if dist.is_main_process():
        info = {**meta, "epoch": point.epoch, "step": loop.step, "val_acc": val_acc,
                "best_val_acc": loop.extra["best_val"], "best_epoch": loop.extra["best_epoch"]}
        save_checkpoint(loop.run_dir / LAST_FILE, model, metadata=info)
        if improved:
            save_checkpoint(loop.run_dir / BEST_FILE, model, metadata=info)


@torch.no_grad()
def classifier_accuracy(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    votes: int = 1,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> float:
    """Accuracy of a classifier ``(B, N, 3) -> (B, K)`` on ``dataset`` with ``votes``-pass voting.

    Vote passes after the first are scale-and-translate augmentations from a generator seeded by ``seed``
    (deterministic; independent of the training generators).
    """
    from .evaluate import predict_with_voting

    was_training = model.training
    model.eval()
    augment, gen = ScaleAndTranslate(), torch.Generator().manual_seed(seed)
    correct = total = 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        points = batch["points"].to(torch.float32)

        def classify(p: Tensor) -> Tensor:
            return model(p.to(device))

        probs = predict_with_voting(classify, points, votes=votes, augment=augment, generator=gen)
        correct += int((probs.argmax(-1).cpu() == batch["label"]).sum())
        total += len(points)
    model.train(was_training)
    if total == 0:
        raise ValueError("cannot score a classifier on an empty data set")
    return correct / total
