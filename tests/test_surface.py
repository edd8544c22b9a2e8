"""i2pmae.surface: completion metrics against brute force and closed forms, surfaces of synthetic clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("open3d")

from i2pmae.losses import chamfer_l2  # noqa: E402
from i2pmae.surface import (  # noqa: E402
    MAX_SURFACE_POINTS,
    SURFACE_METHODS,
    Surface,
    completed_cloud,
    completion_metrics,
    reconstruct_surface,
    save_surface,
)

KEYS = {"chamfer_l2", "hausdorff", "fscore", "precision", "recall", "threshold"}


def sphere(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) float32 points on the unit sphere, evenly spread (Fibonacci lattice) and shuffled."""
    i = np.arange(count) + 0.5
    z = 1 - 2 * i / count
    theta = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    points = np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)  # (count, 3)
    return np.random.default_rng(seed).permutation(points).astype(np.float32)


def grid(size: int, step: float) -> np.ndarray:
    """(size^3, 3) float64 points of a cubic grid with spacing ``step``, from the origin."""
    axis = np.arange(size) * step
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def brute_force(pred: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """The five numbers from the full (P, Q) distance matrix."""
    dist = np.linalg.norm(pred[:, None].astype(np.float64) - truth[None].astype(np.float64), axis=-1)
    d1, d2 = dist.min(axis=1), dist.min(axis=0)  # (P,), (Q,)
    precision, recall = np.mean(d1 <= threshold), np.mean(d2 <= threshold)
    fscore = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"chamfer_l2": np.mean(d1**2) + np.mean(d2**2), "hausdorff": max(d1.max(), d2.max()),
            "fscore": fscore, "precision": precision, "recall": recall}


@pytest.mark.parametrize(("num_pred", "num_truth", "threshold"),
                         [(50, 80, 0.3), (200, 37, 0.15), (1, 5, 1.0)])
def test_metrics_match_brute_force(num_pred: int, num_truth: int, threshold: float) -> None:
    rng = np.random.default_rng(num_pred)
    pred = rng.uniform(-1, 1, (num_pred, 3)).astype(np.float32)
    truth = rng.uniform(-1, 1, (num_truth, 3)).astype(np.float32)
    got = completion_metrics(pred, truth, threshold=threshold)
    assert set(got) == KEYS and got["threshold"] == threshold
    for key, value in brute_force(pred, truth, threshold).items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_chamfer_matches_training_loss() -> None:
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(300, 3)).astype(np.float32)
    truth = rng.normal(size=(450, 3)).astype(np.float32)
    want = chamfer_l2(torch.tensor(pred)[None], torch.tensor(truth)[None], reduction="none")
    assert completion_metrics(pred, truth)["chamfer_l2"] == pytest.approx(float(want[0]), rel=1e-6)


def test_identical_clouds_are_perfect() -> None:
    cloud = sphere(500)
    got = completion_metrics(cloud, cloud.copy())
    assert got["chamfer_l2"] == 0 and got["hausdorff"] == 0
    assert got["fscore"] == got["precision"] == got["recall"] == 1


def test_shift_below_spacing_is_the_hausdorff_distance() -> None:
    cloud = grid(6, 0.1)
    shift = 0.03  # under half the spacing: every point's nearest neighbour is its own copy
    direction = np.array([1.0, 2.0, 2.0]) / 3.0
    got = completion_metrics(cloud + shift * direction, cloud, threshold=0.02)
    assert got["hausdorff"] == pytest.approx(shift, rel=1e-9)
    assert got["chamfer_l2"] == pytest.approx(2 * shift**2, rel=1e-9)
    assert got["fscore"] == 0  # every point is 0.03 > 0.02 away
    assert completion_metrics(cloud + shift * direction, cloud, threshold=0.04)["fscore"] == 1


def test_outlier_sets_hausdorff_and_costs_one_point_of_precision() -> None:
    truth = grid(5, 0.25)  # the unit cube, corner (1, 1, 1) the nearest to the outlier
    outlier = np.array([[4.0, 5.0, 1.0]])  # (3, 4, 0) from that corner: distance 5
    pred = np.concatenate([truth, outlier])
    clean = completion_metrics(truth, truth)
    got = completion_metrics(pred, truth)
    assert got["hausdorff"] == pytest.approx(5.0, rel=1e-12)
    assert got["precision"] == pytest.approx(clean["precision"] - 1 / len(pred), rel=1e-12)
    assert got["recall"] == 1


def test_scores_grow_with_the_threshold() -> None:
    rng = np.random.default_rng(2)
    pred, truth = rng.uniform(-1, 1, (120, 3)), rng.uniform(-1, 1, (90, 3))
    scores = [completion_metrics(pred, truth, threshold=t) for t in np.geomspace(1e-3, 4.0, 15)]
    for key in ("fscore", "precision", "recall"):
        values = [s[key] for s in scores]
        assert values == sorted(values), key
    assert scores[0]["fscore"] == 0 and scores[-1]["fscore"] == 1


