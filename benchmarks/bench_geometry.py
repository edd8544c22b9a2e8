"""Timings of i2pmae.geometry's FPS and kNN on CPU against fpsample, open3d, scipy and plain torch.

    .venv/bin/python benchmarks/bench_geometry.py        # under a minute on 2 idle cores

Every time is the best of a few runs, measured in this run; ``ratio`` is ours / baseline, so < 1 means
ours is faster. ``same`` says whether the baseline picks the same points as ours (exact FPS from point 0;
open3d returns its samples in index order, so sets are compared) or the same neighbours. fpsample's
bucket sampler with ``start_idx=0`` starts elsewhere (see ``i2pmae.geometry._fps_bucket``); its plain
sampler breaks exact float32 ties by the highest index, which large clouds do meet. On a machine shared
with other jobs, ``OMP_NUM_THREADS=1`` keeps torch's small parallel ops from waiting on a busy core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from i2pmae.geometry import LARGE_CLOUD_CANDIDATES, build_hierarchy, farthest_point_sample, knn

REPEATS = 3  # runs per timing; the best one counts
SLOW_REPEATS = 1  # for baselines that take seconds
SLOW_POINTS = 50_000  # clouds at least this large use SLOW_REPEATS
TORCH_LOOP_STEPS = 256  # on large clouds the torch loop runs this many steps, its time scaled up to S
LARGE_POINTS = 3_000_000  # an upload of millions of points
FPS_CASES = ((1, 2048, 512), (32, 2048, 512), (1, 100_000, 2048))  # (B, N, S)
KNN_CASES = ((1, 512, 2048, 16), (32, 512, 2048, 16))  # (B, M, N, k)
SEED = 0


def surface_clouds(batch: int, num_points: int, seed: int = SEED) -> torch.Tensor:
    """(B, N, 3) float32 points on stretched spheres: a surface, like the shapes the explorer loads."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(batch, num_points, 3))
    points /= np.linalg.norm(points, axis=-1, keepdims=True)
    return torch.from_numpy(points * rng.uniform(0.5, 1.5, size=(batch, 1, 3))).float()


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(best wall time in seconds, result of the last run)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def report(case: str, ours: float, baselines: dict[str, tuple[float, str]]) -> None:
    """One block per case: our time, then each baseline's time, ratio and agreement."""
    print(f"\n{case}: ours {ours * 1e3:9.1f} ms")
    for name, (seconds, same) in baselines.items():
        print(f"  {name:<34} {seconds * 1e3:9.1f} ms   ratio {ours / seconds:7.3f}   same: {same}")


def fps_baselines(xyz: torch.Tensor, num_samples: int, ours: np.ndarray) -> dict[str, tuple[float, str]]:
    """Time the baselines for FPS of every cloud of (B, N, 3) and compare them with ours (B, S)."""
    import fpsample

    clouds = xyz.numpy()
    repeats = SLOW_REPEATS if xyz.shape[1] >= SLOW_POINTS else REPEATS
    height = max(1, int(np.log2(xyz.shape[1])) // 2)  # the bucket height ours uses
    runs = {
        "fpsample bucket_fps_kdline start 0": lambda: [
            fpsample.bucket_fps_kdline_sampling(c, num_samples, height, start_idx=0) for c in clouds
        ],
        "fpsample fps_sampling (plain)": lambda: [
            fpsample.fps_sampling(c, num_samples, start_idx=0) for c in clouds
        ],
    }
    out = {}
    for name, fn in runs.items():
        seconds, result = best_time(fn, repeats)
        out[name] = (seconds, "yes" if np.array_equal(np.stack(result), ours) else "no")
    out.update(_torch_loop_fps(xyz, num_samples, ours, repeats))
    out.update(_open3d_fps(clouds, num_samples, ours, repeats))
    return out


def _torch_loop_fps(xyz: torch.Tensor, num_samples: int, ours: np.ndarray, repeats: int) -> dict:
    """Our batched torch loop; each step costs the same, so on large clouds a prefix is timed and scaled."""
    steps = min(num_samples, TORCH_LOOP_STEPS) if xyz.shape[1] >= SLOW_POINTS else num_samples
    seconds, result = best_time(partial(farthest_point_sample, xyz, steps, backend="torch"), repeats)
    name = "torch loop (our non-CPU path)"
    if steps < num_samples:
        seconds *= (num_samples - 1) / (steps - 1)
        name = f"torch loop, {steps} steps scaled to {num_samples}"
    return {name: (seconds, "yes" if np.array_equal(result.numpy(), ours[:, :steps]) else "no")}


def _open3d_fps(clouds: np.ndarray, num_samples: int, ours: np.ndarray, repeats: int) -> dict:
    try:
        import open3d as o3d
    except ImportError as err:  # open3d needs system libraries (packages.txt)
        print(f"  open3d unavailable: {err}")
        return {}

    def run() -> list[np.ndarray]:
        picked = []
        for cloud in clouds:
            pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64)))
            picked.append(np.asarray(pcd.farthest_point_down_sample(num_samples, start_index=0).points))
        return picked

    seconds, picked = best_time(run, repeats)
    same = all(
        np.array_equal(np.sort(p.astype(np.float32), axis=0), np.sort(c[o], axis=0))
        for p, c, o in zip(picked, clouds, ours, strict=True)
    )
    return {"open3d farthest_point_down_sample": (seconds, "yes (as a set)" if same else "no")}


