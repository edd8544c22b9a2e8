"""Pre-training and fine-tuning drivers: one process or many through ``torchrun`` (DDP), exact resume.

**Run directory** (``--out``): ``config.yaml`` (the effective model + train config and the data path),
``log.csv`` (one row per ``log_every`` steps; TensorBoard events too when ``tensorboard`` is installed),
``train_state.pt`` (everything needed to continue: model, optimiser, step, every random generator of every
process; written to a temporary file and renamed, so a kill never leaves half a file), and the weights as
safetensors checkpoints (``model.safetensors`` after pre-training; ``best.safetensors`` (best on
validation) and ``last.safetensors`` after fine-tuning).

**Exact resume.** The schedule is a function of the step only (per-iteration warm-up + cosine). The shapes of
epoch ``e`` come in the order of ``DistributedSampler(seed=seed).set_epoch(e)`` (also with one process);
a resumed run skips the batches already seen in that epoch. Augmentations and masks draw from two
``torch.Generator`` per process, drop-path from torch's global generator; their states, with numpy's and
Python's, are saved for every rank. A run of N steps and a run stopped after k steps and resumed give the
same weights.

**Teacher-target cache.** The 2D teacher only ever sees depth images of the *canonical* (un-augmented)
points, so its outputs are a function of (the canonical points of a shape, the teacher, the projection).
With ``teacher_cache: true`` they are computed once per data set and stored in
``<cache_dir>/teacher-<key>.safetensors``: per shape the feature maps (V, C, h, w) in float16, the saliency
maps (V, h, w) and the projection parameters (per view: minimum, pixel step, offset) that map a canonical
point to its pixel. The key is a SHA-256 of the data set's canonical points array (every shape, in order),
the teacher name (and ``teacher_weights`` path when one is given), the number of views, the image size and
:data:`TEACHER_CACHE_VERSION`. A cache is therefore invalid -- and a new one is built -- when any point
changes (other data, other ``num_points`` or sub-sampling), when the teacher or its weights change, or when
the projection changes (views, image size; a change of the projection code must bump the version). Data
sets whose points are redrawn at every access (``sampling: random``) cannot be cached. At every step the
model receives the augmented points plus the canonical ones (``canonical_points=``), where the cached maps
are read.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from . import dist
from .config import I2PMAEConfig, TrainConfig
from .data import PointCloudDataset, ScaleAndTranslate, open_dataset, split_train_val
from .model import I2PMAE, PointClassifier

log = logging.getLogger("i2pmae.train")

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.csv"
STATE_FILE = "train_state.pt"
PRETRAINED_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
TEACHER_CACHE_VERSION = "1"
TEACHER_CACHE_BATCH = 16  # shapes per teacher pass while building the cache
CHANNELS_LAST_TEACHERS = ("efficientnet-lite0",)  # CNN teachers run in channels-last layout
ADAMW_BETAS = (0.9, 0.999)
LOSS_TERMS = ("loss", "loss_3d", "loss_2d")  # PretrainOutput fields logged every step
SEED_STREAMS = {"augment": 1, "mask": 2, "loader": 3}  # per-process streams (the loader's: + epoch)
RESUME_MUTABLE = ("max_steps", "log_every", "num_workers", "progress", "save_every")  # may change on resume


def _config_document(model_cfg: I2PMAEConfig, train_cfg: TrainConfig, data: str, kind: str) -> dict:
    return {"kind": kind, "data": data, "model": model_cfg.to_dict(), "train": train_cfg.to_dict()}


def _check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], run_dir: Path) -> None:
    """The resumed run must be the same run: same data, model and schedule (RESUME_MUTABLE may change)."""
    def strip(doc: Mapping[str, Any]) -> dict:
        train = {k: v for k, v in doc["train"].items() if k not in RESUME_MUTABLE}
        return {**doc, "train": train}

    a, b = strip(saved), strip(current)
    diffs = [f"{sec}.{k}: {a[sec].get(k)!r} -> {b[sec].get(k)!r}"
             for sec in ("model", "train") for k in sorted(set(a[sec]) | set(b[sec]))
             if a[sec].get(k) != b[sec].get(k)]
    diffs += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in ("kind", "data") if a.get(k) != b.get(k)]
    if diffs:
        joined = "; ".join(diffs)
        raise ValueError(f"cannot resume {run_dir}: the config differs from the saved run: {joined}")


# --------------------------------------------------------------------------------------------- optimisation
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the paper: no decay on biases, 1-D parameters (norms), ``model.no_weight_decay()``."""
    skip = set(getattr(model, "no_weight_decay", set)())
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, *, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine down to ``min_lr``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _adamw(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr, betas=ADAMW_BETAS)


