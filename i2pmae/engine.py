"""The one training loop of pre-training and fine-tuning, and the bookkeeping that makes a run resumable.

:func:`run_loop` is the loop (mae's ``engine_pretrain.train_one_epoch``, over every epoch of a run). At
every step it sets the learning rate of the step, runs the driver's forward pass (``step_fn``: a batch ->
the loss terms, ``loss`` the one optimised), stops on a non-finite loss, steps AdamW (with gradient
clipping) and keeps running means of the loss terms. Every ``row_every`` steps and at the last step it
writes a log row; at the end of every epoch, at the last step and every ``save_every`` steps it lets the
driver save its weights and then saves the training state. The drivers (:mod:`i2pmae.train`) only say what
a step computes, what a log row adds (validation) and which weights files a save writes.

**Files in the run directory** (``--out``): ``config.yaml`` (the effective model + train config and the data
path), ``log.csv`` (one row per ``row_every`` steps; TensorBoard events too when ``tensorboard`` is
installed) and ``train_state.pt`` (everything needed to continue: model, optimiser, step, every random
generator of every process; written to a temporary file and renamed, so a kill never leaves half a file).

**Exact resume.** The schedule is a function of the step only (per-iteration warm-up + cosine). The shapes of
epoch ``e`` come in the order of ``DistributedSampler(seed=seed).set_epoch(e)`` (also with one process);
a resumed run skips the batches already seen in that epoch. Augmentations and masks draw from two
``torch.Generator`` per process, drop-path from torch's global generator; their states, with numpy's and
Python's, are saved for every rank. A run of N steps and a run stopped after k steps and resumed give the
same weights.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from . import dist
from .checkpoints import atomic_write
from .config import I2PMAEConfig, TrainConfig
from .data import PointCloudDataset

log = logging.getLogger("i2pmae.train")

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.csv"
STATE_FILE = "train_state.pt"
ADAMW_BETAS = (0.9, 0.999)
SEED_STREAMS = {"augment": 1, "mask": 2, "loader": 3}  # per-process streams (the loader's: + epoch)
# train: keys a resumed run may change
RESUME_MUTABLE = ("max_steps", "log_every", "num_workers", "progress", "save_every", "compile")

StepFn = Callable[[Mapping[str, Tensor]], Mapping[str, Tensor]]  # batch -> loss terms ("loss" is optimised)


# --------------------------------------------------------------------------------------------- run setup
def config_document(model_cfg: I2PMAEConfig, train_cfg: TrainConfig, data: str, kind: str) -> dict:
    """What ``config.yaml`` holds; a resumed run must match it (but for :data:`RESUME_MUTABLE`)."""
    return {"kind": kind, "data": data, "model": model_cfg.to_dict(), "train": train_cfg.to_dict()}


def prepare_run(document: Mapping[str, Any], train_cfg: TrainConfig, out: str | os.PathLike, *,
                resume: bool) -> tuple[Path, torch.device]:
    """Logging, the process group (when launched by ``torchrun``) and the run directory ``out``, checked
    for resuming (or for not overwriting a run) and holding ``document`` as ``config.yaml``.

    Returns the run directory and this process's device.
    """
    device = dist.init_distributed(train_cfg.device)
    _setup_logging()  # after the process group: only rank 0 logs
    run_dir = Path(out)
    _prepare_run_dir(run_dir, document, resume)
    return run_dir, device


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


def _check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], run_dir: Path) -> None:
    """The resumed run must be the same run: same data, model and schedule (RESUME_MUTABLE may change)."""
    defaults = TrainConfig().to_dict()  # a key added since the run was saved holds its default there

    def strip(doc: Mapping[str, Any]) -> dict:
        train = {k: v for k, v in {**defaults, **doc["train"]}.items() if k not in RESUME_MUTABLE}
        return {**doc, "train": train}

    a, b = strip(saved), strip(current)
    diffs = [f"{sec}.{k}: {a[sec].get(k)!r} -> {b[sec].get(k)!r}"
             for sec in ("model", "train") for k in sorted(set(a[sec]) | set(b[sec]))
             if a[sec].get(k) != b[sec].get(k)]
    diffs += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in ("kind", "data") if a.get(k) != b.get(k)]
    if diffs:
        joined = "; ".join(diffs)
        raise ValueError(f"cannot resume {run_dir}: the config differs from the saved run: {joined}")


def wrap_ddp(model: nn.Module, device: torch.device, *, find_unused_parameters: bool) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when there is a process group, else ``model`` itself.

    ``find_unused_parameters``: whether some parameters may get no gradient (DDP then searches the autograd
    graph at every step instead of waiting for them).
    """
    if not dist.is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def compile_dense(model: nn.Module, backend: str | None) -> nn.Module:
    """Compile in place (``nn.Module.compile``) the modules that do the dense work: the transformer stages
    and the token embeddings. FPS, kNN, masking and the gathers between them stay eager: their loops and
    data-dependent sizes would only break the graphs. The state-dict keys stay as they are. ``None``: eager.
    """
    from .layers import TokenEmbed, TransformerStage

    if backend is not None:
        for module in model.modules():
            if isinstance(module, (TransformerStage, TokenEmbed)):
                module.compile(backend=backend)
    return model


