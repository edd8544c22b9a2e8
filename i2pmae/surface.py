"""Surfaces from reconstructed point clouds, and completion metrics (Open3D).

A reconstruction is a sparse cloud: the visible input plus the model's prediction for the masked part
(:func:`i2pmae.scene.reconstruction_parts`). :func:`completed_cloud` joins the two,
:func:`reconstruct_surface` meshes it (ball pivoting or screened Poisson) and :func:`save_surface` writes
the mesh as PLY or GLB.
:func:`completion_metrics` scores a prediction against the masked ground truth the way the completion
literature does (Chamfer-L2, Hausdorff, F-score at a distance threshold).

Open3D is an optional dependency (the ``app`` extra), so it is imported where it is used.
All clouds are in the unit-sphere frame of the model's input. Numbers behind the defaults:
``benchmarks/bench_surface.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import open3d as o3d

# F-score distance d. PoinTr & co. use d = 0.01 on 16k-point clouds, about one nearest-neighbour spacing.
# Our masked truth is far sparser: ~620 points, ~210 distinct (kNN groups overlap), whose nearest distinct
# neighbour is 0.056-0.16 away (median 0.09) on the 12 bundled shapes. Measured with the shipped checkpoint
# (seed 0): at d = 0.01 the F-score is 0.27-0.33 on every shape (only the points next to each token centre
# count, so it cannot tell shapes apart), at 0.1 it is 0.7-0.99 (saturates); d = 0.05, about half a
# spacing, spreads them over 0.45-0.92 (mean 0.67).
F_SCORE_THRESHOLD = 0.05
SURFACE_METHODS = ("ball_pivoting", "poisson")
# Chosen on the completed clouds of the 12 bundled shapes, both masks (benchmarks/bench_surface.py, medians):
# ball pivoting takes 0.04 s against 0.47 s (one thread) and its triangles lie on the cloud: 18% of its
# area is farther than F_SCORE_THRESHOLD from truth ∪ visible, against 32% for Poisson (95th percentile
# distance 0.070 vs 0.096), both covering 96% of the cloud. Poisson leaves fewer holes (258 boundary edges,
# against 1128), but fills them with surface the points do not support. Neither has non-manifold edges.
DEFAULT_SURFACE_METHOD = "ball_pivoting"
MAX_SURFACE_POINTS = 200_000  # Poisson and BPA memory grow with the cloud; the app meshes a few thousand
MIN_SURFACE_POINTS = 10  # fewer cannot span a surface, and the normals need neighbours
DUPLICATE_TOLERANCE = 1e-6  # overlapping kNN groups repeat points up to float32 rounding (~1e-8)

NORMAL_NEIGHBOURS = 30  # max_nn of the hybrid normal search
NORMAL_RADIUS_SPACINGS = 4.0  # its radius, in mean nearest-neighbour spacings
ORIENT_NEIGHBOURS = 10  # k of the graph that propagates a consistent normal orientation
PIVOT_RADII_SPACINGS = (1.0, 2.0, 4.0)  # ball radii, in mean nearest-neighbour spacings
POISSON_DEPTH = 6  # octree depth: 64^3 cells, enough for clouds of a few thousand points
# Drop the vertices supported by the fewest points: Poisson's invented sheets. On the bundled shapes 0.2
# rather than 0.1 cuts the 95th-percentile distance to the cloud from 0.14 to 0.095, coverage 0.98 -> 0.96.
POISSON_DENSITY_QUANTILE = 0.2
POISSON_THREADS = 1  # the app serves several users on few cores
SURFACE_RGBA = (204, 158, 115, 255)  # scene.SURFACE_RGB: the surfaces look alike in every viewer


@dataclass(frozen=True)
class Surface:
    """A triangle mesh: vertices (V, 3) float32, triangles (F, 3) int32, the method and its time."""

    vertices: np.ndarray
    triangles: np.ndarray
    method: str
    seconds: float


def check_cloud(points: np.ndarray, name: str = "points") -> np.ndarray:
    """(N, 3) finite, non-empty points as float64; ValueError naming ``name`` otherwise."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got shape {points.shape}")
    if len(points) == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(points.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {points.dtype}")
    points = points.astype(np.float64)
    if not np.isfinite(points).all():
        raise ValueError(f"{name} contains NaN or inf")
    return points


def unique_points(points: np.ndarray, tolerance: float = DUPLICATE_TOLERANCE) -> np.ndarray:
    """(N, 3) -> (U, 3): the first of every set of points closer than ``tolerance``, in input order."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(points).query_pairs(tolerance, output_type="ndarray")  # (P, 2) with i < j
    keep = np.ones(len(points), dtype=bool)
    keep[pairs[:, 1]] = False
    return points[keep]


def completed_cloud(parts: dict[str, np.ndarray]) -> np.ndarray:
    """visible ∪ predicted (duplicates removed): the cloud a surface is made from.

    ``parts`` as :func:`i2pmae.scene.reconstruction_parts` returns it; (V, 3) and (P, 3) -> (U, 3) float32.
    """
    missing = [key for key in ("visible", "predicted") if key not in parts]
    if missing:
        raise ValueError(f"parts needs 'visible' and 'predicted' clouds, missing {missing}")
    clouds = [check_cloud(parts[key], key) for key in ("visible", "predicted")]
    return unique_points(np.concatenate(clouds)).astype(np.float32)


def _point_cloud(points: np.ndarray) -> o3d.geometry.PointCloud:
    import open3d as o3d

    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))


def _nearest_distances(a: o3d.geometry.PointCloud, b: o3d.geometry.PointCloud) -> np.ndarray:
    """(len(a),) distance from each point of ``a`` to the nearest of ``b``."""
    return np.asarray(a.compute_point_cloud_distance(b))


def completion_metrics(
    predicted: np.ndarray, truth: np.ndarray, *, threshold: float = F_SCORE_THRESHOLD
) -> dict[str, float]:
    """Chamfer-L2, Hausdorff and F-score@threshold of a predicted (P, 3) against a true (Q, 3) cloud.

    ``chamfer_l2`` is mean d1^2 + mean d2^2 (as :func:`i2pmae.losses.chamfer_l2`), ``hausdorff`` the
    larger of the two directed maxima (a distance, not squared). ``precision`` is the share of predicted
    points within ``threshold`` of the truth, ``recall`` the share of true points within it of the
    prediction, ``fscore`` their harmonic mean (0 when both are 0).
    """
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a finite distance > 0, got {threshold}")
    pred_cloud = _point_cloud(check_cloud(predicted, "predicted"))
    truth_cloud = _point_cloud(check_cloud(truth, "truth"))
    d1 = _nearest_distances(pred_cloud, truth_cloud)  # (P,)
    d2 = _nearest_distances(truth_cloud, pred_cloud)  # (Q,)
    precision = float(np.mean(d1 <= threshold))
    recall = float(np.mean(d2 <= threshold))
    total = precision + recall
    return {
        "chamfer_l2": float(np.mean(d1**2) + np.mean(d2**2)),
        "hausdorff": float(max(d1.max(), d2.max())),
        "fscore": 2 * precision * recall / total if total > 0 else 0.0,
        "precision": precision,
        "recall": recall,
        "threshold": threshold,
    }


def _check_surface_input(points: np.ndarray, method: str) -> np.ndarray:
    """(N, 3) -> (U, 3) float64 distinct points, or ValueError."""
    if method not in SURFACE_METHODS:
        raise ValueError(f"method must be one of {SURFACE_METHODS}, got {method!r}")
    points = check_cloud(points)
    if len(points) > MAX_SURFACE_POINTS:
        raise ValueError(f"{len(points):,} points is too many to mesh (at most {MAX_SURFACE_POINTS:,}); "
                         "downsample the cloud first")
    points = unique_points(points)
    if len(points) < MIN_SURFACE_POINTS:
        raise ValueError(f"{len(points)} distinct points is too few to mesh (at least {MIN_SURFACE_POINTS})")
    return points


def _oriented_cloud(points: np.ndarray, spacing: float) -> o3d.geometry.PointCloud:
    """A point cloud with normals from local planes, flipped to agree along a neighbour graph, outward."""
    import open3d as o3d

    cloud = _point_cloud(points)
    search = o3d.geometry.KDTreeSearchParamHybrid(radius=NORMAL_RADIUS_SPACINGS * spacing,
                                                  max_nn=NORMAL_NEIGHBOURS)
    cloud.estimate_normals(search)
    centroid = points.mean(axis=0)
    try:  # consistent, unlike "away from the centroid", on concave parts (chair seats): Poisson needs that
        cloud.orient_normals_consistent_tangent_plane(min(ORIENT_NEIGHBOURS, len(points) - 1))
    except RuntimeError:  # its Delaunay graph fails on flat or collinear clouds (Qhull precision error)
        cloud.orient_normals_towards_camera_location(centroid)
    normals = np.asarray(cloud.normals)  # (N, 3)
    if np.sum(normals * (points - centroid)) < 0:  # the graph fixes the sign only up to a flip
        cloud.normals = o3d.utility.Vector3dVector(-normals)
    return cloud


def _ball_pivoting(cloud: o3d.geometry.PointCloud, spacing: float) -> o3d.geometry.TriangleMesh:
    import open3d as o3d

    radii = o3d.utility.DoubleVector([r * spacing for r in PIVOT_RADII_SPACINGS])
    return o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(cloud, radii)


def _poisson(cloud: o3d.geometry.PointCloud, spacing: float) -> o3d.geometry.TriangleMesh:
    """Screened Poisson, without its low-density vertices and cropped to the cloud's bounding box."""
    import open3d as o3d

    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=POISSON_DEPTH, n_threads=POISSON_THREADS)
    densities = np.asarray(densities)  # (V,) how many points support each vertex
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, POISSON_DENSITY_QUANTILE))
    points = np.asarray(cloud.points)
    # Padded by a spacing: the box of a flat cloud has no volume, and Open3D refuses to crop to it.
    box = o3d.geometry.AxisAlignedBoundingBox(points.min(axis=0) - spacing, points.max(axis=0) + spacing)
    return mesh.crop(box)