def _set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


# --------------------------------------------------------------------------------------------- randomness
def _stream_seed(seed: int, rank: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(1)[0])


@dataclass
class Generators:
    """The random sources of one process: augmentations (CPU) and masks (the training device)."""

    augment: torch.Generator
    mask: torch.Generator

    @classmethod
    def create(cls, seed: int, rank: int, device: torch.device) -> Generators:
        return cls(
            augment=torch.Generator().manual_seed(_stream_seed(seed, rank, SEED_STREAMS["augment"])),
            mask=torch.Generator(device=device).manual_seed(_stream_seed(seed, rank, SEED_STREAMS["mask"])),
        )


def seed_globals(seed: int, rank: int) -> None:
    """Seed torch's, numpy's and Python's global generators of this process (drop-path uses torch's)."""
    value = _stream_seed(seed, rank, 0)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)  # noqa: NPY002 - the global generator is what third-party code uses
    random.seed(value)


def rng_state(gens: Generators) -> dict[str, Any]:
    """Every generator state of this process, as tensors and plain numbers (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - saved for exact resume
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "augment": gens.augment.get_state(),
        "mask": gens.mask.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], gens: Generators) -> None:
    np_state = state["numpy"]
    torch.set_rng_state(state["torch"])
    keys = np_state["keys"].numpy().astype(np.uint32)
    legacy = (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
    np.random.set_state(legacy)  # noqa: NPY002
    random.setstate(_as_tuple(state["python"]))
    gens.augment.set_state(state["augment"])
    gens.mask.set_state(state["mask"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


# --------------------------------------------------------------------------------------------- training state
def save_state(path: Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no {path.name} in {path.parent}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _gather_rng(gens: Generators) -> list[dict[str, Any]]:
    """Every rank's generator states, on every rank (rank order)."""
    mine = rng_state(gens)
    if not dist.is_distributed():
        return [mine]
    out: list[Any] = [None] * dist.get_world_size()
    torch.distributed.all_gather_object(out, mine)
    return out


# --------------------------------------------------------------------------------------------- data order
def epoch_indices(num_items: int, *, epoch: int, seed: int, batch_size: int) -> list[int]:
    """This process's shape indices for ``epoch``, whole batches only (``DistributedSampler`` order)."""
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(num_items), num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                 shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    return indices[: len(indices) // batch_size * batch_size]


def steps_per_epoch(num_items: int, batch_size: int) -> int:
    steps = num_items // dist.get_world_size() // batch_size
    if steps < 1:
        raise ValueError(
            f"{num_items} shapes are fewer than one batch of {batch_size} per process "
            f"({dist.get_world_size()} processes); lower train.batch_size"
        )
    return steps


def _batches(dataset: torch.utils.data.Dataset, indices: list[int], loop: _Loop,
             epoch: int) -> Iterator[dict]:
    """Batches of ``indices`` in order. The loader gets its own generator (seeded by seed, epoch and rank):
    by default a ``DataLoader`` draws its workers' base seed from torch's global generator, which would make
    a resumed run diverge."""
    cfg = loop.train_cfg
    stream = SEED_STREAMS["loader"] + epoch
    gen = torch.Generator().manual_seed(_stream_seed(cfg.seed, dist.get_rank(), stream))
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True,
                                         num_workers=cfg.num_workers, generator=gen)
    yield from loader