def _setup_logging() -> None:
    if dist.is_main_process() and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


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


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context of a forward pass at ``precision`` (``TrainConfig.precision``): nothing for ``"fp32"``,
    ``torch.autocast`` to bfloat16 on ``device`` for ``"bf16"`` (matmuls and attention in bfloat16; weights,
    gradients, the optimiser and the losses stay float32). Run the backward pass outside it."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


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


def _gather_rng(gens: Generators) -> list[dict[str, Any]]:
    """Every rank's generator states, on every rank (rank order)."""
    mine = rng_state(gens)
    if not dist.is_distributed():
        return [mine]
    out: list[Any] = [None] * dist.get_world_size()
    torch.distributed.all_gather_object(out, mine)
    return out


# --------------------------------------------------------------------------------------------- training state
def save_state(path: Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` through :func:`~i2pmae.checkpoints.atomic_write`: a kill never leaves half a file."""
    atomic_write(path, lambda tmp: torch.save(dict(payload), tmp))


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no {path.name} in {path.parent}")
    return torch.load(path, map_location="cpu", weights_only=True)


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


def _batches(dataset: torch.utils.data.Dataset, indices: list[int], loop: Loop,
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


def _progress(loop: Loop, desc: str):
    from tqdm import tqdm

    return tqdm(total=loop.stop_step, initial=loop.step, desc=desc, unit="step", file=sys.stderr,
                disable=not (loop.train_cfg.progress and dist.is_main_process()), dynamic_ncols=True)


# --------------------------------------------------------------------------------------------- the loop
@dataclass
class Loop:
    """The state of a run's loop (model, optimiser, generators, step) and its schedule."""

    model: nn.Module  # unwrapped
    optimizer: torch.optim.Optimizer
    gens: Generators
    train_cfg: TrainConfig
    run_dir: Path
    steps_per_epoch: int
    num_items: int  # shapes this loop draws batches from
    device: torch.device
    step: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. the best validation accuracy
    resumed: bool = False  # restored from the run directory's training state

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
        self.resumed = True

    def epochs_from_here(self) -> Iterator[tuple[int, list[int]]]:
        """(epoch, this process's indices not yet seen in that epoch) until ``stop_step``."""
        while self.step < self.stop_step:
            epoch, done = divmod(self.step, self.steps_per_epoch)
            bs = self.train_cfg.batch_size
            indices = epoch_indices(self.num_items, epoch=epoch, seed=self.train_cfg.seed, batch_size=bs)
            yield epoch, indices[done * bs:]


def start_loop(model: nn.Module, train_cfg: TrainConfig, run_dir: Path, device: torch.device, *,
               data: PointCloudDataset, num_items: int, resume: bool,
               extra: Mapping[str, Any] | None = None) -> Loop:
    """The loop of ``model`` (unwrapped, on ``device``) over ``num_items`` shapes of ``data`` (all of them,
    or its training split): AdamW, this process's generators and, with ``resume``, the saved state; then
    one log line on where the run starts. ``extra``: the driver's own state, saved with the loop's."""
    loop = Loop(model, _adamw(model, train_cfg), Generators.create(train_cfg.seed, dist.get_rank(), device),
                train_cfg, run_dir, steps_per_epoch(num_items, train_cfg.batch_size), num_items, device,
                extra=dict(extra or {}))
    if resume:
        loop.restore()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("%s: %d shapes, %d steps/epoch, %d processes x batch %d, %.2fM parameters, device %s, %s",
             data.source, len(data), loop.steps_per_epoch, dist.get_world_size(), train_cfg.batch_size,
             params / 1e6, device, f"resuming at step {loop.step}" if loop.step else "from scratch")
    return loop


@dataclass(frozen=True)
class SavePoint:
    """A step at which the loop saves: the driver's weights files first, then the training state."""

    epoch: int
    epoch_end: bool  # the last step of an epoch (or of the run); else a ``save_every`` step
    row: dict[str, float] | None  # the log row written at this step, if any
    elapsed_s: float  # since the loop of this session began


def run_loop(
    loop: Loop,
    dataset: torch.utils.data.Dataset,
    step_fn: StepFn,
    *,
    desc: str,
    row_every: int,
    save_weights: Callable[[SavePoint], None],
    evaluate: Callable[[int], dict[str, float]] | None = None,
    postfix: str = "loss={loss:.4f}",
) -> dict[str, float]:
    """Train ``loop.model`` on ``dataset`` from ``loop.step`` to ``loop.stop_step``.

    Args:
        loop: from :func:`start_loop`.
        dataset: yields dicts of tensors; ``step_fn`` gets batches of them.
        step_fn: batch -> loss terms (scalar tensors); ``loss`` is back-propagated, all are logged (means
            over the steps since the last row).
        desc: progress bar label.
        row_every: a log row every ``row_every`` steps and at the last one.
        save_weights: called at every :class:`SavePoint` (end of an epoch, last step, every ``save_every``
            steps) before the training state is saved; writes the driver's weights files.
        evaluate: epoch -> extra columns of a log row (validation), computed before the row is written.
        postfix: ``str.format`` of a log row shown on the progress bar.

    Returns the last log row written in this session ({} when there was nothing left to train).
    """
    run_log = RunLog(loop.run_dir, resume_step=loop.step if loop.resumed else None)
    meter, bar, start = _Meter(), _progress(loop, desc), time.time()
    last_row: dict[str, float] = {}
    try:
        for epoch, indices in loop.epochs_from_here():
            loop.model.train()
            for batch in _batches(dataset, indices, loop, epoch):
                lr = _train_step(loop, batch, step_fn, meter)
                bar.update()
                last = loop.step == loop.stop_step
                row = None
                if last or loop.step % row_every == 0:
                    columns = evaluate(epoch) if evaluate is not None else {}
                    row = {"step": loop.step, "epoch": epoch, "lr": lr, **meter.means(loop.device), **columns,
                           "elapsed_s": time.time() - start}
                    run_log.write(row)
                    bar.set_postfix_str(postfix.format(**row))
                    last_row = row
                epoch_end = last or loop.step % loop.steps_per_epoch == 0
                if epoch_end or _save_due(loop):
                    save_weights(SavePoint(epoch, epoch_end, row, time.time() - start))
                    loop.save()
                if last:
                    break
    finally:
        bar.close()
        run_log.close()
    return last_row


def _train_step(loop: Loop, batch: Mapping[str, Tensor], step_fn: StepFn, meter: _Meter) -> float:
    """One optimiser step at the schedule's learning rate (returned); adds the loss terms to ``meter``."""
    lr = loop.lr()
    _set_lr(loop.optimizer, lr)
    with autocast(loop.train_cfg.precision, loop.device):
        terms = step_fn(batch)
    _check_finite(terms["loss"].detach(), loop.step, loop.run_dir)
    _optimizer_step(loop.model, loop.optimizer, terms["loss"], loop.train_cfg.grad_clip)
    loop.step += 1
    meter.add({k: float(v.detach()) for k, v in terms.items()})
    return lr


def _save_due(loop: Loop) -> bool:
    every = loop.train_cfg.save_every
    return every > 0 and loop.step % every == 0
