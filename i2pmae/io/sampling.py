"""From a shape to a fixed-size cloud: surface sampling of meshes, farthest point sampling of clouds, and
normalisation to the unit sphere.

Coordinates are first scaled by a power of two into [-1, 1] (exact, see ``checks.to_unit_range``), so a
cloud in any units that float64 holds, 1e-300 or 1e300, samples and normalises like one in metres: nothing
overflows when cast to float32 or squared. The result does not depend on that scaling.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..geometry import LARGE_CLOUD_CANDIDATES, farthest_point_sample, normalize_unit_sphere, random_candidates
from .checks import Shape, double_areas, to_unit_range, triangle_edges
from .reading import read_shape


def load_points(source: str | os.PathLike | Shape, num_points: int = 2048, *, seed: int = 0) -> np.ndarray:
    """Read a shape file; return ``num_points`` points, centred on their mean, scaled to the unit sphere.

    Meshes are sampled uniformly on their surface (triangles chosen in proportion to their area). Clouds
    with at least ``num_points`` points are reduced by farthest point sampling (deterministic, starting at
    the file's first point, so ``seed`` does not change them); smaller clouds keep every point once and fill
    the rest by drawing points again, uniformly with replacement, so they contain duplicates.

    Args:
        source: a file with one of :data:`SUPPORTED_EXTENSIONS`, or a :class:`Shape` that
            :func:`read_shape` returned (to show its ``notes`` before sampling without reading twice).
        num_points: N, the number of points returned.
        seed: seeds the surface sampling and the resampling of small clouds.

    Returns:
        (N, 3) float32, mean 0, largest norm 1.

    Raises:
        ShapeError: the file cannot be used (see :func:`read_shape`).
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    shape = source if isinstance(source, Shape) else read_shape(source)
    rng = np.random.default_rng(seed)
    points = to_unit_range(shape.points)  # (V, 3)
    if shape.is_mesh:
        points = sample_surface(points, shape.faces, num_points, rng=rng)
    else:
        points = _resample_cloud(points, num_points, rng)
    return normalize_unit_sphere(torch.from_numpy(points)).numpy().astype(np.float32)  # (N, 3)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, num_samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    """Uniform samples on a mesh's surface: triangles drawn in proportion to area, a uniform point in each.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int indices into ``vertices``, with a positive total area.
        num_samples: S.
        rng: numpy generator (the only source of randomness).

    Returns:
        (S, 3) float64.
    """
    cumulative_area = np.cumsum(double_areas(vertices, faces))  # (F,), twice the areas
    target = rng.random(num_samples) * cumulative_area[-1]  # (S,)
    tri = np.minimum(np.searchsorted(cumulative_area, target, side="right"), len(faces) - 1)  # (S,)
    origin, edge1, edge2 = triangle_edges(vertices, faces[tri])  # (S, 3) each: only the drawn triangles
    # sqrt(u) makes the barycentric point uniform over the triangle (Osada et al. 2002, Shape distributions).
    sqrt_u, v = np.sqrt(rng.random(num_samples))[:, None], rng.random(num_samples)[:, None]  # (S, 1)
    return origin + sqrt_u * (1 - v) * edge1 + sqrt_u * v * edge2  # (S, 3)


def _resample_cloud(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float64 -> (num_points, 3): farthest point sampling, or every point plus random repeats."""
    if len(points) < num_points:
        repeats = rng.integers(len(points), size=num_points - len(points))
        return points[np.concatenate([np.arange(len(points)), repeats])]  # (num_points, 3)
    if len(points) > LARGE_CLOUD_CANDIDATES:  # millions of points: exact FPS on a seeded 200k subset
        points = points[random_candidates(len(points), LARGE_CLOUD_CANDIDATES).numpy()]  # (C, 3)
    # FPS ignores translation; centring first keeps the detail of far-off coordinates in float32.
    xyz = torch.from_numpy((points - points.mean(axis=0)).astype(np.float32))  # (N, 3)
    idx = farthest_point_sample(xyz[None], num_points)[0]  # (S,)
    return points[idx.numpy()]  # (num_points, 3)
