"""Geometry ops against brute-force references: plain numpy loops and full sorts."""

import warnings

import numpy as np
import pytest
import torch

from i2pmae import geometry
from i2pmae.geometry import (
    Hierarchy,
    build_hierarchy,
    farthest_point_sample,
    gather,
    knn,
    normalize_unit_sphere,
    random_candidates,
)

BACKENDS = ("fpsample", "torch")
KNN_BACKENDS = ("scipy", "torch")


def reference_fps(cloud: np.ndarray, num_samples: int) -> np.ndarray:
    """Plain O(N S) FPS from point 0: float32 dx^2+dy^2+dz^2, lowest index on ties, no repeats."""
    cloud = cloud.astype(np.float32)
    nearest = np.full(len(cloud), np.inf, dtype=np.float32)
    chosen = [0]
    while len(chosen) < num_samples:
        delta = cloud - cloud[chosen[-1]]
        nearest = np.minimum(nearest, delta[:, 0] ** 2 + delta[:, 1] ** 2 + delta[:, 2] ** 2)
        nearest[chosen] = -1
        chosen.append(int(np.argmax(nearest)))
    return np.array(chosen)


def reference_knn(query: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Full stable sort of exact float32 squared distances: (M, 3), (N, 3) -> (M, k)."""
    delta = query.astype(np.float32)[:, None] - ref.astype(np.float32)[None]  # (M, N, 3)
    dist = delta[..., 0] ** 2 + delta[..., 1] ** 2 + delta[..., 2] ** 2
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def is_valid_fps(cloud: np.ndarray, idx: np.ndarray) -> bool:
    """Every sample after the first is at the largest distance from the samples before it."""
    cloud = cloud.astype(np.float32)
    nearest = np.full(len(cloud), np.inf, dtype=np.float32)
    for prev, nxt in zip(idx[:-1], idx[1:], strict=True):
        delta = cloud - cloud[prev]
        nearest = np.minimum(nearest, delta[:, 0] ** 2 + delta[:, 1] ** 2 + delta[:, 2] ** 2)
        if nearest[nxt] != nearest.max():
            return False
    return True


def random_clouds(batch: int, num_points: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(batch, num_points, 3))).float()


# ---------------------------------------------------------------------------------------------- normalise


def test_normalize_unit_sphere_matches_closed_form_on_tensors_and_numpy():
    points = random_clouds(2, 50) * torch.tensor([3.0, 1.0, 0.5]) + 7.0  # (2, 50, 3)
    out = normalize_unit_sphere(points)
    centred = points - points.mean(dim=1, keepdim=True)
    expected = centred / centred.norm(dim=-1).amax(dim=1)[:, None, None]
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1).amax(dim=1), torch.ones(2))
    single = normalize_unit_sphere(points[0].double().numpy())  # (N, 3) numpy in, numpy out
    assert isinstance(single, np.ndarray) and single.dtype == np.float64
    np.testing.assert_allclose(single, expected[0].numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (torch.ones(5, 3), "coincide"),
        (torch.tensor([[0.0, 0.0, float("nan")], [1.0, 0.0, 0.0]]), "NaN"),
        (torch.zeros(5, 2), "shape"),
        (torch.ones(5, 3, dtype=torch.long), "floating"),
    ],
)
def test_normalize_unit_sphere_rejects_bad_clouds(points, message):
    with pytest.raises(ValueError, match=message):
        normalize_unit_sphere(points)


# ---------------------------------------------------------------------------------------------------- FPS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("batch", "num_points", "num_samples"), [(1, 2048, 512), (3, 300, 64), (2, 40, 40)])
def test_fps_matches_reference_loop(backend, batch, num_points, num_samples):
    xyz = random_clouds(batch, num_points, seed=num_points)
    idx = farthest_point_sample(xyz, num_samples, backend=backend)
    assert idx.shape == (batch, num_samples) and idx.dtype == torch.long
    for cloud, row in zip(xyz.numpy(), idx.numpy(), strict=True):
        np.testing.assert_array_equal(row, reference_fps(cloud, num_samples))


@pytest.mark.parametrize(
    "cloud",
    [
        np.c_[np.random.default_rng(1).random((500, 2)), np.zeros(500)],  # flat: one axis has no extent
        np.random.default_rng(2).normal(size=(700, 3)) * [5.0, 1.0, 0.1] + 1e3,  # stretched, far off
        np.random.default_rng(3).random((4096, 3)) ** 3,  # skewed density
    ],
    ids=["plane", "offset", "skewed"],
)
def test_fps_library_path_starts_at_point_zero_on_varied_clouds(cloud):
    xyz = torch.from_numpy(cloud).float()[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the fast path itself, not its fallback
        idx = farthest_point_sample(xyz, 128, backend="fpsample")[0].numpy()
    np.testing.assert_array_equal(idx, reference_fps(xyz[0].numpy(), 128))


def test_fps_with_duplicate_points_picks_the_reference_coordinates():
    base = np.random.default_rng(4).random((200, 3)).astype(np.float32)
    cloud = np.concatenate([base, base[::-1], base[::2]])  # every point 2 or 3 times
    xyz = torch.from_numpy(cloud)[None]
    expected = reference_fps(cloud, 150)
    np.testing.assert_array_equal(farthest_point_sample(xyz, 150, backend="torch")[0].numpy(), expected)
    idx = farthest_point_sample(xyz, 150, backend="fpsample")[0].numpy()
    np.testing.assert_array_equal(cloud[idx], cloud[expected])  # any copy of a point is as good


def test_fps_with_equal_distances_is_valid_and_torch_breaks_ties_by_index():
    axis = np.arange(6, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)  # (216, 3)
    xyz = torch.from_numpy(grid)[None]
    np.testing.assert_array_equal(
        farthest_point_sample(xyz, 100, backend="torch")[0].numpy(), reference_fps(grid, 100)
    )
    idx = farthest_point_sample(xyz, 100, backend="fpsample")[0].numpy()
    assert idx[0] == 0 and len(set(idx.tolist())) == 100 and is_valid_fps(grid, idx)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_never_repeats_when_samples_exceed_distinct_points(backend):
    cloud = np.repeat(np.random.default_rng(5).random((10, 3)), 4, axis=0).astype(np.float32)  # (40, 3)
    idx = farthest_point_sample(torch.from_numpy(cloud)[None], 25, backend=backend)[0].numpy()
    np.testing.assert_array_equal(idx, reference_fps(cloud, 25))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_tiny_inputs(backend):
    assert farthest_point_sample(torch.zeros(1, 1, 3), 1, backend=backend).tolist() == [[0]]
    two = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    assert farthest_point_sample(two, 2, backend=backend).tolist() == [[0, 1]]
    assert farthest_point_sample(torch.ones(1, 5, 3), 3, backend=backend).tolist() == [[0, 1, 2]]


def test_fps_auto_uses_float32_and_accepts_float64_and_noncontiguous_input():
    xyz = random_clouds(2, 600, seed=6).double().transpose(0, 1).contiguous().transpose(0, 1)
    assert not xyz.is_contiguous()
    expected = farthest_point_sample(xyz.float().contiguous(), 100, backend="torch")
    torch.testing.assert_close(farthest_point_sample(xyz, 100), expected)


def test_fps_falls_back_to_exact_library_loop_when_tree_order_is_unexpected(monkeypatch):
    xyz = random_clouds(1, 1000, seed=7)
    monkeypatch.setattr(geometry, "_kdtree_position", lambda cloud, height: 1)
    with pytest.warns(RuntimeWarning, match="kd-tree order"):
        idx = farthest_point_sample(xyz, 64, backend="fpsample")
    np.testing.assert_array_equal(idx[0].numpy(), reference_fps(xyz[0].numpy(), 64))


def test_fps_on_large_cloud_presubsamples_to_seeded_candidates():
    xyz = torch.nn.functional.normalize(random_clouds(1, 30_000, seed=8), dim=-1)  # dense sphere surface
    idx = farthest_point_sample(xyz, 256, max_candidates=3000, seed=1)
    candidates = random_candidates(30_000, 3000, seed=1)
    assert candidates[0] == 0 and len(candidates.unique()) == 3000 and bool((candidates.diff() > 0).all())
    subset_fps = reference_fps(xyz[0, candidates].numpy(), 256)
    np.testing.assert_array_equal(idx[0].numpy(), candidates.numpy()[subset_fps])
    assert not torch.equal(farthest_point_sample(xyz, 256, max_candidates=3000, seed=2), idx)
    exact = farthest_point_sample(xyz, 256)
    assert not torch.equal(exact, idx)

    def coverage(sample_idx):  # largest distance from a point to its nearest sample
        return torch.cdist(xyz[0], xyz[0, sample_idx[0]]).amin(dim=1).max()

    assert coverage(idx) < 1.25 * coverage(exact)


def test_fps_max_candidates_is_ignored_for_small_clouds():
    xyz = random_clouds(2, 500, seed=9)
    torch.testing.assert_close(
        farthest_point_sample(xyz, 50, max_candidates=500), farthest_point_sample(xyz, 50)
    )


@pytest.mark.parametrize(
    ("xyz", "kwargs", "message"),
    [
        (torch.zeros(1, 10, 3), {"num_samples": 11}, "num_samples"),
        (torch.zeros(1, 10, 3), {"num_samples": 0}, "num_samples"),
        (torch.zeros(10, 3), {"num_samples": 2}, "shape"),
        (torch.full((1, 10, 3), float("inf")), {"num_samples": 2}, "infinite"),
        (torch.zeros(1, 10, 3), {"num_samples": 2, "backend": "cuda"}, "backend"),
        (torch.zeros(1, 10, 3), {"num_samples": 5, "max_candidates": 4}, "max_candidates"),
    ],
)
def test_fps_rejects_bad_arguments(xyz, kwargs, message):
    with pytest.raises(ValueError, match=message):
        farthest_point_sample(xyz, **kwargs)


# ---------------------------------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("backend", KNN_BACKENDS)
@pytest.mark.parametrize("k", [1, 16, 300])
def test_knn_matches_full_distance_sort(k, backend):
    ref = random_clouds(2, 300, seed=10)
    query = random_clouds(2, 70, seed=11)
    idx = knn(query, ref, k, backend=backend)
    assert idx.shape == (2, 70, k) and idx.dtype == torch.long
    for q, r, row in zip(query.numpy(), ref.numpy(), idx.numpy(), strict=True):
        np.testing.assert_array_equal(row, reference_knn(q, r, k))


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_orders_ties_by_index_and_finds_itself_first(backend):
    base = np.random.default_rng(12).random((150, 3)).astype(np.float32)
    ref = np.concatenate([base, base[:50], base[:50]])  # the first 50 points three times
    query = base[:80]
    idx = knn(torch.from_numpy(query)[None], torch.from_numpy(ref)[None], 8, backend=backend)[0].numpy()
    np.testing.assert_array_equal(idx, reference_knn(query, ref, 8))
    np.testing.assert_array_equal(idx[:, 0], np.arange(80))


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_is_exact_far_from_the_origin_and_across_blocks(monkeypatch, backend):
    monkeypatch.setattr(geometry, "KNN_BLOCK_PAIRS", 1000)  # several query blocks
    cloud = np.random.default_rng(13).normal(size=(1, 400, 3)).astype(np.float32) * 1e-3 + 500.0
    xyz = torch.from_numpy(cloud)
    idx = knn(xyz, xyz, 12, backend=backend)[0].numpy()
    np.testing.assert_array_equal(idx, reference_knn(cloud[0], cloud[0], 12))


def test_knn_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="batch"):
        knn(torch.zeros(2, 4, 3), torch.zeros(1, 4, 3), 2)
    with pytest.raises(ValueError, match="k must"):
        knn(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), 5)
    with pytest.raises(ValueError, match="backend"):
        knn(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), 2, backend="faiss")


# ------------------------------------------------------------------------------------------------- gather


@pytest.mark.parametrize("channels", [(), (3,), (4, 5)])
def test_gather_matches_python_loops(channels):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, *channels, generator=gen, requires_grad=True)
    idx = torch.randint(0, 9, (2, 6, 4), generator=gen)
    out = gather(x, idx)
    assert out.shape == (2, 6, 4, *channels)
    for b in range(2):
        for i in range(6):
            for j in range(4):
                torch.testing.assert_close(out[b, i, j], x[b, idx[b, i, j]])
    out.sum().backward()
    counts = torch.zeros(2, 9)
    for b in range(2):
        for n in idx[b].flatten().tolist():
            counts[b, n] += 1
    torch.testing.assert_close(x.grad, counts.view(2, 9, *(1 for _ in channels)).expand_as(x))


def test_gather_rejects_bad_indices():
    x = torch.zeros(2, 5, 3)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        gather(x, torch.full((2, 3), 5))
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        gather(x, torch.tensor([[0, 1, 2], [0, -1, 2]]))
    with pytest.raises(ValueError, match="int64"):
        gather(x, torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="batch"):
        gather(x, torch.zeros(3, 3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- hierarchy


def check_hierarchy(xyz: torch.Tensor, h: Hierarchy, num_centers, group_sizes) -> None:
    """Every level against the references, level by level, and point_idx against a loop."""
    source = xyz.numpy()  # (B, N_s, 3)
    composed = [np.arange(xyz.shape[1])] * xyz.shape[0]
    for s, (num, size) in enumerate(zip(num_centers, group_sizes, strict=True)):
        assert h.centers[s].shape == (xyz.shape[0], num, 3)
        assert h.neighbor_idx[s].shape == (xyz.shape[0], num, size)
        for b in range(xyz.shape[0]):
            fps = reference_fps(source[b], num)
            np.testing.assert_array_equal(h.center_idx[s][b].numpy(), fps)
            np.testing.assert_array_equal(h.centers[s][b].numpy(), source[b][fps])  # a subset of level s-1
            np.testing.assert_array_equal(
                h.neighbor_idx[s][b].numpy(), reference_knn(source[b][fps], source[b], size)
            )
            composed[b] = composed[b][fps]
            np.testing.assert_array_equal(h.point_idx(s)[b].numpy(), composed[b])
        torch.testing.assert_close(gather(xyz, h.point_idx(s)), h.centers[s], rtol=0, atol=0)
        source = h.centers[s].numpy()


@pytest.mark.parametrize("batch", [1, 2])
def test_build_hierarchy_small_config_against_references(batch):
    xyz = normalize_unit_sphere(random_clouds(batch, 600, seed=14))
    num_centers, group_sizes = (128, 64, 16), (16, 8, 8)
    check_hierarchy(xyz, build_hierarchy(xyz, num_centers, group_sizes), num_centers, group_sizes)


def test_build_hierarchy_paper_config_batch_of_one():
    xyz = normalize_unit_sphere(random_clouds(1, 2048, seed=15))
    h = build_hierarchy(xyz)
    check_hierarchy(xyz, h, geometry.DEFAULT_NUM_CENTERS, geometry.DEFAULT_GROUP_SIZES)
    assert [c.shape[1] for c in h.centers] == [512, 256, 64]


def test_build_hierarchy_rejects_bad_configs():
    xyz = random_clouds(1, 100)
    with pytest.raises(ValueError, match="one entry per level"):
        build_hierarchy(xyz, (64, 32), (8,))
    with pytest.raises(ValueError, match="level 1"):
        build_hierarchy(xyz, (64, 80), (8, 8))
    with pytest.raises(ValueError, match="level 0"):
        build_hierarchy(xyz, (64,), (101,))
    with pytest.raises(IndexError, match="level"):
        build_hierarchy(xyz, (8,), (4,)).point_idx(1)
