"""Surfaces and completion metrics of i2pmae.surface on the bundled shapes, with the shipped checkpoint.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_surface.py [--points 2048] [--seed 0] [--repeats 3]

Every bundled shape is reconstructed under both masks of :func:`i2pmae.explore.draw_mask_pair`, and two
tables are printed in markdown:

- F-score thresholds: the nearest-neighbour spacing of each masked ground truth (distinct points, as
  overlapping kNN groups repeat them) and the F-score of the prediction at a few thresholds, to show
  which threshold still tells shapes apart (``i2pmae.surface.F_SCORE_THRESHOLD``).
- Surface methods: :func:`~i2pmae.surface.reconstruct_surface` of each completed cloud (visible ∪
  predicted), per method: median time (best of ``--repeats``), triangles, distance from the surface
  (area-weighted samples) to the truth ∪ visible cloud (mean and 95th percentile, median over clouds),
  the share of that cloud within the F-score threshold of the surface (coverage), and boundary and
  non-manifold edges (medians). This picks ``DEFAULT_SURFACE_METHOD``.

Open3D follows ``OMP_NUM_THREADS``, read when it is imported; set it to 1 for single-thread times.
Needs the teacher weights and open3d (the ``app`` extra). Runs in about a minute on two idle cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from i2pmae.cli.common import DEFAULT_CHECKPOINT
from i2pmae.surface import (
    F_SCORE_THRESHOLD,
    SURFACE_METHODS,
    completed_cloud,
    completion_metrics,
    reconstruct_surface,
    unique_points,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHAPES = ("airplane.ply", "ant.ply", "bed_0001.xyz", "bunny.obj", "chair_0001.off", "chair_0002.off",
          "chair_0003.off", "monitor_0001.pcd", "nut.ply", "sofa_0003.npz", "table_0003.txt",
          "toilet_0001.npy")
THRESHOLDS = (0.01, 0.02, 0.05, 0.1)
SURFACE_SAMPLES = 20_000  # area-weighted points on each surface


def reconstructions(num_points: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """'shape / mask' -> reconstruction_parts, for every bundled shape and both masks."""
    from i2pmae.checkpoints import load_checkpoint
    from i2pmae.explore import (
        MASK_KINDS,
        analyse_shape,
        draw_mask_pair,
        paper_model,
        reconstruct_pair,
        retokenise,
    )
    from i2pmae.io import load_points
    from i2pmae.scene import reconstruction_parts
    from i2pmae.teachers import load_teacher

    analyser, teacher = paper_model(), load_teacher()
    model, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    model.eval()
    out = {}
    with torch.no_grad():
        for name in SHAPES:
            analysis = analyse_shape(analyser, load_points(ASSETS / name, num_points), teacher)
            own = retokenise(model, analysis)
            rec = reconstruct_pair(model, own, draw_mask_pair(model, own, seed=seed))
            for row, kind in enumerate(MASK_KINDS):
                out[f"{name} / {kind}"] = reconstruction_parts(rec, row)
    return out


def spacing(points: np.ndarray) -> float:
    """Median distance from each distinct point to its nearest distinct neighbour."""
    from scipy.spatial import cKDTree

    distinct = unique_points(points.astype(np.float64))
    return float(np.median(cKDTree(distinct).query(distinct, 2)[0][:, 1]))


def threshold_table(parts: dict[str, dict[str, np.ndarray]]) -> None:
    print("\n### F-score of the prediction against the masked truth\n")
    print("| reconstruction | truth points (distinct) | NN spacing | "
          + " | ".join(f"F@{t}" for t in THRESHOLDS) + " |")
    print("|---|---|---|" + "---|" * len(THRESHOLDS))
    scores = {t: [] for t in THRESHOLDS}
    for key, p in parts.items():
        row = [completion_metrics(p["predicted"], p["truth"], threshold=t)["fscore"] for t in THRESHOLDS]
        for t, f in zip(THRESHOLDS, row, strict=True):
            scores[t].append(f)
        distinct = len(unique_points(p["truth"].astype(np.float64)))
        print(f"| {key} | {len(p['truth'])} ({distinct}) | {spacing(p['truth']):.3f} | "
              + " | ".join(f"{f:.3f}" for f in row) + " |")
    spread = " | ".join(f"{min(s):.2f}-{max(s):.2f} (mean {np.mean(s):.2f})" for s in scores.values())
    print(f"| **range** | | | {spread} |")


def surface_quality(surface, reference: np.ndarray, threshold: float) -> dict[str, float]:
    """Distances from the surface to ``reference`` (R, 3) and back, and its open/non-manifold edges."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(surface.vertices.astype(np.float64)),
                                     o3d.utility.Vector3iVector(surface.triangles))
    samples = mesh.sample_points_uniformly(SURFACE_SAMPLES)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(reference.astype(np.float64)))
    away = np.asarray(samples.compute_point_cloud_distance(cloud))  # (S,) surface -> cloud
    back = np.asarray(cloud.compute_point_cloud_distance(samples))  # (R,) cloud -> surface
    non_manifold = len(mesh.get_non_manifold_edges(allow_boundary_edges=True))  # > 2 triangles
    open_or_non_manifold = len(mesh.get_non_manifold_edges(allow_boundary_edges=False))  # != 2 triangles
    return {"mean": float(away.mean()), "p95": float(np.quantile(away, 0.95)),
            "far": float(np.mean(away > threshold)), "coverage": float(np.mean(back <= threshold)),
            "boundary": open_or_non_manifold - non_manifold, "non_manifold": non_manifold}


def best_surface(points: np.ndarray, method: str, repeats: int):
    """(best wall time in seconds, the surface)."""
    best, surface = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        surface = reconstruct_surface(points, method=method)
        best = min(best, time.perf_counter() - start)
    return best, surface


def surface_table(parts: dict[str, dict[str, np.ndarray]], repeats: int) -> None:
    print(f"\n### Surfaces of the completed clouds ({len(parts)}), medians over clouds\n")
    print("| method | time (s) | triangles | dist. mean | dist. p95 | far area | coverage | boundary edges | "
          "non-manifold edges | failures |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in SURFACE_METHODS:
        rows, failures = [], 0
        for p in parts.values():
            reference = np.concatenate([p["truth"], p["visible"]])
            try:
                seconds, surface = best_surface(completed_cloud(p), method, repeats)
            except ValueError:
                failures += 1
                continue
            quality = surface_quality(surface, reference, F_SCORE_THRESHOLD)
            rows.append({"time": seconds, "triangles": len(surface.triangles), **quality})
        med = {key: float(np.median([r[key] for r in rows])) for key in rows[0]}
        cells = [f"{med['time']:.3f}", f"{med['triangles']:.0f}", f"{med['mean']:.4f}", f"{med['p95']:.4f}",
                 f"{med['far']:.3f}", f"{med['coverage']:.3f}", f"{med['boundary']:.0f}",
                 f"{med['non_manifold']:.0f}", str(failures)]
        print(f"| {method} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2048, help="points loaded per shape")
    parser.add_argument("--seed", type=int, default=0, help="mask seed")
    parser.add_argument("--repeats", type=int, default=3, help="surface runs per cloud; the best one counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"F-score threshold {F_SCORE_THRESHOLD}")
    parts = reconstructions(args.points, args.seed)
    completed = [len(completed_cloud(p)) for p in parts.values()]
    print(f"completed clouds: {min(completed)}-{max(completed)} points")
    threshold_table(parts)
    surface_table(parts, args.repeats)


if __name__ == "__main__":
    main()
