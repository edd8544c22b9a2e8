"""Configurations: the model (:class:`I2PMAEConfig`), training (:class:`TrainConfig`), run files and
overrides, and the named model variants (``paper``, ``tiny``) registered like timm's models.

A run file is YAML with ``model:`` and ``train:`` sections; ``key=value`` overrides (the CLI's) edit it.
A variant is a function returning the config's keyword arguments, registered with :func:`register_variant`;
:func:`get_config` merges the caller's overrides into them, ``i2pmae.model.create_model`` builds the model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "I2PMAEConfig",
    "TrainConfig",
    "get_config",
    "list_variants",
    "load_config",
    "load_run_config",
    "register_variant",
]

# Level-0 mini-PointNet widths of the official code: Conv 3->128, BN, ReLU, ->256; max; concat -> 512;
# Conv 512->512, BN, ReLU, ->C_0.
PAPER_POINT_EMBED_WIDTHS = (128, 256, 512)

TEACHER_DIMS = {"efficientnet-lite0": 112, "clip-vit-b16": 512}  # channels of the 14x14 feature map
MASKING_MODES = ("guided", "random")
_INT_TUPLE_FIELDS = (
    "num_centers group_sizes point_embed_widths encoder_dims encoder_depths encoder_heads "
    "decoder_dims decoder_depths decoder_heads"
).split()
_RADIUS_FIELDS = ("local_radius", "classifier_local_radius")
_PER_LEVEL_FIELDS = (
    "group_sizes encoder_dims encoder_depths encoder_heads local_radius classifier_local_radius".split()
)


@dataclass(frozen=True)
class I2PMAEConfig:
    """Everything the paper varies. Defaults are the paper's pre-training model with the CLIP teacher."""

    num_points: int = 2048  # points per cloud fed by the data pipeline
    num_centers: tuple[int, ...] = (512, 256, 64)  # G_s per level, finest first
    group_sizes: tuple[int, ...] = (16, 8, 8)  # K_s per level
    point_embed_widths: tuple[int, ...] = PAPER_POINT_EMBED_WIDTHS  # level-0 mini-PointNet hidden widths
    encoder_dims: tuple[int, ...] = (96, 192, 384)
    encoder_depths: tuple[int, ...] = (5, 5, 5)
    encoder_heads: tuple[int, ...] = (6, 6, 6)
    decoder_dims: tuple[int, ...] = (384, 192)  # stage 0 at the top level, then one stage per finer level
    decoder_depths: tuple[int, ...] = (1, 1)
    decoder_heads: tuple[int, ...] = (6, 6)
    decoder_up_blocks: int = 1  # residual conv blocks after each skip fusion
    local_radius: tuple[float, ...] = (0.0, 0.0, 0.0)  # pre-training: local attention off (0 = off)
    classifier_local_radius: tuple[float, ...] = (0.24, 0.48, 0.96)  # official ModelNet40 fine-tuning
    drop_path: float = 0.1  # max stochastic-depth rate, linspace over all encoder (and decoder) blocks
    mask_ratio: float = 0.8
    masking: str = "guided"  # "guided" (I2P-MAE) or "random" (Point-M2AE)
    temperature: float = 1.0  # tau in softmax(saliency / tau); 1 is the official behaviour, inf = random
    target_2d: bool = True  # 2D-semantic reconstruction of visible tokens (False = Point-M2AE, no head)
    loss_weight_3d: float = 1.0
    loss_weight_2d: float = 1.0
    num_pred_points: int | None = None  # 3D head outputs per token; None = K_h (Point-M2AE: 16)
    teacher: str = "clip-vit-b16"
    teacher_dim: int = 512  # teacher feature channels C
    num_views: int = 3

    def __post_init__(self) -> None:
        for name in (*_INT_TUPLE_FIELDS, *_RADIUS_FIELDS):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in _INT_TUPLE_FIELDS:
            values = getattr(self, name)
            _require(
                all(isinstance(v, int) and v > 0 for v in values), f"{name}: need positive ints, got {values}"
            )
        for name in ("num_points", "decoder_up_blocks", "teacher_dim", "num_views"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and value > 0, f"{name} must be a positive integer, got {value!r}"
            )
        self._check_levels()
        self._check_decoder()
        self._check_objective()

    @property
    def num_levels(self) -> int:
        return len(self.num_centers)

    @property
    def head_level(self) -> int:
        """Level the decoder ends at and the heads predict from (1 in the paper)."""
        return self.num_levels - len(self.decoder_dims)

    @property
    def pred_points(self) -> int:
        return self.num_pred_points or self.group_sizes[self.head_level]

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> I2PMAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown model config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**values)

    def _check_levels(self) -> None:
        levels = self.num_levels
        _require(levels >= 2, f"need at least 2 levels, got num_centers={self.num_centers}")
        for name in _PER_LEVEL_FIELDS:
            _require(
                len(getattr(self, name)) == levels,
                f"{name} needs one entry per level ({levels}), got {getattr(self, name)}",
            )
        _require(
            all(a > b for a, b in zip(self.num_centers, self.num_centers[1:], strict=False)),
            f"num_centers must decrease from the finest level, got {self.num_centers}",
        )
        sources = (self.num_points, *self.num_centers[:-1])  # what each level's centres are sampled from
        for level, (centers, k, source) in enumerate(
            zip(self.num_centers, self.group_sizes, sources, strict=True)
        ):
            _require(
                centers <= source and k <= source,
                f"level {level}: {centers} centres with k={k} neighbours need at most {source} candidates",
            )
        for level, (dim, heads) in enumerate(zip(self.encoder_dims, self.encoder_heads, strict=True)):
            _require(dim % heads == 0, f"encoder level {level}: dim {dim} not divisible by {heads} heads")
        _require(
            len(self.point_embed_widths) == 3,
            f"point_embed_widths needs 3 widths (hidden, mid, hidden2), got {self.point_embed_widths}",
        )
        _require(
            all(r >= 0 for r in self.local_radius + self.classifier_local_radius),
            "local radii must be >= 0 (0 disables local attention)",
        )

    def _check_decoder(self) -> None:
        stages = len(self.decoder_dims)
        _require(
            len(self.decoder_depths) == stages and len(self.decoder_heads) == stages,
            "decoder_dims, decoder_depths and decoder_heads need the same length",
        )
        _require(
            1 <= stages < self.num_levels,
            f"the decoder needs 1 to {self.num_levels - 1} stages (the heads predict the next finer "
            f"level's centres), got {stages}",
        )
        _require(
            self.decoder_dims[0] == self.encoder_dims[-1],
            f"decoder_dims[0] ({self.decoder_dims[0]}) must equal the top encoder dim "
            f"({self.encoder_dims[-1]}): visible top tokens enter the decoder as they are",
        )
        for stage, (dim, heads) in enumerate(zip(self.decoder_dims, self.decoder_heads, strict=True)):
            _require(dim % heads == 0, f"decoder stage {stage}: dim {dim} not divisible by {heads} heads")

    def _check_objective(self) -> None:
        _require(0 < self.mask_ratio < 1, f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        _require(
            int(self.mask_ratio * self.num_centers[-1]) >= 1,
            f"mask_ratio {self.mask_ratio} masks no token of {self.num_centers[-1]}",
        )
        _require(
            self.masking in MASKING_MODES, f"masking must be one of {MASKING_MODES}, got {self.masking!r}"
        )
        _require(self.temperature > 0, f"temperature must be > 0 (inf = uniform), got {self.temperature}")
        _require(0 <= self.drop_path < 1, f"drop_path must be in [0, 1), got {self.drop_path}")
        _require(self.loss_weight_3d >= 0 and self.loss_weight_2d >= 0, "loss weights must be >= 0")
        _require(self.num_pred_points is None or self.num_pred_points > 0, "num_pred_points must be positive")
        known_dim = TEACHER_DIMS.get(self.teacher)
        _require(
            known_dim is None or known_dim == self.teacher_dim,
            f"teacher {self.teacher!r} has {known_dim} feature channels, config says {self.teacher_dim}",
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def load_config(source: str | os.PathLike | Mapping[str, Any], **overrides: Any) -> I2PMAEConfig:
    """Model config from a YAML file or a dict (its ``model:`` section if present), then ``overrides``."""
    if isinstance(source, Mapping):
        document: Any = dict(source)
    else:
        with open(source, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        if not isinstance(document, Mapping):
            raise ValueError(f"{os.fspath(source)}: expected a YAML mapping, got {type(document).__name__}")
    values = dict(document.get("model", document))
    values.update(overrides)
    return I2PMAEConfig.from_dict(values)



@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping (the ``train:`` section of a config file). Paper values by default.

    ``batch_size`` is per process; the effective batch is ``batch_size * world_size``.
    """

    epochs: int = 300
    warmup_epochs: float = 10.0
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (the schedule still follows epochs)
    save_every: int = 0  # also save the training state every this many steps (0 = at epoch ends only)
    log_every: int = 10
    num_workers: int = 0
    sampling: str = "first"  # data sub-sampling (see i2pmae.data)
    augment: bool = True  # scale U(2/3, 3/2) and translate U(-0.2, 0.2) per axis
    teacher_weights: str | None = None  # local weights file of the teacher
    teacher_cache: bool = True
    cache_dir: str | None = None  # default: <out>/teacher_cache
    device: str | None = None  # None: a GPU when visible, else the CPU
    progress: bool = True
    # "fp32", or "bf16": the forward pass under torch.autocast (bfloat16 matmuls; weights, gradients and the
    # optimiser stay float32). fp32 by default: bf16 has not been shown to keep the validation accuracy.
    precision: str = "fp32"
    # a torch.compile backend ("inductor") for the transformer stages and token embeddings, or null (eager).
    # For GPUs: on these CPUs inductor was slower than eager (see the README).
    compile: str | None = None
    # pre-training only: the teacher sees the augmented points, as the official code does (no cache then);
    # by default it sees the canonical ones, so its maps are a function of the shape and can be cached
    teacher_on_augmented: bool = False
    # fine-tuning only
    fresh_final_norm: bool = False  # re-initialise the encoder's top LayerNorm (the official fine-tuning)
    label_smoothing: float = 0.2
    val_fraction: float = 0.1
    votes: int = 1  # test-time voting passes when evaluating a fine-tuned model

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "log_every", "votes")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"train.max_steps must be positive or null, got {self.max_steps}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"train.warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= train.min_lr <= train.lr, got {self.min_lr} and {self.lr}")
        if self.weight_decay < 0 or self.save_every < 0 or self.num_workers < 0:
            raise ValueError("train.weight_decay, save_every and num_workers must be >= 0")
        if self.teacher_on_augmented and self.teacher_cache:
            raise ValueError("train.teacher_on_augmented needs train.teacher_cache: false (the maps of "
                             "augmented points change at every step, so they cannot be cached)")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.compile is not None and self.compile not in _compile_backends():
            raise ValueError(f"train.compile must be null or a torch.compile backend "
                             f"({', '.join(_compile_backends())}), got {self.compile!r}")
        if not 0 <= self.label_smoothing < 1 or not 0 < self.val_fraction < 1:
            raise ValueError("train.label_smoothing must be in [0, 1) and val_fraction in (0, 1)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown train config keys: {', '.join(unknown)} (known: {', '.join(sorted(fields))})"
            )
        return cls(**{k: _as_float(k, v) if fields[k].startswith("float") else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _compile_backends() -> list[str]:
    import torch

    return torch.compiler.list_backends(exclude_tags=())  # with the debugging ones ("aot_eager")


def _as_float(name: str, value: Any) -> Any:
    """Float fields accept ``5e-4`` written in YAML (read as text by YAML 1.1) and integers."""
    if value is None or isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"train.{name} must be a number, got {value!r}") from None


def load_run_config(
    path: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = ()
) -> tuple[I2PMAEConfig, TrainConfig]:
    """Model and train configs from a YAML file (``model:`` and ``train:`` sections) and overrides.

    An override is ``key=value``; the key is ``model.<field>``, ``train.<field>`` or a bare field name
    found in exactly one section;
    the value is parsed as YAML (``lr=5e-4``, ``encoder_dims=[32,64,128]``, ``grad_clip=null``).
    """
    if isinstance(path, Mapping):
        document = dict(path)
    else:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
        if not isinstance(document, Mapping):
            raise ValueError(f"{os.fspath(path)}: expected a YAML mapping with model: and train: sections")
    unknown = sorted(set(document) - {"model", "train"})
    if unknown:
        raise ValueError(f"unknown config sections: {', '.join(unknown)} (expected model: and train:)")
    sections = {"model": dict(document.get("model") or {}), "train": dict(document.get("train") or {})}
    fields = {
        "model": {f.name for f in dataclasses.fields(I2PMAEConfig)},
        "train": {f.name for f in dataclasses.fields(TrainConfig)},
    }
    for item in overrides:
        section, key, value = _parse_override(item, fields)
        sections[section][key] = value
    return load_config(sections["model"]), TrainConfig.from_dict(sections["train"])


def _parse_override(item: str, fields: Mapping[str, set[str]]) -> tuple[str, str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ValueError(f"override {item!r} is not key=value")
    section, dot, name = key.partition(".")
    if dot:
        if section not in fields or name not in fields[section]:
            raise ValueError(f"unknown config key {key!r}")
    else:
        owners = [s for s, names in fields.items() if key in names]
        if len(owners) != 1:
            raise ValueError(f"unknown config key {key!r}" if not owners else
                             f"{key!r} is in both sections: write model.{key} or train.{key}")
        section, name = owners[0], key
    return section, name, _parse_value(raw)


def _parse_value(raw: str) -> Any:
    """YAML value, with numbers in exponent form (``5e-4``, which YAML 1.1 reads as text) as floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# --------------------------------------------------------------------------------------------- variants
_VARIANTS: dict[str, Callable[[], dict[str, Any]]] = {}


def register_variant(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Register a named model variant: ``fn`` returns the :class:`I2PMAEConfig` keyword arguments."""
    if fn.__name__ in _VARIANTS:
        raise ValueError(f"model variant {fn.__name__!r} is already registered")
    _VARIANTS[fn.__name__] = fn
    return fn


def list_variants() -> list[str]:
    """Names of the registered model variants, sorted."""
    return sorted(_VARIANTS)


def get_config(name: str, **overrides: Any) -> I2PMAEConfig:
    """The config of variant ``name`` with ``overrides`` merged in (``dict(variant_args, **overrides)``)."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; registered: {', '.join(list_variants())}")
    return I2PMAEConfig.from_dict({**_VARIANTS[name](), **overrides})


@register_variant
def paper() -> dict[str, Any]:
    """The paper's pre-training model with the CLIP ViT-B/16 teacher (DESIGN.md 1): the field defaults."""
    return {}


@register_variant
def tiny() -> dict[str, Any]:
    """The CPU-sized model of the shipped checkpoint (2.26 M parameters) with the EfficientNet-Lite0 teacher.

    1024 points in 256 / 128 / 32 tokens; the 2D loss weight 0.01 was chosen on a validation split carved
    from ModelNet10 train (``configs/pretrain/tiny.yaml`` explains it).
    """
    return {
        "num_points": 1024,
        "num_centers": (256, 128, 32),
        "point_embed_widths": (32, 32, 64),
        "encoder_dims": (48, 96, 192),
        "encoder_depths": (2, 2, 2),
        "encoder_heads": (3, 3, 3),
        "decoder_dims": (192, 96),
        "decoder_heads": (3, 3),
        "loss_weight_2d": 0.01,
        "teacher": "efficientnet-lite0",
        "teacher_dim": 112,
    }
