"""Point-cloud geometry: normalisation, farthest point sampling (FPS), kNN, gathering, the token hierarchy.

Everything is batched torch on any device, with no compiled extension of our own. FPS and kNN have a
faster path for CPU tensors, through C++ libraries called one cloud at a time: FPS through ``fpsample``'s
bucket sampler (QuickFPS), kNN candidates through scipy's kd-tree. Both paths give the same results as
the torch ones (see :func:`farthest_point_sample` and :func:`knn` for the one exception, exact ties).

Farthest point sampling, as defined here: the first sample is point 0; each next sample is the point whose
squared distance (float32, summed x, y, z in that order) to its nearest sample so far is largest. The torch
loop breaks ties by the lowest index and never repeats a point; ``fpsample`` breaks ties in its own order,
so clouds with exactly equal distances (duplicates, grids) may get another, equally valid, sequence.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

POINT_DIM = 3
DEFAULT_NUM_CENTERS = (512, 256, 64)  # DESIGN.md 1.1: tokens per level, finest first
DEFAULT_GROUP_SIZES = (16, 8, 8)  # neighbours per token, among the level below
LARGE_CLOUD_CANDIDATES = 200_000  # pre-subsample size that keeps FPS of an upload well under a second
FPS_BACKENDS = ("auto", "fpsample", "torch")
KNN_BACKENDS = ("auto", "scipy", "torch")
KNN_BLOCK_PAIRS = 1 << 24  # query-reference pairs scored at once by knn (64 MiB of float32)
KNN_EXTRA_CANDIDATES = 8  # candidates beyond k re-ranked with exact distances


def normalize_unit_sphere(points: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Centre each cloud on its mean and scale it so that its farthest point has norm 1.

    Args:
        points: (..., N, 3) floating tensor or numpy array (a numpy array is returned as numpy).

    Returns:
        (..., N, 3), same type, dtype and device.

    Raises:
        ValueError: not a (..., N, 3) floating cloud, a non-finite coordinate, or all points of a cloud equal.
    """
    if isinstance(points, np.ndarray):
        return normalize_unit_sphere(torch.tensor(points)).numpy()
    _check_points(points, "points", min_dims=2)
    centred = points - points.mean(dim=-2, keepdim=True)  # (..., N, 3)
    radius = torch.linalg.vector_norm(centred, dim=-1).amax(dim=-1)  # (...)
    if bool((radius == 0).any()):
        raise ValueError("cannot normalise a cloud whose points all coincide (its radius is 0)")
    return centred / radius[..., None, None]  # (..., N, 3)


def farthest_point_sample(
    xyz: Tensor, num_samples: int, *, max_candidates: int | None = None, seed: int = 0, backend: str = "auto"
) -> Tensor:
    """Exact farthest point sampling starting at index 0 (see the module docstring), deterministic.

    Args:
        xyz: (B, N, 3) floating; distances are computed in float32.
        num_samples: S, 1 <= S <= N.
        max_candidates: if set and N is larger, run exact FPS on the :func:`random_candidates` subset of
            this many points (the same for the whole batch, always holding point 0) instead of on all N:
            use :data:`LARGE_CLOUD_CANDIDATES` for uploads of millions of points.
        seed: seed of that subset.
        backend: ``"auto"`` (``fpsample`` for CPU tensors, the torch loop elsewhere), ``"fpsample"`` or
            ``"torch"``.

    Returns:
        (B, S) int64 indices into N, on ``xyz.device``; sample 0 is index 0, no index repeats.
    """
    _check_points(xyz, "xyz", min_dims=3, max_dims=3)
    _check_count(num_samples, "num_samples", xyz.shape[1])
    _check_backend(backend, FPS_BACKENDS, xyz.device, "fpsample")
    if max_candidates is not None:
        _check_count(max_candidates, "max_candidates", math.inf, at_least=num_samples)
    if max_candidates is not None and xyz.shape[1] > max_candidates:
        candidates = random_candidates(xyz.shape[1], max_candidates, seed=seed).to(xyz.device)  # (C,)
        return candidates[farthest_point_sample(xyz[:, candidates], num_samples, backend=backend)]  # (B, S)
    points = xyz.detach().float()  # (B, N, 3)
    if backend == "fpsample" and _fpsample() is None:
        raise ValueError("backend='fpsample' needs the fpsample package (pip install fpsample)")
    if backend == "torch" or points.device.type != "cpu" or _fpsample() is None:
        return _fps_torch(points, num_samples)
    return _fps_library(points, num_samples)