def _clean(mesh: o3d.geometry.TriangleMesh) -> o3d.geometry.TriangleMesh:
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    mesh.remove_duplicated_vertices()
    mesh.remove_unreferenced_vertices()
    return mesh


def reconstruct_surface(points: np.ndarray, *, method: str = DEFAULT_SURFACE_METHOD) -> Surface:
    """A triangle mesh through (N, 3) points by ``method`` (one of :data:`SURFACE_METHODS`).

    Near-duplicate points are merged first. Normals come from local planes and are oriented consistently.
    Ball pivoting uses radii of :data:`PIVOT_RADII_SPACINGS` mean nearest-neighbour spacings; Poisson
    (depth :data:`POISSON_DEPTH`) is trimmed of low-density vertices and cropped to the cloud's box.
    Raises ValueError for bad or unmeshable input, and when the mesh comes out without triangles.
    """
    start = time.perf_counter()
    points = _check_surface_input(points, method)
    cloud = _point_cloud(points)
    spacing = float(np.mean(cloud.compute_nearest_neighbor_distance()))
    cloud = _oriented_cloud(points, spacing)
    mesh = _ball_pivoting(cloud, spacing) if method == "ball_pivoting" else _poisson(cloud, spacing)
    mesh = _clean(mesh)
    triangles = np.asarray(mesh.triangles, dtype=np.int32)  # (F, 3)
    if len(triangles) == 0:
        raise ValueError(f"{method} made an empty surface (0 triangles) from {len(points)} points; "
                         "are the points collinear, or too sparse?")
    return Surface(vertices=np.asarray(mesh.vertices, dtype=np.float32), triangles=triangles,
                   method=method, seconds=time.perf_counter() - start)


def save_surface(surface: Surface, path: str | Path, *,
                 rgba: tuple[int, int, int, int] = SURFACE_RGBA) -> Path:
    """Write ``surface`` as PLY or GLB (by the suffix of ``path``), its faces in ``rgba``; return the path."""
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ply", ".glb"):
        raise ValueError(f"surface files are .ply or .glb, got {path.name!r}")
    mesh = trimesh.Trimesh(vertices=surface.vertices, faces=surface.triangles, process=False)
    mesh.visual.face_colors = rgba
    path.write_bytes(mesh.export(file_type=suffix[1:]))
    return path
