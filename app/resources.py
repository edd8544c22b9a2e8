"""Lazily loaded, process-wide resources: teachers and the shipped checkpoint.

Each loader runs once per process (under a lock) and is then shared by every request. What may be
missing on a given machine (CLIP weights, the checkpoint) raises :class:`Unavailable` with a sentence
the page can show as it is.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from torch import nn

from i2pmae.checkpoints import CheckpointError, checkpoint_info, load_checkpoint
from i2pmae.cli.common import DEFAULT_CHECKPOINT
from i2pmae.teachers import Teacher, available_teachers, load_teacher

from .paths import CHECKPOINT_DIR

V = TypeVar("V")
CHECKPOINT_ENV = "I2PMAE_CHECKPOINT"  # a checkpoint file to use instead of the one in checkpoints/
CHECKPOINT_PATTERN = "*.safetensors"
PRETRAINED_CLASS = "I2PMAE"
DEFAULT_TEACHER = "efficientnet-lite0"


class Unavailable(RuntimeError):
    """A resource this machine does not have; the message says which and where it was looked for."""


class InvalidInput(ValueError):
    """A request parameter out of range or inconsistent; the message says which and what is allowed."""


def locked_cache(fn: Callable[..., V]) -> Callable[..., V]:
    """functools.cache whose calls run under a lock of their own: each value is computed once, and a
    slow loader never blocks another one."""
    cached = functools.cache(fn)
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(*args: Hashable) -> V:
        with lock:
            return cached(*args)

    wrapper.cache_clear = cached.cache_clear
    return wrapper


def teacher_status() -> dict[str, str]:
    """Teacher name -> "" when usable here, else the reason it is not (from ``available_teachers``)."""
    return available_teachers()


@locked_cache
def get_teacher(name: str = DEFAULT_TEACHER) -> Teacher:
    """The frozen teacher ``name`` on CPU, loaded once; :class:`Unavailable` if it cannot load here."""
    reason = teacher_status().get(name)
    if reason is None:
        raise Unavailable(f"unknown teacher {name!r}; choose one of {sorted(teacher_status())}")
    if reason:
        raise Unavailable(f"teacher {name!r} is not available: {reason}")
    return load_teacher(name, device="cpu")


def _is_pretrained_model(path: Path) -> bool:
    try:
        return checkpoint_info(path)["model_class"] == PRETRAINED_CLASS
    except CheckpointError:
        return False  # another kind of safetensors file (e.g. a linear probe)


def checkpoint_path() -> Path | None:
    """``$I2PMAE_CHECKPOINT`` if set, else the CLI's default checkpoint, else the first pre-trained model
    (I2PMAE) in checkpoints/ (a Space may ship another one)."""
    override = os.environ.get(CHECKPOINT_ENV)
    if override:
        return Path(override) if Path(override).is_file() else None
    candidates = [DEFAULT_CHECKPOINT, *sorted(CHECKPOINT_DIR.glob(CHECKPOINT_PATTERN))]
    return next((p for p in candidates if p.is_file() and _is_pretrained_model(p)), None)


def missing_checkpoint_message() -> str:
    where = os.environ.get(CHECKPOINT_ENV) or f"{CHECKPOINT_DIR}/{CHECKPOINT_PATTERN}"
    return f"No checkpoint found at {where}: this panel needs the shipped pre-trained model."


@locked_cache
def _load_model(path: Path) -> nn.Module:
    model, _ = load_checkpoint(path, device="cpu")
    return model.eval()


def get_model() -> tuple[Path, nn.Module]:
    """The pre-trained I2PMAE (eval mode, CPU) and its path; :class:`Unavailable` when there is none."""
    path = checkpoint_path()
    if path is None:
        raise Unavailable(missing_checkpoint_message())
    try:
        return path, _load_model(path)
    except (CheckpointError, FileNotFoundError) as err:
        raise Unavailable(f"the checkpoint {path} cannot be loaded: {err}") from err