def random_candidates(num_points: int, max_candidates: int, *, seed: int = 0) -> Tensor:
    """Seeded uniform subset of point indices for FPS on very large clouds, always holding index 0.

    Returns:
        (max_candidates,) int64 on CPU, sorted ascending.
    """
    _check_count(max_candidates, "max_candidates", num_points)
    rest = np.random.default_rng(seed).choice(num_points - 1, size=max_candidates - 1, replace=False) + 1
    return torch.from_numpy(np.sort(np.concatenate([[0], rest])))  # (max_candidates,)


def _fps_torch(points: Tensor, num_samples: int) -> Tensor:
    """Batched exact FPS loop: (B, N, 3) float32 -> (B, S); ties to the lowest index."""
    batch, num_points, _ = points.shape
    coords = points.transpose(1, 2).contiguous()  # (B, 3, N): one contiguous row per axis
    nearest = points.new_full((batch, num_points), math.inf)  # squared distance to the nearest sample
    chosen = torch.zeros(batch, num_samples, dtype=torch.long, device=points.device)  # (B, S)
    current = chosen[:, :1]  # (B, 1): sample 0 is point 0
    for step in range(1, num_samples):
        centre = coords.gather(2, current[:, None].expand(batch, POINT_DIM, 1))  # (B, 3, 1)
        square = (coords - centre).square_()  # (B, 3, N)
        torch.minimum(nearest, square[:, 0] + square[:, 1] + square[:, 2], out=nearest)  # (B, N)
        nearest.scatter_(1, current, -1.0)  # a chosen point is never chosen again
        current = nearest.argmax(dim=1, keepdim=True)  # (B, 1), first index among equal maxima
        chosen[:, step : step + 1] = current
    return chosen


def _fps_library(points: Tensor, num_samples: int) -> Tensor:
    """FPS with fpsample's bucket sampler, cloud by cloud: (B, N, 3) float32 CPU -> (B, S)."""
    clouds = points.contiguous().numpy()  # (B, N, 3)
    rows = []
    for cloud in clouds:
        idx = _fps_bucket(cloud, num_samples).astype(np.int64)  # (S,)
        if len(np.unique(idx)) < num_samples:  # only when S exceeds the distinct points: fpsample repeats
            idx = _fps_torch(torch.from_numpy(cloud)[None], num_samples)[0].numpy()
        rows.append(idx)
    return torch.from_numpy(np.stack(rows))  # (B, S)


