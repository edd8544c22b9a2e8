"""The 2D targets of pre-training: the teacher maps of every shape, cached per data set, or a live teacher.

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

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from . import dist
from .config import I2PMAEConfig, TrainConfig
from .data import PointCloudDataset

# A child of the training log, so that its messages go where the training run's go.
log = logging.getLogger("i2pmae.train.teacher_cache")

TEACHER_CACHE_VERSION = "1"
TEACHER_CACHE_BATCH = 16  # shapes per teacher pass while building the cache
CHANNELS_LAST_TEACHERS = ("efficientnet-lite0",)  # CNN teachers run in channels-last layout
CACHE_TENSORS = ("features", "saliency", "minimum", "step", "offset", "axes")  # TeacherCache fields saved


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

        tensors = {name: getattr(self, name).contiguous() for name in CACHE_TENSORS}
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
    parts: dict[str, list[Tensor]] = {n: [] for n in CACHE_TENSORS if n != "axes"}  # axes: one for all
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


# --------------------------------------------------------------------------------------------- run targets
def needs_teacher(cfg: I2PMAEConfig) -> bool:
    """Whether the model reads teacher maps (a 2D target or guided masks)."""
    return cfg.target_2d or cfg.masking == "guided"


def teacher_source(model_cfg: I2PMAEConfig, train_cfg: TrainConfig, dataset: PointCloudDataset,
                   run_dir: Path, device: torch.device):
    """What gives a batch its TeacherMaps (:func:`batch_maps`): a cache, a live teacher, or nothing (no 2D
    part)."""
    if not needs_teacher(model_cfg):
        return None
    if train_cfg.teacher_cache:
        cache_dir = Path(train_cfg.cache_dir) if train_cfg.cache_dir else run_dir / "teacher_cache"
        return teacher_cache_for(dataset, model_cfg.teacher, model_cfg, train_cfg, cache_dir, device)
    return _load_teacher(model_cfg.teacher, train_cfg, device)


def batch_maps(source, index: Tensor, canonical: Tensor):
    """TeacherMaps of one batch from a :func:`teacher_source`: the shapes ``index`` (B,) of the data set,
    whose canonical points are ``canonical`` (B, N, 3), on their device; None without a source."""
    if isinstance(source, TeacherCache):
        return source.maps(index, canonical.device)
    if source is None:
        return None
    from .teachers import compute_teacher_maps

    with torch.no_grad():
        return compute_teacher_maps(source, canonical)


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
