"""Multi-view depth images of point clouds and the way back from 3D points to pixels (DESIGN.md 1.2, 1.4).

A view images the plane of two coordinates (row axis, column axis) and stores the third (depth axis); the
paper uses three: (x, y) -> z, (z, x) -> y, (y, z) -> x. Per sample and view, with S = ``image_size`` and a
splat of k x k pixels (k = ``splat_size``, h = k // 2):

1. ``step = max(range of the two plane coordinates) / (S - k + 2)`` (221 for the paper's S = 224, k = 5),
   ``cell = floor((p - min) / step)``, from 0 to S - k + 2 on the longer plane axis (or one less: in
   float32, 1 / (1 / 221) is 220.99998);
2. every point is splatted onto the k x k block around ``cell + 1``; the bounding box of all splatted pixels
   is shifted so that its centre ``floor((max + min) / 2)`` lands on pixel S / 2 - 1 (111). That box is
   S + 2 wide on the longer axis, so its outer ring is folded back: indices < 0 get +1, > S - 1 get -1;
3. each pixel holds the **sum** of the depth values splatted onto it (0 where empty); images are
   ``sigmoid(depth)``, ImageNet-normalised, the grey value repeated to 3 channels.

The official code computes the cells in float32, and a point on a cell border falls into a different cell
in float64, so we always project in float32 (float64 input is rounded first); outputs are float32.

A point's pixel is ``cell + offset`` (the centre of its splat) with ``offset = S / 2 - centre``:
:class:`DepthViews` keeps ``minimum``, ``step`` and ``offset`` per sample and view, so
:func:`pixel_coords` maps any 3D point, not only the projected ones, to its pixel. :func:`sample_maps`
reads low-resolution maps (the teacher's 14 x 14 features) at those pixels as if they had been upsampled
bicubically to S x S, without building the upsampled maps.

Beyond the paper, ``rotation`` turns the cloud before it is projected (for other viewpoints in the app).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SIZE",
    "PAPER_VIEWS",
    "SPLAT_SIZE",
    "DepthViews",
    "pixel_coords",
    "project",
    "sample_maps",
]

IMAGE_SIZE = 224
SPLAT_SIZE = 5
# (row axis, column axis, depth axis) per view: (x, y) -> z, (z, x) -> y, (y, z) -> x.
PAPER_VIEWS: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (2, 0, 1), (1, 2, 0))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RGB = len(IMAGENET_MEAN)


@dataclass
class DepthViews:
    """Depth images of a batch of clouds and what is needed to find any 3D point's pixel in them."""

    images: Tensor  # (B, V, 3, S, S) sigmoid + ImageNet-normalised, ready for a teacher
    depth: Tensor  # (B, V, S, S) summed depth before the sigmoid, 0 where empty
    axes: Tensor  # (V, 3) long: row, column and depth axis of each view
    minimum: Tensor  # (B, V, 2) float32: minimum of the (row, column) coordinates
    step: Tensor  # (B, V) float32: size of one pixel in cloud units
    offset: Tensor  # (B, V, 2) long: pixel = floor((p - minimum) / step) + offset
    rotation: Tensor | None = None  # (B, 3, 3) float32, applied to the points before the views, or None

    @property
    def image_size(self) -> int:
        """S, the side of the square images."""
        return self.depth.shape[-1]

    @property
    def num_views(self) -> int:
        """V."""
        return self.axes.shape[0]