@pytest.mark.parametrize(("pred", "threshold", "message"), [
    (np.zeros((0, 3)), 0.05, "predicted is empty"),
    (np.array([[0.0, np.nan, 0.0]]), 0.05, "predicted contains NaN or inf"),
    (np.array([[0.0, np.inf, 0.0]]), 0.05, "predicted contains NaN or inf"),
    (np.zeros((4, 2)), 0.05, r"predicted must be \(N, 3\), got shape \(4, 2\)"),
    (np.zeros(3), 0.05, r"predicted must be \(N, 3\)"),
    (np.zeros((4, 3)), 0.0, "threshold must be a finite distance > 0"),
    (np.zeros((4, 3)), -0.1, "threshold must be a finite distance > 0"),
    (np.zeros((4, 3)), np.inf, "threshold must be a finite distance > 0"),
])
def test_metrics_reject_bad_input(pred: np.ndarray, threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        completion_metrics(pred, np.zeros((5, 3)), threshold=threshold)
    if threshold > 0 and np.isfinite(threshold):
        with pytest.raises(ValueError, match=message.replace("predicted", "truth")):
            completion_metrics(np.zeros((5, 3)), pred, threshold=threshold)


def test_completed_cloud_drops_repeated_points() -> None:
    visible = sphere(100)
    repeated = np.concatenate([visible, visible[:30] + np.float32(1e-8)])  # overlapping kNN groups
    predicted = np.concatenate([sphere(40, seed=1) * 0.5, visible[:5]])
    cloud = completed_cloud({"visible": repeated, "predicted": predicted, "truth": sphere(10)})
    assert cloud.dtype == np.float32 and cloud.shape == (140, 3)
    np.testing.assert_array_equal(cloud[:100], visible)
    with pytest.raises(ValueError, match="missing \\['predicted'\\]"):
        completed_cloud({"visible": visible})


@pytest.mark.parametrize("method", SURFACE_METHODS)
def test_surface_of_a_sphere(method: str) -> None:
    surface = reconstruct_surface(sphere(2000), method=method)
    assert isinstance(surface, Surface) and surface.method == method and surface.seconds > 0
    assert surface.vertices.dtype == np.float32 and surface.triangles.dtype == np.int32
    assert surface.vertices.ndim == 2 and surface.vertices.shape[1] == 3
    assert len(surface.triangles) > 0
    assert surface.triangles.min() >= 0 and surface.triangles.max() < len(surface.vertices)
    off_sphere = np.abs(np.linalg.norm(surface.vertices, axis=1) - 1)  # (V,)
    if method == "ball_pivoting":  # vertices are input points
        assert off_sphere.max() < 1e-5
    else:  # Poisson places its own vertices; after trimming nearly all lie on the sphere
        assert np.quantile(off_sphere, 0.95) < 0.03
    assert len(np.unique(np.sort(surface.triangles, axis=1), axis=0)) == len(surface.triangles)


@pytest.mark.parametrize(("points", "method", "message"), [
    (sphere(9), "ball_pivoting", "9 distinct points is too few"),
    (np.repeat(sphere(5), 4, axis=0), "poisson", "5 distinct points is too few"),
    (np.where(np.arange(300)[:, None] == 7, np.nan, sphere(300)), "ball_pivoting", "points contains NaN"),
    (sphere(300)[:, :2], "ball_pivoting", r"points must be \(N, 3\)"),
    (np.zeros((MAX_SURFACE_POINTS + 1, 3), np.float32), "poisson", "too many to mesh"),
    (sphere(300), "marching_cubes", "method must be one of"),
])
def test_surface_rejects_bad_input(points: np.ndarray, method: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reconstruct_surface(points, method=method)


@pytest.mark.parametrize("method", SURFACE_METHODS)
def test_surface_of_a_flat_square(method: str) -> None:
    # Open3D's consistent orientation and its crop both fail on flat clouds unless handled.
    square = np.concatenate([grid(20, 0.1)[:400, 1:], np.zeros((400, 1))], axis=1)  # z = 0
    surface = reconstruct_surface(square, method=method)
    assert len(surface.triangles) > 0
    assert np.quantile(np.abs(surface.vertices[:, 2]), 0.95) < 0.02


def test_empty_surface_is_an_error() -> None:
    line = np.stack([np.linspace(-1, 1, 50), np.zeros(50), np.zeros(50)], axis=1)  # nothing to span
    with pytest.raises(ValueError, match=r"empty surface \(0 triangles\)"):
        reconstruct_surface(line, method="ball_pivoting")


@pytest.mark.parametrize("suffix", [".ply", ".glb", ".PLY"])
def test_save_surface_round_trip(tmp_path, suffix: str) -> None:
    import trimesh

    surface = reconstruct_surface(sphere(500))
    path = save_surface(surface, str(tmp_path / f"sphere{suffix}"))
    assert path == tmp_path / f"sphere{suffix}" and path.stat().st_size > 0
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.vertices) == len(surface.vertices) and len(loaded.faces) == len(surface.triangles)
    np.testing.assert_allclose(np.asarray(loaded.vertices), surface.vertices, atol=1e-6)


def test_save_surface_rejects_other_formats(tmp_path) -> None:
    surface = Surface(vertices=np.eye(3, dtype=np.float32), triangles=np.array([[0, 1, 2]], np.int32),
                      method="ball_pivoting", seconds=0.0)
    with pytest.raises(ValueError, match="surface files are .ply or .glb"):
        save_surface(surface, tmp_path / "sphere.obj")
    assert not (tmp_path / "sphere.obj").exists()
