"""Checkpoints of the 3D network: safetensors weights with the config and metadata in the file's header.

The teacher is never saved (it is not part of any model here). One ``.safetensors`` file holds:

- tensors: the model's ``state_dict`` (CPU, contiguous);
- header metadata (strings): ``format``/``format_version``, ``model_class`` (``I2PMAE`` or
  ``PointClassifier``), ``num_classes`` (classifiers), ``config`` (JSON of
  :class:`~i2pmae.model.I2PMAEConfig`) and ``metadata`` (JSON of whatever the caller passed: teacher name,
  classes, epoch, ...).

Writes are atomic (temporary file in the same folder, then ``os.replace``) through :func:`atomic_write`,
the project's one atomic file writer (training states and the app's meshes use it too). Loads are strict:
any missing, unexpected or mis-shaped key raises :class:`~i2pmae.model.StateDictMismatchError` naming every
key, and a tensor holding NaN or infinite values raises :class:`CheckpointError` naming that tensor
(:func:`require_finite`, one ``isfinite`` pass over the weights; linear probes are checked the same way).

Official I2P-MAE / Point-M2AE ``.pth`` files load through :func:`load_official_state_dict`: the weights are
read with ``torch.load(weights_only=True, map_location="cpu")``, unwrapped (``base_model`` / ``model`` /
``state_dict`` or a bare dict), stripped of ``module.`` and of the CLIP teacher (``clip_model.*``), and mapped
by :data:`OFFICIAL_RENAMES`; our module names equal the official ones otherwise. Readers of our files
(:func:`read_safetensors_header`) recognise a ``.pth`` by its first bytes, never unpickle it, and name the
convert command.
"""

from __future__ import annotations

import json
import math
import os
import stat
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .config import I2PMAEConfig
from .layers import load_state_strict
from .model import I2PMAE, PointClassifier

__all__ = [
    "CheckpointError",
    "OFFICIAL_RENAMES",
    "atomic_write",
    "checkpoint_info",
    "convert_official_checkpoint",
    "load_checkpoint",
    "load_official_checkpoint",
    "load_official_state_dict",
    "load_pretrained_encoder",
    "map_official_state_dict",
    "nonfinite_tensors",
    "read_safetensors_header",
    "require_finite",
    "save_checkpoint",
    "save_safetensors_atomic",
]

FORMAT = "i2pmae"
FORMAT_VERSION = "1"
MODEL_CLASSES: dict[str, type[nn.Module]] = {"I2PMAE": I2PMAE, "PointClassifier": PointClassifier}
OFFICIAL_CONTAINER_KEYS = ("base_model", "model", "state_dict")  # where official runners keep the weights
DDP_PREFIX = "module."
TEACHER_PREFIX = "clip_model."  # the official model saves its CLIP teacher inside every checkpoint
# Official name fragment -> ours: the official wrappers around the decoder's conv blocks, and Point-M2AE's
# single reconstruction head.
OFFICIAL_RENAMES = (
    (".fuse.net.", ".fuse."),
    (".extraction.operation.", ".extraction."),
    ("rec_head.", "rec_head_3d."),
)
ENCODER_PREFIX = "h_encoder."
OFFICIAL_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar")
# First bytes of what torch.save writes: a zip archive (since torch 1.6) or a bare pickle (protocol 2-5).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGICS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
PAPER_CONFIG = "configs/pretrain/paper.yaml"  # the official I2P-MAE model, for the convert command


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this project (or of the official code)."""


def require_finite(
    tensors: Mapping[str, Tensor], source: str | os.PathLike, *, minus_inf_ok: Collection[str] = ()
) -> None:
    """Raise :class:`CheckpointError` naming the first floating-point tensor with a NaN or infinite value.

    One ``isfinite`` pass over each tensor. ``minus_inf_ok`` names tensors in which -inf is a valid
    value (the bias of a linear probe for a class it never predicts).
    """
    for name, tensor in tensors.items():
        bad = _count_nonfinite(tensor, minus_inf_ok=name in minus_inf_ok)
        if bad:
            raise CheckpointError(
                f"{os.fspath(source)}: tensor {name!r} holds {bad} NaN or infinite value(s) out of "
                f"{tensor.numel()}; the weights are damaged (a diverged run or a corrupt file), not used"
            )


def nonfinite_tensors(
    path: str | os.PathLike, *, minus_inf_ok: Collection[str] = ()
) -> dict[str, tuple[int, int]]:
    """Every tensor of a safetensors file holding NaN or infinite values: name -> (bad values, values).

    Unlike :func:`require_finite` it reports them all (``i2pmae checkpoint inspect``); tensors are read
    one at a time, so memory stays at one tensor.
    """
    read_safetensors_header(path)  # a readable error for a file that is not safetensors
    damaged = {}
    with safe_open(os.fspath(path), framework="pt") as handle:
        for name in handle.keys():
            tensor = handle.get_tensor(name)
            bad = _count_nonfinite(tensor, minus_inf_ok=name in minus_inf_ok)
            if bad:
                damaged[name] = (bad, tensor.numel())
    return damaged


def _count_nonfinite(tensor: Tensor, *, minus_inf_ok: bool = False) -> int:
    """NaN and infinite values in ``tensor`` (not -inf with ``minus_inf_ok``); 0 unless floating-point."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    good = torch.isfinite(tensor)
    if minus_inf_ok:
        good |= tensor == -math.inf
    return int(tensor.numel() - good.sum())


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights, config and ``metadata`` (JSON-serialisable) to ``path`` atomically."""
    model_class = type(model).__name__
    if model_class not in MODEL_CLASSES:
        raise TypeError(f"can only save {', '.join(MODEL_CLASSES)} models, got {model_class}")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": model_class,
        "config": json.dumps(model.cfg.to_dict()),
        "metadata": json.dumps(dict(metadata or {})),
    }
    if isinstance(model, PointClassifier):
        header["num_classes"] = str(model.num_classes)
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    return save_safetensors_atomic(path, tensors, header)


def beside(checkpoint: str | os.PathLike, suffix: str) -> Path:
    """A file that belongs to ``checkpoint``: ``<stem><suffix>`` in its folder (probe, novelty model)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + suffix)