def bench_fps() -> None:
    for batch, num_points, num_samples in FPS_CASES:
        xyz = surface_clouds(batch, num_points)
        repeats = SLOW_REPEATS if num_points >= SLOW_POINTS else REPEATS
        seconds, ours = best_time(partial(farthest_point_sample, xyz, num_samples), repeats)
        case = f"FPS {num_points:,} -> {num_samples} points, B={batch}"
        report(case, seconds, fps_baselines(xyz, num_samples, ours.numpy()))


def bench_large_upload() -> None:
    """3M points -> 2048: exact FPS on a seeded subset, against exact FPS on all points (time and quality)."""
    import fpsample
    from scipy.spatial import cKDTree

    xyz = surface_clouds(1, LARGE_POINTS)
    seconds, subset = best_time(
        partial(farthest_point_sample, xyz, 2048, max_candidates=LARGE_CLOUD_CANDIDATES), REPEATS
    )
    height = max(1, int(np.log2(LARGE_POINTS)) // 2)
    full, _ = best_time(
        lambda: fpsample.bucket_fps_kdline_sampling(xyz[0].numpy(), 2048, height, start_idx=0), SLOW_REPEATS
    )
    ours_full, exact = best_time(partial(farthest_point_sample, xyz, 2048), SLOW_REPEATS)
    case = f"FPS {LARGE_POINTS:,} -> 2048 points, ours on {LARGE_CLOUD_CANDIDATES:,} random candidates"
    report(
        case,
        seconds,
        {
            "fpsample bucket_fps_kdline, all points": (full, "no (subset)"),
            "ours exact on all points": (ours_full, "no (subset)"),
        },
    )
    points = xyz[0].numpy()

    def coverage(idx: torch.Tensor) -> float:  # largest distance from a point to its nearest sample
        return float(cKDTree(points[idx[0].numpy()]).query(points, 1, workers=-1)[0].max())

    print(f"  coverage radius, subset / all points: {coverage(subset) / coverage(exact):.3f}")


def knn_baselines(query: torch.Tensor, ref: torch.Tensor, k: int, ours: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    runs = {
        "scipy cKDTree (all cores)": lambda: np.stack(
            [cKDTree(r).query(q, k, workers=-1)[1] for q, r in zip(query.numpy(), ref.numpy(), strict=True)]
        ),
        "torch full distance sort": lambda: torch.cdist(query, ref).argsort(dim=-1)[..., :k].numpy(),
        "ours, torch path (non-CPU path)": lambda: knn(query, ref, k, backend="torch").numpy(),
    }
    runs.update(_open3d_knn(query, ref, k))
    out = {}
    for name, fn in runs.items():
        seconds, result = best_time(fn, REPEATS)
        out[name] = (seconds, "yes" if np.array_equal(result, ours) else "no (ties/rounding)")
    return out


def _open3d_knn(query: torch.Tensor, ref: torch.Tensor, k: int) -> dict:
    try:
        import open3d as o3d
    except ImportError:
        return {}

    def run() -> np.ndarray:
        found = []
        for q, r in zip(query.numpy(), ref.numpy(), strict=True):
            search = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(r))
            search.knn_index()
            found.append(search.knn_search(o3d.core.Tensor(q), k)[0].numpy())
        return np.stack(found).astype(np.int64)

    return {"open3d core.nns knn_search": run}


def bench_knn() -> None:
    for batch, num_queries, num_points, k in KNN_CASES:
        ref = surface_clouds(batch, num_points)
        query = ref[:, :num_queries].contiguous()
        seconds, ours = best_time(partial(knn, query, ref, k), REPEATS)
        case = f"kNN {num_queries} queries among {num_points} points, k={k}, B={batch}"
        report(case, seconds, knn_baselines(query, ref, k, ours.numpy()))


def bench_hierarchy() -> None:
    for batch in (1, 32):
        xyz = surface_clouds(batch, 2048)
        seconds, _ = best_time(partial(build_hierarchy, xyz), REPEATS)
        print(f"\nbuild_hierarchy 2048 points -> 512/256/64 tokens, B={batch}: {seconds * 1e3:.1f} ms")


def main() -> None:
    start = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; times are best of {REPEATS}")
    bench_fps()
    bench_large_upload()
    bench_knn()
    bench_hierarchy()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
