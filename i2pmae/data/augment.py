"""The augmentations of the paper: scale and translate, rotation about an axis, jitter, composition.

Each is a frozen dataclass called on (N, 3) or (B, N, 3) points with an optional ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .datasets import XYZ

AXES = ("x", "y", "z")


def _as_batch(points: Tensor) -> tuple[Tensor, bool]:
    """(N, 3) or (B, N, 3) -> ((B, N, 3), whether a batch axis was added)."""
    if points.ndim not in (2, 3) or points.shape[-1] != XYZ:
        raise ValueError(f"points must have shape (N, 3) or (B, N, 3), got {tuple(points.shape)}")
    return (points[None], True) if points.ndim == 2 else (points, False)


def _uniform(
    shape: tuple[int, ...], low: float, high: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """U(low, high) of ``shape`` drawn on the generator's device, returned on ``like``'s device/dtype."""
    device = generator.device if generator is not None else like.device
    draw = torch.rand(shape, generator=generator, device=device)
    return (low + (high - low) * draw).to(like)


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    if len(bounds) != 2 or bounds[0] > bounds[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {bounds}")


@dataclass(frozen=True)
class ScaleAndTranslate:
    """Per-sample, per-axis scale s ~ U(scale) then translation t ~ U(translate): p' = p * s + t.

    The paper's pre-training and fine-tuning augmentation (scale U(2/3, 3/2), translation U(-0.2, 0.2)).
    Call on (N, 3) or (B, N, 3) points; an optional torch.Generator makes it reproducible.
    """

    scale: tuple[float, float] = (2.0 / 3.0, 3.0 / 2.0)
    translate: tuple[float, float] = (-0.2, 0.2)

    def __post_init__(self) -> None:
        _check_range("scale", self.scale)
        _check_range("translate", self.translate)
        if self.scale[0] <= 0:
            raise ValueError(f"scale factors must be positive, got {self.scale}")

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        batch, added = _as_batch(points)  # (B, N, 3)
        shape = (batch.shape[0], 1, XYZ)
        out = batch * _uniform(shape, *self.scale, batch, generator) + _uniform(
            shape, *self.translate, batch, generator
        )
        return out[0] if added else out


def rotation_matrices(angles: Tensor, axis: int) -> Tensor:
    """(B,) angles in radians -> (B, 3, 3) right-handed rotations about coordinate ``axis`` (0, 1, 2)."""
    first, second = (axis + 1) % XYZ, (axis + 2) % XYZ  # the rotated plane, in cyclic order
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.zeros(*angles.shape, XYZ, XYZ, dtype=angles.dtype, device=angles.device)  # (B, 3, 3)
    rot[..., axis, axis] = 1.0
    rot[..., first, first], rot[..., first, second] = cos, -sin
    rot[..., second, first], rot[..., second, second] = sin, cos
    return rot


@dataclass(frozen=True)
class RandomRotation:
    """Rotation about one coordinate axis by an angle ~ U(angle_range) per sample.

    ``axis`` is the data set's vertical axis: 'y' for ScanObjectNN, ModelNet40 h5 / resampled and
    ShapeNet; 'z' for the ModelNet10 npz in shared/ (a data set's ``up_axis`` attribute says which).
    """

    axis: str | int
    angle_range: tuple[float, float] = (0.0, 2.0 * math.pi)

    def __post_init__(self) -> None:
        if self.axis not in AXES and self.axis not in range(XYZ):
            raise ValueError(f"axis must be one of {AXES} or 0, 1, 2, got {self.axis!r}")
        _check_range("angle_range", self.angle_range)

    @property
    def axis_index(self) -> int:
        return AXES.index(self.axis) if isinstance(self.axis, str) else int(self.axis)

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        batch, added = _as_batch(points)  # (B, N, 3)
        angles = _uniform((batch.shape[0],), *self.angle_range, batch, generator)  # (B,)
        rot = rotation_matrices(angles, self.axis_index)  # (B, 3, 3)
        out = torch.einsum("bij,bnj->bni", rot, batch)  # (B, N, 3)
        return out[0] if added else out


@dataclass(frozen=True)
class Jitter:
    """Independent Gaussian noise N(0, sigma^2) on every coordinate, clipped to [-clip, clip]."""

    sigma: float = 0.01
    clip: float = 0.05

    def __post_init__(self) -> None:
        if self.sigma < 0 or self.clip < 0:
            raise ValueError(f"sigma and clip must be non-negative, got {self.sigma}, {self.clip}")

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else points.device
        noise = torch.randn(points.shape, generator=generator, device=device).to(points)
        return points + (self.sigma * noise).clamp(-self.clip, self.clip)


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order, passing the same generator to each."""

    transforms: Sequence[Callable[..., Tensor]] = field(default_factory=tuple)

    def __call__(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for transform in self.transforms:
            points = transform(points, generator=generator)
        return points