def project(
    points: Tensor,
    *,
    views: Sequence[Sequence[int]] = PAPER_VIEWS,
    image_size: int = IMAGE_SIZE,
    splat_size: int = SPLAT_SIZE,
    rotation: Tensor | None = None,
) -> DepthViews:
    """Orthographic multi-view depth images of a batch of clouds, the official way (see the module doc).

    Args:
        points: (B, N, 3) clouds, any float dtype; computed in float32 on their device.
        views: V triples (row axis, column axis, depth axis), each a permutation of (0, 1, 2).
        image_size: S, even.
        splat_size: k, odd; each point covers k x k pixels.
        rotation: optional (3, 3) or (B, 3, 3) matrix R; the views then image ``points @ R.T``.

    Returns:
        :class:`DepthViews` with images (B, V, 3, S, S) and depth (B, V, S, S), both float32.
    """
    _check_points(points)
    _check_sizes(image_size, splat_size)
    axes = _view_axes(views, points.device)  # (V, 3)
    rotation = _batch_rotation(rotation, points)
    batch, num_views = points.shape[0], axes.shape[0]
    coords = _view_coords(points, axes, rotation)  # (B, V, N, 3)
    plane, depth = coords[..., :2], coords[..., 2]  # (B, V, N, 2), (B, V, N)
    minimum = plane.amin(dim=2)  # (B, V, 2)
    span = (plane.amax(dim=2) - minimum).amax(dim=-1)  # (B, V)
    # A cloud that is a single pixel in some view has span 0; any step then puts it in cell 0.
    step = torch.where(span > 0, span, torch.ones_like(span)) / (image_size - splat_size + 2)  # (B, V)
    cells = _cells(plane, minimum, step)  # (B, V, N, 2)
    half = splat_size // 2
    low = cells.amin(dim=2) + 1 - half  # (B, V, 2) first splatted pixel, before centring
    high = cells.amax(dim=2) + 1 + half  # (B, V, 2) last splatted pixel
    offset = image_size // 2 - torch.div(low + high, 2, rounding_mode="floor")  # (B, V, 2)
    centres = cells + offset.unsqueeze(2)  # (B, V, N, 2) each point's pixel
    summed = _splat(centres, depth, image_size, half)  # (B, V, S, S)
    std = summed.new_tensor(IMAGENET_STD).view(1, 1, _RGB, 1, 1)
    shift = -summed.new_tensor(IMAGENET_MEAN).view(1, 1, _RGB, 1, 1) / std
    images = torch.addcmul(shift, torch.sigmoid(summed).unsqueeze(2), 1 / std)  # (B, V, 3, S, S)
    assert images.shape == (batch, num_views, _RGB, image_size, image_size)
    return DepthViews(
        images=images, depth=summed, axes=axes, minimum=minimum, step=step, offset=offset, rotation=rotation
    )


def pixel_coords(views: DepthViews, points: Tensor) -> Tensor:
    """(row, column) pixel of each point in each view, by the projection's own float32 arithmetic.

    For the projected points this is the centre of their splat; other points are clamped into the image.

    Args:
        views: the projection of the same B clouds (same frame: the canonical, un-augmented points).
        points: (B, M, 3) any points.

    Returns:
        (B, V, M, 2) long, in [0, S - 1].
    """
    _check_points(points)
    if points.shape[0] != views.minimum.shape[0]:
        raise ValueError(
            f"points hold {points.shape[0]} clouds but the views were made for {views.minimum.shape[0]}"
        )
    plane = _view_coords(points, views.axes, views.rotation)[..., :2]  # (B, V, M, 2)
    size = views.image_size
    cells = _cells(plane, views.minimum, views.step, limit=size)  # (B, V, M, 2)
    return (cells + views.offset.unsqueeze(2)).clamp(0, size - 1)  # (B, V, M, 2)


def sample_maps(maps: Tensor, pixels: Tensor, image_size: int = IMAGE_SIZE) -> Tensor:
    """Values of low-resolution maps upsampled bicubically to S x S, read at some pixels.

    Equals ``F.interpolate(maps, image_size, mode="bicubic", align_corners=False)`` indexed at ``pixels``
    (cubic convolution with a = -0.75, taps clamped at the borders) but only evaluates the M pixels:
    ``grid_sample`` with ``align_corners=False`` at pixel centres ``(2 i + 1) / S - 1`` applies the same
    source index ``(i + 0.5) h / S - 0.5`` and, with border padding, the same clamped taps.

    Args:
        maps: (B, V, C, h, w).
        pixels: (B, V, M, 2) long (row, column) in [0, S - 1], e.g. from :func:`pixel_coords`.
        image_size: S.

    Returns:
        (B, V, M, C) in the dtype of ``maps``.
    """
    if maps.ndim != 5:
        raise ValueError(f"maps must have shape (B, V, C, h, w), got {tuple(maps.shape)}")
    batch, num_views, channels = maps.shape[:3]
    if pixels.ndim != 4 or pixels.shape[:2] != (batch, num_views) or pixels.shape[-1] != 2:
        raise ValueError(
            f"pixels must have shape ({batch}, {num_views}, M, 2) to match maps {tuple(maps.shape)}, "
            f"got {tuple(pixels.shape)}"
        )
    if bool(((pixels < 0) | (pixels >= image_size)).any()):
        raise ValueError(f"pixels must lie in [0, {image_size - 1}]")
    centres = (2 * pixels.to(maps.dtype) + 1) / image_size - 1  # (B, V, M, 2) as (row, column)
    grid = centres.flip(-1).flatten(0, 1).unsqueeze(1)  # (B*V, 1, M, 2) as grid_sample's (x, y)
    sampled = F.grid_sample(
        maps.flatten(0, 1), grid, mode="bicubic", padding_mode="border", align_corners=False
    )  # (B*V, C, 1, M)
    return sampled.view(batch, num_views, channels, -1).transpose(2, 3)  # (B, V, M, C)