def read_tagged_safetensors(path: str | os.PathLike, file_format: str, what: str
                            ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file whose metadata ``format`` is ``file_format``.

    ``what`` names the kind of file in the errors (``FileNotFoundError``, ``ValueError`` for another
    format); no tensor is checked here.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} at {os.fspath(path)}")
    with safe_open(os.fspath(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        if meta.get("format") != file_format:
            raise ValueError(f"{os.fspath(path)} is not an i2pmae {what} ({meta.get('format')!r})")
        return {key: handle.get_tensor(key) for key in handle.keys()}, meta


def save_safetensors_atomic(
    path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write a safetensors file atomically (:func:`atomic_write`); a kill never leaves half a file."""
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Create or replace ``path`` with what ``write(tmp)`` writes to a temporary file beside it.

    The temporary file (``.<name>.<pid>.<thread>.tmp``, in the same folder) is renamed onto ``path`` with
    ``os.replace`` once ``write`` returns, so a kill mid-write never leaves half a file and a concurrent
    reader sees the old file or the new one, never a part. The file gets the mode ``open()`` gives a new
    file under this umask, whatever mode ``write`` leaves (safetensors always leaves 0600). Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        # Read the umask's mode off a file we create, not with os.umask(), which would change the mode
        # process-wide for a moment.
        tmp.touch()
        mode = stat.S_IMODE(tmp.stat().st_mode)
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """Header of one of our checkpoints without building the model.

    Returns a dict with ``model_class``, ``config`` (:class:`I2PMAEConfig`), ``num_classes`` (or None),
    ``metadata`` (dict), ``num_tensors`` and ``num_parameters`` (elements of all stored tensors).
    """
    path = _existing(path)
    header, shapes = read_safetensors_header(path)
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: safetensors file without the {FORMAT!r} header (not saved by this project)"
        )
    num_classes = header.get("num_classes")
    return {
        "model_class": header["model_class"],
        "config": I2PMAEConfig.from_dict(json.loads(header["config"])),
        "num_classes": int(num_classes) if num_classes is not None else None,
        "metadata": json.loads(header["metadata"]),
        "num_tensors": len(shapes),
        "num_parameters": sum(math.prod(shape) for shape in shapes.values()),
    }


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, tensor name -> shape) of a safetensors file, reading its header only.

    Raises :class:`CheckpointError` in one line for anything else: a PyTorch ``.pth`` (recognised by its
    first bytes and never unpickled; the message gives the convert command), an empty, truncated or
    foreign file.
    """
    path = _existing(path)
    kind = _torch_save_kind(path)
    if kind is not None:
        raise CheckpointError(
            f"{path}: a {kind} as torch.save writes (an official .pth?), not a safetensors checkpoint; "
            "it is not opened, since unpickling can run code. An official I2P-MAE / Point-M2AE checkpoint "
            f"converts with: {_convert_command(path)}"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            return handle.metadata() or {}, shapes
    except Exception as err:  # safetensors raises its own error types for corrupt or foreign files
        reason = str(err).removeprefix("Error while deserializing header: ")
        raise CheckpointError(
            f"{path}: not a safetensors checkpoint, or a truncated one ({path.stat().st_size:,} bytes; "
            f"safetensors: {reason})"
        ) from err


def _torch_save_kind(path: Path) -> str | None:
    """``"zip archive"`` or ``"pickle"`` when ``path`` starts like a torch.save file (first bytes only)."""
    with open(path, "rb") as handle:
        start = handle.read(len(ZIP_MAGIC))
    if start == ZIP_MAGIC:
        return "zip archive"
    return "pickle" if start.startswith(PICKLE_MAGICS) else None


def _convert_command(src: Path) -> str:
    """The ``i2pmae checkpoint convert`` command line for an official checkpoint ``src``."""
    dst = src.with_suffix(".safetensors")
    if dst == src:  # a .pth renamed .safetensors: never suggest overwriting the source
        dst = src.with_name(f"{src.stem}_converted.safetensors")
    return f"i2pmae checkpoint convert {src} {dst} --config {PAPER_CONFIG}"


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the saved model (``I2PMAE`` or ``PointClassifier``), in eval mode, with its metadata dict."""
    path = _existing(path)
    if path.suffix in OFFICIAL_SUFFIXES:
        raise CheckpointError(
            f"{path}: looks like an official PyTorch checkpoint; convert it first "
            "(`i2pmae checkpoint convert` or convert_official_checkpoint)"
        )
    info = checkpoint_info(path)
    model_class = MODEL_CLASSES.get(info["model_class"])
    if model_class is None:
        raise CheckpointError(f"{path}: unknown model class {info['model_class']!r}")
    args = (info["num_classes"],) if model_class is PointClassifier else ()
    model = model_class(info["config"], *args)
    load_state_strict(model, _read_tensors(path))
    return model.to(device).eval(), info["metadata"]


def map_official_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """Official ``.pth`` content -> a state dict with our key names (teacher and wrappers removed)."""
    state = _unwrap(checkpoint)
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix(DDP_PREFIX)
        if key.startswith(TEACHER_PREFIX):
            continue
        for official, ours in OFFICIAL_RENAMES:
            key = key.replace(official, ours)
        if key in mapped:
            raise CheckpointError(f"two official keys map to {key!r}")
        mapped[key] = value
    return mapped


def load_official_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read an official I2P-MAE / Point-M2AE ``.pth`` safely and map it to our key names."""
    path = _existing(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle/zip errors of many types
        raise CheckpointError(
            f"{path}: cannot read it as a PyTorch checkpoint with weights_only=True ({err})"
        ) from err
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path}: expected a dict of weights, got {type(checkpoint).__name__}")
    state = map_official_state_dict(checkpoint)
    require_finite(state, path)
    return state


def load_official_checkpoint(path: str | os.PathLike, config: I2PMAEConfig) -> I2PMAE:
    """An :class:`I2PMAE` with the official weights; raises listing every key that does not fit ``config``."""
    model = I2PMAE(config)
    load_state_strict(model, load_official_state_dict(path))
    return model


def convert_official_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: I2PMAEConfig,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Official ``.pth`` -> our safetensors checkpoint (the CLIP teacher is dropped on the way)."""
    model = load_official_checkpoint(src, config)
    info = {"converted_from": os.fspath(src), "teacher": config.teacher, **dict(metadata or {})}
    return save_checkpoint(dst, model, metadata=info)


def load_pretrained_encoder(classifier: PointClassifier, path: str | os.PathLike, *,
                            fresh_final_norm: bool = False) -> dict[str, Any]:
    """Load the ``h_encoder`` weights of a pre-trained checkpoint (ours or official) into ``classifier``
    (``fresh_final_norm``: see :meth:`PointClassifier.load_encoder_state`).

    Returns the checkpoint's metadata (empty for official files).
    """
    path = _existing(path)
    if path.suffix in OFFICIAL_SUFFIXES:
        state, metadata = load_official_state_dict(path), {}
    else:
        info = checkpoint_info(path)
        state, metadata = _read_tensors(path), info["metadata"]
    if not any(key.startswith(ENCODER_PREFIX) for key in state):
        raise CheckpointError(f"{path}: no {ENCODER_PREFIX}* weights in it")
    classifier.load_encoder_state(state, fresh_final_norm=fresh_final_norm)
    return metadata


def _unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Tensor]:
    for key in OFFICIAL_CONTAINER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    not_tensors = sorted(key for key, value in checkpoint.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise CheckpointError(
            f"expected a state dict (or one under {', '.join(OFFICIAL_CONTAINER_KEYS)}); "
            f"non-tensor entries: {', '.join(not_tensors)}"
        )
    return checkpoint


def _read_tensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file, refused if any holds NaN or infinite values."""
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    require_finite(tensors, path)
    return tensors


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path