def _fps_bucket(cloud: np.ndarray, num_samples: int) -> np.ndarray:
    """(N, 3) float32 -> (S,) exact FPS from point 0 with ``fpsample.bucket_fps_kdline_sampling``.

    fpsample 1.0.2 looks ``start_idx`` up in its kd-tree's partitioned point order, not in the caller's,
    so ``start_idx=0`` starts at some other point (QuickFPS ``tree.init(points[start_idx])`` runs after
    ``buildKDtree`` has swapped the points). :func:`_kdtree_position` finds where point 0 lands; the first
    returned index proves it, and the library's plain O(N S) sampler takes over if a release changes this.
    """
    fpsample = _fpsample()
    if len(cloud) < 2:
        return np.zeros(num_samples, dtype=np.int64)
    height = max(1, int(math.log2(len(cloud))) // 2)  # buckets of ~sqrt(N) points: fastest from 2k to 3M
    start = _kdtree_position(cloud, height)
    idx = fpsample.bucket_fps_kdline_sampling(cloud, num_samples, height, start_idx=start)  # (S,)
    if idx[0] == 0:
        return idx
    warnings.warn(
        "fpsample's kd-tree order is not the one expected (a new fpsample release?); using its slower "
        "exact sampler fps_sampling instead",
        RuntimeWarning,
        stacklevel=4,
    )
    return fpsample.fps_sampling(cloud, num_samples, start_idx=0)  # (S,)


def _kdtree_position(cloud: np.ndarray, height: int) -> int:
    """Position of point 0 in fpsample's kd-tree order after its build, for a tree of ``height`` levels.

    Replays the build along point 0's path only: a node of more than one point splits on the first axis
    of widest bounding box, at the float32 running-sum mean of that axis; a two-pointer pass swaps the
    i-th point >= mean from the left with the i-th point < mean from the right; the left child keeps the
    points below the mean (at least one, and at most all but one).
    """
    columns = np.ascontiguousarray(cloud.T)  # (3, N)
    order = np.arange(len(cloud))  # point ids of the current node, in the tree's order
    offset = 0  # position of the node's first point in the whole tree
    for _ in range(height):
        if len(order) == 1:
            break
        node = np.take(columns, order, axis=1)  # (3, n)
        axis = int(np.argmax(node.max(axis=1) - node.min(axis=1)))
        values = node[axis]  # (n,)
        below = values < np.cumsum(values, dtype=np.float32)[-1] / np.float32(len(values))  # (n,)
        num_below = int(below.sum())
        wrong_left = np.flatnonzero(~below[:num_below])  # ascending
        wrong_right = np.flatnonzero(below[num_below:])[::-1] + num_below  # descending
        swapped = np.concatenate([wrong_left, wrong_right])
        order[swapped] = order[np.concatenate([wrong_right, wrong_left])]
        split = min(max(num_below, 1), len(order) - 1)
        if np.flatnonzero(order == 0)[0] < split:
            order = order[:split]
        else:
            offset, order = offset + split, order[split:]
    return offset + int(np.flatnonzero(order == 0)[0])


def _fpsample():
    """The fpsample module, or None when it is not installed (imported lazily: an optional fast path)."""
    try:
        import fpsample
    except ImportError:
        return None
    return fpsample


def knn(query: Tensor, ref: Tensor, k: int, *, backend: str = "auto") -> Tensor:
    """The k nearest reference points of every query point, nearest first, by exact squared distance.

    Distances are float32 ``dx^2 + dy^2 + dz^2``; equal distances keep the lower index first. Candidates
    (k + KNN_EXTRA_CANDIDATES per query) come from scipy's kd-tree or from a matrix-product distance and
    are re-ranked by exact distance; so the result is that of a full sort unless more than
    KNN_EXTRA_CANDIDATES points lie within rounding of the k-th distance (many duplicates, say).

    Args:
        query: (B, M, 3) floating.
        ref: (B, N, 3) floating, same device.
        k: K, 1 <= K <= N.
        backend: candidates from ``"auto"`` (scipy for CPU tensors, torch elsewhere), ``"scipy"`` (CPU
            only) or ``"torch"`` (batched matrix products, any device).

    Returns:
        (B, M, K) int64 indices into N.
    """
    _check_points(query, "query", min_dims=3, max_dims=3)
    _check_points(ref, "ref", min_dims=3, max_dims=3)
    if query.shape[0] != ref.shape[0] or query.device != ref.device:
        raise ValueError(
            f"query and ref must share batch size and device, got {tuple(query.shape)} on {query.device} "
            f"and {tuple(ref.shape)} on {ref.device}"
        )
    _check_count(k, "k", ref.shape[1])
    _check_backend(backend, KNN_BACKENDS, query.device, "scipy")
    query, ref = query.detach().float(), ref.detach().float()
    num_candidates = min(ref.shape[1], k + KNN_EXTRA_CANDIDATES)
    if backend == "scipy" or (backend == "auto" and query.device.type == "cpu"):
        candidates = _knn_candidates_kdtree(query, ref, num_candidates)  # (B, M, c)
    else:
        rows = max(1, KNN_BLOCK_PAIRS // (ref.shape[0] * ref.shape[1]))
        # float32 products also inside a bf16 autocast region: rounded candidates would miss true neighbours
        with torch.autocast(query.device.type, enabled=False):
            blocks = [_knn_candidates_matmul(b, ref, num_candidates) for b in query.split(rows, dim=1)]
        candidates = torch.cat(blocks, dim=1)  # (B, M, c)
    candidates = candidates.sort(dim=-1).values  # ascending index, so the stable sort favours low indices
    square = (gather(ref, candidates) - query[:, :, None]).square()  # (B, M, c, 3)
    exact = square[..., 0] + square[..., 1] + square[..., 2]  # (B, M, c)
    rank = exact.argsort(dim=-1, stable=True)[..., :k]  # (B, M, K)
    return candidates.gather(-1, rank)  # (B, M, K)


def _knn_candidates_kdtree(query: Tensor, ref: Tensor, count: int) -> Tensor:
    """Nearest ``count`` by scipy's cKDTree (float64), cloud by cloud: (B, M, 3), (B, N, 3) -> (B, M, c)."""
    from scipy.spatial import cKDTree

    workers = torch.get_num_threads()
    found = [
        cKDTree(r).query(q, count, workers=workers)[1].reshape(len(q), count)  # (M, c)
        for q, r in zip(query.numpy(), ref.numpy(), strict=True)
    ]
    return torch.from_numpy(np.stack(found).astype(np.int64))  # (B, M, c)


def _knn_candidates_matmul(query: Tensor, ref: Tensor, count: int) -> Tensor:
    """Nearest ``count`` by |r|^2 - 2 q.r (the query's |q|^2 does not change its ranking): -> (B, m, c)."""
    origin = ref.mean(dim=1, keepdim=True)  # (B, 1, 3): centring keeps the product accurate
    q, r = query - origin, ref - origin
    approx = torch.baddbmm(r.square().sum(-1)[:, None, :], q, r.transpose(1, 2), alpha=-2.0)  # (B, m, N)
    return approx.topk(count, dim=-1, largest=False, sorted=False).indices  # (B, m, c)


def gather(x: Tensor, idx: Tensor) -> Tensor:
    """Pick rows of ``x`` per batch element: ``out[b, i...] = x[b, idx[b, i...]]``, differentiable in x.

    Args:
        x: (B, N, *C).
        idx: (B, *I) int64 indices in [0, N), same device.

    Returns:
        (B, *I, *C).

    Raises:
        ValueError: x or idx has the wrong shape, dtype or device.
        IndexError: an index outside [0, N).
    """
    if x.dim() < 2:
        raise ValueError(f"x must be (B, N, *C), got shape {tuple(x.shape)}")
    if idx.dtype != torch.long or idx.dim() < 1 or idx.shape[0] != x.shape[0] or idx.device != x.device:
        raise ValueError(
            f"idx must be an int64 (B, *I) tensor matching x's batch {x.shape[0]} and device {x.device}, "
            f"got {idx.dtype} {tuple(idx.shape)} on {idx.device}"
        )
    batch, num_rows, channels = x.shape[0], x.shape[1], x.shape[2:]
    low, high = (int(v) for v in torch.aminmax(idx)) if idx.numel() else (0, 0)
    if low < 0 or high >= num_rows:
        raise IndexError(f"idx must lie in [0, {num_rows}), got values from {low} to {high}")
    offsets = torch.arange(batch, device=x.device) * num_rows  # (B,): first row of each cloud in the flat x
    rows = (idx.reshape(batch, -1) + offsets[:, None]).flatten()  # (B L,)
    picked = x.reshape(batch * num_rows, *channels).index_select(0, rows)  # (B L, *C)
    return picked.reshape(*idx.shape, *channels)  # (B, *I, *C)


@dataclass
class Hierarchy:
    """Nested tokens of a batch of clouds; level 0 is the finest (e.g. 512 centres), the last the top.

    Attributes:
        centers: per level (B, G_s, 3).
        center_idx: per level (B, G_s), index into the input points (s = 0) or into level s-1 centres.
        neighbor_idx: per level (B, G_s, K_s), kNN of each centre among the input points (s = 0) or among
            level s-1 centres, nearest first (the centre itself is one of them, at distance 0).
    """

    centers: list[Tensor]
    center_idx: list[Tensor]
    neighbor_idx: list[Tensor]

    def point_idx(self, level: int) -> Tensor:
        """(B, G_level): index of each centre of ``level`` into the input points."""
        if not 0 <= level < len(self.centers):
            raise IndexError(f"level must be in [0, {len(self.centers)}), got {level}")
        idx = self.center_idx[0]  # (B, G_0)
        for s in range(1, level + 1):
            idx = idx.gather(1, self.center_idx[s])  # (B, G_s)
        return idx


def build_hierarchy(
    xyz: Tensor,
    num_centers: Sequence[int] = DEFAULT_NUM_CENTERS,
    group_sizes: Sequence[int] = DEFAULT_GROUP_SIZES,
) -> Hierarchy:
    """FPS + kNN tokens at every level (DESIGN.md 1.1): level s samples its centres among level s-1's.

    Args:
        xyz: (B, N, 3) points.
        num_centers: G_s per level, finest first; each at most the size of the level below (N for s = 0).
        group_sizes: K_s per level, likewise bounded.
    """
    if len(num_centers) != len(group_sizes) or not num_centers:
        raise ValueError(
            f"num_centers and group_sizes need one entry per level, got {num_centers} and {group_sizes}"
        )
    _check_points(xyz, "xyz", min_dims=3, max_dims=3)
    source = xyz  # (B, N_s, 3): the points the current level samples from
    levels = Hierarchy(centers=[], center_idx=[], neighbor_idx=[])
    for s, (num, size) in enumerate(zip(num_centers, group_sizes, strict=True)):
        if not 1 <= num <= source.shape[1] or not 1 <= size <= source.shape[1]:
            raise ValueError(
                f"level {s} asks for {num} centres with {size} neighbours among {source.shape[1]} "
                "points; both must be between 1 and that number"
            )
        idx = farthest_point_sample(source, num)  # (B, G_s)
        centers = gather(source, idx)  # (B, G_s, 3)
        levels.centers.append(centers)
        levels.center_idx.append(idx)
        levels.neighbor_idx.append(knn(centers, source, size))  # (B, G_s, K_s)
        source = centers
    return levels


def _check_points(points: Tensor, name: str, *, min_dims: int, max_dims: int | None = None) -> None:
    """Raise ValueError unless ``points`` is a finite floating (..., N>=1, 3) tensor with that many dims."""
    if not isinstance(points, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    dims_ok = points.dim() >= min_dims and (max_dims is None or points.dim() <= max_dims)
    if not dims_ok or points.shape[-1] != POINT_DIM or points.shape[-2] < 1:
        want = "(B, N, 3)" if max_dims == 3 else "(..., N, 3)"
        raise ValueError(f"{name} must have shape {want} with N >= 1, got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {points.dtype}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} contains NaN or infinite coordinates")


def _check_backend(backend: str, choices: tuple[str, ...], device: torch.device, library: str) -> None:
    """Raise ValueError for an unknown backend, or a library backend on a non-CPU device."""
    if backend not in choices:
        raise ValueError(f"backend must be one of {choices}, got {backend!r}")
    if backend == library and device.type != "cpu":
        raise ValueError(f"backend={library!r} runs on CPU tensors only, got a tensor on {device}")


def _check_count(value: int, name: str, limit: float, *, at_least: int = 1) -> None:
    """Raise ValueError unless ``value`` is an int with at_least <= value <= limit."""
    if isinstance(value, bool) or not isinstance(value, int) or not at_least <= value <= limit:
        raise ValueError(f"{name} must be an integer in [{at_least}, {limit}], got {value!r}")