# --------------------------------------------------------------------------------------------- teacher cache
def teacher_cache_key(points: Tensor, teacher: str, num_views: int, image_size: int) -> str:
    """SHA-256 identifying the teacher outputs of ``points`` (S, N, 3): the points, teacher and projection."""
    digest = hashlib.sha256()
    header = {"version": TEACHER_CACHE_VERSION, "teacher": teacher, "num_views": num_views,
              "image_size": image_size, "shape": list(points.shape)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(points.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def canonical_points(dataset: PointCloudDataset) -> Tensor:
    """All shapes' points before augmentation, (S, N, 3); refuses data sets whose points change per access."""
    if dataset.sampling == "random":
        raise ValueError("the teacher cache needs fixed points per shape; use sampling 'first' or 'fps'")
    return torch.stack([dataset.points_at(i) for i in range(len(dataset))])  # (S, N, 3)


@dataclass
class TeacherCache:
    """Teacher outputs of every shape of a data set; :meth:`maps` rebuilds a batch's ``TeacherMaps``."""

    features: Tensor  # (S, V, C, h, w) float16
    saliency: Tensor  # (S, V, h, w)
    minimum: Tensor  # (S, V, 2)
    step: Tensor  # (S, V)
    offset: Tensor  # (S, V, 2) long
    axes: Tensor  # (V, 3) long
    image_size: int
    key: str

    def maps(self, index: Tensor, device: torch.device):
        """TeacherMaps of the shapes ``index`` (B,), on ``device``; features back in float32."""
        from .projection import DepthViews
        from .teachers import TeacherMaps

        idx = index.long().cpu()
        batch, num_views = len(idx), self.axes.shape[0]
        size = self.image_size
        # The cached maps carry no images: the projection parameters are all that back-projection reads.
        placeholder = torch.zeros((), device=device)
        views = DepthViews(
            images=placeholder.expand(batch, num_views, 3, size, size),
            depth=placeholder.expand(batch, num_views, size, size),
            axes=self.axes.to(device), minimum=self.minimum[idx].to(device), step=self.step[idx].to(device),
            offset=self.offset[idx].to(device),
        )
        return TeacherMaps(features=self.features[idx].to(device=device, dtype=torch.float32),
                           saliency=self.saliency[idx].to(device), views=views)

    def save(self, path: Path, metadata: Mapping[str, str]) -> None:
        from .checkpoints import save_safetensors_atomic

        tensors = {name: getattr(self, name).contiguous()
                   for name in ("features", "saliency", "minimum", "step", "offset", "axes")}
        meta = {"key": self.key, "image_size": str(self.image_size), **metadata}
        save_safetensors_atomic(path, tensors, meta)

    @classmethod
    def load(cls, path: Path) -> TeacherCache:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        return cls(**tensors, image_size=int(meta["image_size"]), key=meta["key"])


def build_teacher_cache(teacher, points: Tensor, *, key: str, batch_size: int = TEACHER_CACHE_BATCH,
                        progress: bool = True) -> TeacherCache:
    """Run ``teacher`` on the depth views of every shape of ``points`` (S, N, 3)."""
    from tqdm import tqdm

    from .teachers import compute_teacher_maps

    device = next(teacher.parameters()).device
    parts: dict[str, list[Tensor]] = {n: [] for n in ("features", "saliency", "minimum", "step", "offset")}
    axes, size = None, None
    for start in tqdm(range(0, len(points), batch_size), desc="teacher cache", unit="batch",
                      disable=not progress, leave=False):
        maps = compute_teacher_maps(teacher, points[start:start + batch_size].to(device))
        parts["features"].append(maps.features.to(torch.float16).cpu())
        parts["saliency"].append(maps.saliency.float().cpu())
        for name in ("minimum", "step", "offset"):
            parts[name].append(getattr(maps.views, name).cpu())
        axes, size = maps.views.axes.cpu(), maps.views.image_size
        if maps.views.rotation is not None:
            raise ValueError("the teacher cache does not support rotated views")
    return TeacherCache(**{n: torch.cat(v) for n, v in parts.items()}, axes=axes, image_size=size, key=key)


def teacher_cache_for(dataset: PointCloudDataset, teacher_name: str, model_cfg: I2PMAEConfig,
                      train_cfg: TrainConfig, cache_dir: Path, device: torch.device) -> TeacherCache:
    """Load the data set's teacher cache from ``cache_dir``, building it on rank 0 when missing."""
    from .projection import IMAGE_SIZE

    points = canonical_points(dataset)
    weights = train_cfg.teacher_weights
    identity = teacher_name if weights is None else f"{teacher_name}@{weights}"
    key = teacher_cache_key(points, identity, model_cfg.num_views, IMAGE_SIZE)
    path = cache_dir / f"teacher-{key[:16]}.safetensors"
    if dist.is_main_process() and not path.is_file():
        log.info("building the teacher cache %s (%d shapes)", path, len(points))
        teacher = _load_teacher(teacher_name, train_cfg, device)
        cache = build_teacher_cache(teacher, points, key=key, progress=train_cfg.progress)
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache.save(path, {"teacher": teacher_name, "source": dataset.source, "shapes": str(len(points))})
    dist.barrier()
    cache = TeacherCache.load(path)
    if cache.key != key:
        raise ValueError(f"{path}: the teacher cache belongs to other points/teacher (key {cache.key[:16]})")
    return cache


def _load_teacher(name: str, train_cfg: TrainConfig, device: torch.device):
    from .teachers import load_teacher

    teacher = load_teacher(name, weights_path=train_cfg.teacher_weights, device=device)
    return _channels_last(teacher) if name in CHANNELS_LAST_TEACHERS else teacher


def _channels_last(teacher):
    """The teacher with weights and inputs in channels-last layout: same outputs (to float rounding), and
    1.8x faster for EfficientNet-Lite0's depthwise convolutions on CPU (measured here, 48 images)."""
    from .teachers import Teacher

    class ChannelsLast(Teacher):
        def __init__(self, inner: Teacher) -> None:
            super().__init__(name=inner.name, dim=inner.dim)
            self.inner = inner.to(memory_format=torch.channels_last)
            self.freeze()

        def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
            return self.inner(images.contiguous(memory_format=torch.channels_last))

    return ChannelsLast(teacher)


def needs_teacher(cfg: I2PMAEConfig) -> bool:
    return cfg.target_2d or cfg.masking == "guided"


# --------------------------------------------------------------------------------------------- logging
class RunLog:
    """CSV (and TensorBoard when installed) metrics of rank 0; other ranks write nothing."""

    def __init__(self, run_dir: Path, *, resume_step: int | None) -> None:
        """A fresh log, or (``resume_step`` given) the existing one without rows after that step: a run
        killed after logging past its last saved state logs those steps again when resumed."""
        self.enabled = dist.is_main_process()
        self.path = run_dir / LOG_FILE
        self._fields: list[str] | None = None
        self._tb = None
        if not self.enabled:
            return
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = list(csv.reader(handle))
            self._fields = rows[0] if rows else None
            kept = rows[:1] + [r for r in rows[1:] if float(r[self._fields.index("step")]) <= resume_step]
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerows(kept)
        elif self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: tensorboard is not a dependency
            SummaryWriter = None  # noqa: N806
        if SummaryWriter is not None:
            self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, row: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        if self._fields is None:
            self._fields = list(row)
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(self._fields)
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([_fmt(row.get(k, "")) for k in self._fields])
        if self._tb is not None:
            for key, value in row.items():
                if key != "step":
                    self._tb.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def read_log(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a run's ``log.csv`` as floats."""
    with open(Path(run_dir) / LOG_FILE, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def _setup_logging() -> None:
    if dist.is_main_process() and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


# --------------------------------------------------------------------------------------------- run setup
@dataclass
class RunResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    checkpoint: Path
    step: int
    epoch: int
    metrics: dict[str, float]


def _prepare_run_dir(run_dir: Path, document: Mapping[str, Any], resume: bool) -> None:
    state = run_dir / STATE_FILE
    if resume:
        config = run_dir / CONFIG_FILE
        if not state.is_file() or not config.is_file():
            raise FileNotFoundError(f"nothing to resume in {run_dir}: no {STATE_FILE} / {CONFIG_FILE}")
        with open(config, encoding="utf-8") as handle:
            _check_resumable(yaml.safe_load(handle), document, run_dir)
    elif state.exists():
        raise FileExistsError(f"{run_dir} already holds a run: pass --resume to continue it, or a new --out")
    if dist.is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / CONFIG_FILE, "w", encoding="utf-8") as handle:
            yaml.safe_dump(dict(document), handle, sort_keys=False)
    dist.barrier()


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    if not dist.is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    # Some parameters never reach the loss (e.g. the LayerNorms of encoder levels the decoder or the head
    # does not read), so DDP must look for them at every step instead of waiting for their gradients.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def _augmenter(train_cfg: TrainConfig):
    return ScaleAndTranslate() if train_cfg.augment else None


def _check_finite(loss: Tensor, step: int, run_dir: Path) -> None:
    if not torch.isfinite(loss).item():
        raise FloatingPointError(
            f"non-finite loss ({loss.item()}) at step {step}; stopping. The last good training state is "
            f"{run_dir / STATE_FILE} (if one was saved): lower train.lr or set train.grad_clip"
        )


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor,
                    grad_clip: float | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


@dataclass
class _Loop:
    """Bookkeeping shared by the pre-training and fine-tuning loops."""

    model: nn.Module  # unwrapped
    optimizer: torch.optim.Optimizer
    gens: Generators
    train_cfg: TrainConfig
    run_dir: Path
    steps_per_epoch: int
    num_items: int  # shapes this loop draws batches from
    step: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. the best validation accuracy

    @property
    def total_steps(self) -> int:
        return self.train_cfg.epochs * self.steps_per_epoch

    @property
    def stop_step(self) -> int:
        cap = self.train_cfg.max_steps
        return self.total_steps if cap is None else min(cap, self.total_steps)

    def lr(self) -> float:
        cfg = self.train_cfg
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        return lr_at(self.step, total_steps=self.total_steps, warmup_steps=warmup, lr=cfg.lr,
                     min_lr=cfg.min_lr)

    def save(self) -> None:
        """Training state of every rank (gathered on rank 0), written atomically by rank 0.

        Buffers (BatchNorm statistics) are first set to rank 0's on every rank, as DDP does at the start of
        every forward pass anyway; after that all ranks hold the state that is saved.
        """
        dist.broadcast_buffers(self.model)
        rng = _gather_rng(self.gens)
        if dist.is_main_process():
            save_state(self.run_dir / STATE_FILE, {
                "step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng, "world_size": dist.get_world_size(), "extra": dict(self.extra),
            })
        dist.barrier()

    def restore(self) -> None:
        state = load_state(self.run_dir / STATE_FILE)
        if state["world_size"] != dist.get_world_size():
            raise ValueError(f"the run was saved with {state['world_size']} processes; resume with as many "
                             f"(now {dist.get_world_size()}) to continue it exactly")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"][dist.get_rank()], self.gens)
        self.step, self.extra = int(state["step"]), dict(state["extra"])

    def epochs_from_here(self) -> Iterator[tuple[int, list[int]]]:
        """(epoch, this process's indices not yet seen in that epoch) until ``stop_step``."""
        while self.step < self.stop_step:
            epoch, done = divmod(self.step, self.steps_per_epoch)
            bs = self.train_cfg.batch_size
            indices = epoch_indices(self.num_items, epoch=epoch, seed=self.train_cfg.seed, batch_size=bs)
            yield epoch, indices[done * bs:]


def _progress(loop: _Loop, desc: str):
    from tqdm import tqdm

    return tqdm(total=loop.stop_step, initial=loop.step, desc=desc, unit="step", file=sys.stderr,
                disable=not (loop.train_cfg.progress and dist.is_main_process()), dynamic_ncols=True)


class _Meter:
    """Running means of scalars between two log rows."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def means(self, device: torch.device) -> dict[str, float]:
        out = {k: dist.all_reduce_mean(v / max(self.count, 1), device) for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


# --------------------------------------------------------------------------------------------- pre-training
def pretrain(
    model_cfg: I2PMAEConfig,
    train_cfg: TrainConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    resume: bool = False,
) -> RunResult:
    """Pre-train an :class:`I2PMAE` on the train split of ``data`` (run layout: see the module docstring).

    Call it in every process of a ``torchrun`` launch (or in a single process). Returns the run's result on
    every rank; only rank 0 writes files.
    """
    _setup_logging()
    device = dist.init_distributed(train_cfg.device)
    run_dir = Path(out)
    document = _config_document(model_cfg, train_cfg, os.fspath(data), "pretrain")
    _prepare_run_dir(run_dir, document, resume)
    dataset = open_dataset(data, split="train", num_points=model_cfg.num_points, sampling=train_cfg.sampling)
    seed_globals(train_cfg.seed, dist.get_rank())
    model = I2PMAE(model_cfg).to(device)
    source = _teacher_source(model_cfg, train_cfg, dataset, run_dir, device)
    optimizer = _adamw(model, train_cfg)
    gens = Generators.create(train_cfg.seed, dist.get_rank(), device)
    loop = _Loop(model, optimizer, gens, train_cfg, run_dir,
                 steps_per_epoch(len(dataset), train_cfg.batch_size), len(dataset))
    if resume:
        loop.restore()
    _log_start(loop, model, dataset, device)
    ddp = _wrap_ddp(model, device)
    augment = _augmenter(train_cfg)
    run_log = RunLog(run_dir, resume_step=loop.step if resume else None)
    meter, bar, start = _Meter(), _progress(loop, "pretrain"), time.time()
    metrics: dict[str, float] = {}
    try:
        for epoch, indices in loop.epochs_from_here():
            model.train()
            for batch in _batches(dataset, indices, loop, epoch):
                lr = loop.lr()
                _set_lr(optimizer, lr)
                out_ = _pretrain_step(ddp, batch, source, augment, loop.gens, device)
                _check_finite(out_.loss.detach(), loop.step, run_dir)
                _optimizer_step(model, optimizer, out_.loss, train_cfg.grad_clip)
                loop.step += 1
                meter.add({k: float(getattr(out_, k).detach()) for k in LOSS_TERMS})
                bar.update()
                if loop.step % train_cfg.log_every == 0 or loop.step == loop.stop_step:
                    metrics = {"step": loop.step, "epoch": epoch, "lr": lr, **meter.means(device),
                               "elapsed_s": time.time() - start}
                    run_log.write(metrics)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                end_of_epoch = loop.step % loop.steps_per_epoch == 0
                if end_of_epoch or loop.step == loop.stop_step or _save_due(loop):
                    _save_pretrain(loop, model, dataset, data, epoch, start)
                if loop.step == loop.stop_step:
                    break
    finally:
        bar.close()
        run_log.close()
    epoch = loop.step // loop.steps_per_epoch
    return RunResult(run_dir, run_dir / PRETRAINED_FILE, loop.step, epoch, metrics)


def _save_due(loop: _Loop) -> bool:
    every = loop.train_cfg.save_every
    return every > 0 and loop.step % every == 0


def _teacher_source(model_cfg: I2PMAEConfig, train_cfg: TrainConfig, dataset: PointCloudDataset,
                    run_dir: Path, device: torch.device):
    """What gives a batch its TeacherMaps: a cache, a live teacher, or nothing (no 2D part)."""
    if not needs_teacher(model_cfg):
        return None
    if train_cfg.teacher_cache:
        cache_dir = Path(train_cfg.cache_dir) if train_cfg.cache_dir else run_dir / "teacher_cache"
        return teacher_cache_for(dataset, model_cfg.teacher, model_cfg, train_cfg, cache_dir, device)
    return _load_teacher(model_cfg.teacher, train_cfg, device)


def _pretrain_step(model: nn.Module, batch: Mapping[str, Tensor], source, augment, gens: Generators,
                   device: torch.device):
    """Forward pass of one batch; returns the model's PretrainOutput."""
    canonical = batch["points"].to(torch.float32)  # (B, N, 3)
    points = augment(canonical, gens.augment) if augment is not None else canonical
    canonical, points = canonical.to(device), points.to(device)
    if isinstance(source, TeacherCache):
        maps = source.maps(batch["index"], device)
    elif source is not None:
        from .teachers import compute_teacher_maps

        with torch.no_grad():
            maps = compute_teacher_maps(source, canonical)
    else:
        maps = None
    return model(points, maps, canonical_points=canonical, generator=gens.mask)


def _save_pretrain(loop: _Loop, model: I2PMAE, dataset: PointCloudDataset, data, epoch: int,
                   start: float) -> None:
    from .checkpoints import save_checkpoint

    loop.save()
    if dist.is_main_process():
        save_checkpoint(loop.run_dir / PRETRAINED_FILE, model, metadata={
            "kind": "pretrained", "teacher": model.cfg.teacher, "data": os.fspath(data),
            "classes": dataset.classes, "epoch": loop.step / loop.steps_per_epoch, "step": loop.step,
            "epochs": loop.train_cfg.epochs, "train": loop.train_cfg.to_dict(),
            "world_size": dist.get_world_size(), "wall_s_this_session": round(time.time() - start, 1),
        })
    dist.barrier()


def _log_start(loop: _Loop, model: nn.Module, dataset: PointCloudDataset, device: torch.device) -> None:
    cfg = loop.train_cfg
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s: %d shapes, %d steps/epoch, %d processes x batch %d, %.2fM parameters, device %s, %s",
             dataset.source, len(dataset), loop.steps_per_epoch, dist.get_world_size(), cfg.batch_size,
             params / 1e6, device, f"resuming at step {loop.step}" if loop.step else "from scratch")


# --------------------------------------------------------------------------------------------- fine-tuning
def finetune(
    model_cfg: I2PMAEConfig,
    train_cfg: TrainConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    pretrained: str | os.PathLike | None = None,
    resume: bool = False,
) -> RunResult:
    """Fine-tune a :class:`PointClassifier` on the train split of ``data`` (from ``pretrained`` if given).

    A stratified ``val_fraction`` of train (:func:`i2pmae.data.split_train_val`, seeded by ``train.seed``)
    is held out; after each epoch the model is scored on it (with ``votes`` voting passes) and the best
    epoch is saved as ``best.safetensors``. The test split is never looked at here.
    """
    from .checkpoints import load_pretrained_encoder

    _setup_logging()
    device = dist.init_distributed(train_cfg.device)
    run_dir = Path(out)
    document = _config_document(model_cfg, train_cfg, os.fspath(data), "finetune")
    document["pretrained"] = os.fspath(pretrained) if pretrained else None
    _prepare_run_dir(run_dir, document, resume)
    full = open_dataset(data, split="train", num_points=model_cfg.num_points, sampling=train_cfg.sampling)
    train_idx, val_idx = split_train_val(full.labels, train_cfg.val_fraction, train_cfg.seed)
    train_set = torch.utils.data.Subset(full, train_idx.tolist())
    seed_globals(train_cfg.seed, dist.get_rank())
    model = PointClassifier(model_cfg, len(full.classes)).to(device)
    if pretrained is not None:
        load_pretrained_encoder(model, pretrained)
    optimizer = _adamw(model, train_cfg)
    gens = Generators.create(train_cfg.seed, dist.get_rank(), device)
    loop = _Loop(model, optimizer, gens, train_cfg, run_dir,
                 steps_per_epoch(len(train_set), train_cfg.batch_size), len(train_set),
                 extra={"best_val": -1.0, "best_epoch": -1})
    if resume:
        loop.restore()
    _log_start(loop, model, full, device)
    ddp = _wrap_ddp(model, device)
    augment = _augmenter(train_cfg)
    criterion = nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
    run_log = RunLog(run_dir, resume_step=loop.step if resume else None)
    meter, bar, start = _Meter(), _progress(loop, "finetune"), time.time()
    meta = {"kind": "classifier", "classes": full.classes, "data": os.fspath(data),
            "pretrained": document["pretrained"], "teacher": model_cfg.teacher, "train": train_cfg.to_dict(),
            "val_fraction": train_cfg.val_fraction, "val_shapes": len(val_idx)}
    metrics: dict[str, float] = {}
    try:
        for epoch, indices in loop.epochs_from_here():
            model.train()
            for batch in _batches(train_set, indices, loop, epoch):
                lr = loop.lr()
                _set_lr(optimizer, lr)
                points = batch["points"].to(torch.float32)
                if augment is not None:
                    points = augment(points, loop.gens.augment)
                loss = criterion(ddp(points.to(device)), batch["label"].to(device))
                _check_finite(loss.detach(), loop.step, run_dir)
                _optimizer_step(model, optimizer, loss, train_cfg.grad_clip)
                loop.step += 1
                meter.add({"loss": float(loss.detach())})
                bar.update()
                if loop.step % loop.steps_per_epoch == 0 or loop.step == loop.stop_step:
                    metrics = _finetune_epoch_end(loop, model, full, val_idx, meta, epoch, lr, meter, device,
                                                  start)
                    run_log.write(metrics)
                    bar.set_postfix(val=f"{metrics['val_acc']:.3f}")
                elif _save_due(loop):
                    loop.save()
                if loop.step == loop.stop_step:
                    break
    finally:
        bar.close()
        run_log.close()
    return RunResult(run_dir, run_dir / BEST_FILE, loop.step, loop.step // loop.steps_per_epoch, metrics)


def _finetune_epoch_end(loop: _Loop, model: PointClassifier, full: PointCloudDataset, val_idx: np.ndarray,
                        meta: dict, epoch: int, lr: float, meter: _Meter, device: torch.device,
                        start: float) -> dict[str, float]:
    from .checkpoints import save_checkpoint

    val = torch.utils.data.Subset(full, val_idx.tolist())
    val_acc = classifier_accuracy(model, val, votes=loop.train_cfg.votes, device=device,
                                  seed=loop.train_cfg.seed)
    metrics = {"step": loop.step, "epoch": epoch, "lr": lr, **meter.means(device), "val_acc": val_acc,
               "elapsed_s": time.time() - start}
    improved = val_acc > loop.extra["best_val"]
    if improved:
        loop.extra.update(best_val=val_acc, best_epoch=epoch)
    if dist.is_main_process():
        info = {**meta, "epoch": epoch, "step": loop.step, "val_acc": val_acc,
                "best_val_acc": loop.extra["best_val"], "best_epoch": loop.extra["best_epoch"]}
        save_checkpoint(loop.run_dir / LAST_FILE, model, metadata=info)
        if improved:
            save_checkpoint(loop.run_dir / BEST_FILE, model, metadata=info)
    loop.save()
    return metrics


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