def _check_points(points: Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (B, N, 3), got {tuple(points.shape)}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"points must hold at least one non-empty cloud, got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"points must be a floating-point tensor, got {points.dtype}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points contain NaN or infinite coordinates")


def _check_sizes(image_size: int, splat_size: int) -> None:
    if splat_size < 1 or splat_size % 2 == 0:
        raise ValueError(f"splat_size must be a positive odd number, got {splat_size}")
    if image_size % 2 or image_size < splat_size:
        raise ValueError(f"image_size must be even and at least splat_size ({splat_size}), got {image_size}")


def _view_axes(views: Sequence[Sequence[int]], device: torch.device) -> Tensor:
    """Validated (V, 3) long tensor of (row, column, depth) axes."""
    triples = [tuple(int(a) for a in view) for view in views]
    if not triples or any(sorted(t) != [0, 1, 2] for t in triples):
        raise ValueError(f"views must be a non-empty sequence of permutations of (0, 1, 2), got {views!r}")
    return torch.tensor(triples, dtype=torch.long, device=device)


def _batch_rotation(rotation: Tensor | None, points: Tensor) -> Tensor | None:
    """None, or the rotation as (B, 3, 3) float32 on the points' device."""
    if rotation is None:
        return None
    rotation = rotation.to(device=points.device, dtype=torch.float32)
    if rotation.shape == (3, 3):
        rotation = rotation.expand(points.shape[0], 3, 3)
    if rotation.shape != (points.shape[0], 3, 3):
        raise ValueError(
            f"rotation must have shape (3, 3) or ({points.shape[0]}, 3, 3), got {tuple(rotation.shape)}"
        )
    return rotation


def _view_coords(points: Tensor, axes: Tensor, rotation: Tensor | None) -> Tensor:
    """(B, N, 3) -> (B, V, N, 3) float32 (row, column, depth) coordinates of every view.

    The rotation is an elementwise product and sum, not a matmul, so that it stays exact for permutations
    and never runs in reduced (TF32) precision.
    """
    xyz = points.to(torch.float32)
    if rotation is not None:
        xyz = (xyz.unsqueeze(2) * rotation.unsqueeze(1)).sum(-1)  # (B, N, 3) = xyz @ R.T
    return xyz[:, :, axes].permute(0, 2, 1, 3)  # (B, N, V, 3) -> (B, V, N, 3)


def _cells(plane: Tensor, minimum: Tensor, step: Tensor, limit: int | None = None) -> Tensor:
    """floor((p - minimum) / step) in float32, as long. (B, V, M, 2) -> (B, V, M, 2).

    ``limit`` bounds far-away points to [-limit, 2 limit] before the cast, so nothing overflows.
    """
    cells = torch.floor((plane - minimum.unsqueeze(2)) / step[..., None, None])  # (B, V, M, 2)
    if limit is not None:
        cells = cells.clamp(-limit, 2 * limit)
    return cells.long()


def _splat(centres: Tensor, depth: Tensor, image_size: int, half: int) -> Tensor:
    """Sum each point's depth over the (2 half + 1)^2 block around its pixel, the outer ring folded in.

    (B, V, N, 2), (B, V, N) -> (B, V, S, S). Scattering the depths once to the centres and then summing
    sliding windows along rows and columns (a separable box filter) equals scattering every splat pixel.
    The centres lie in [half - 1, S - half] by construction, so splats reach at most one pixel past the
    image, onto a ring that is folded back at the end (-1 -> 0, S -> S - 1) as the official code does
    pixel by pixel. Plain sums, no convolution, so no reduced-precision (TF32) kernel touches them.
    """
    batch, num_views = depth.shape[:2]
    inner = image_size + 2  # the image and the ring folded onto it
    side = inner + 2 * half  # room for the windows
    flat = (centres[..., 0] + half + 1) * side + centres[..., 1] + half + 1  # (B, V, N) into the canvas
    canvas = depth.new_zeros(batch * num_views, side * side)
    canvas.scatter_add_(1, flat.flatten(0, 1), depth.flatten(0, 1))  # (B*V, side*side)
    width = 2 * half + 1
    rows = canvas.view(batch * num_views, side, side).unfold(1, width, 1).sum(-1)  # (B*V, S+2, side)
    box = rows.unfold(2, width, 1).sum(-1)  # (B*V, S+2, S+2)
    box[:, 1] += box[:, 0]
    box[:, -2] += box[:, -1]
    box[:, :, 1] += box[:, :, 0]
    box[:, :, -2] += box[:, :, -1]
    return box[:, 1:-1, 1:-1].reshape(batch, num_views, image_size, image_size)
