"""Depth-image projection and back-projection (DESIGN.md 1.2, 1.4) against hand-computed values and
brute-force references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i2pmae.projection import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_VIEWS,
    DepthViews,
    pixel_coords,
    project,
    sample_maps,
)

S = 224
UNIT = 1 / 256  # exact in float32; a cloud spanning 221 units has step = UNIT exactly


def _normalised(grey: float) -> torch.Tensor:
    """The 3 ImageNet-normalised channels of a grey value in [0, 1]."""
    return (grey - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)


def _reference_depth(points: np.ndarray, view: tuple[int, int, int], size: int = S) -> np.ndarray:
    """The official algorithm (5 x 5 splats) point by point in numpy float32: (N, 3) -> (size, size)."""
    pts = points.astype(np.float32)
    plane, depth = pts[:, list(view[:2])], pts[:, view[2]]
    low = plane.min(axis=0)
    step = (plane.max(axis=0) - low).max() / np.float32(size - 3)
    cells = np.floor((plane - low) / step)
    offsets = [(r, c) for r in range(-2, 3) for c in range(-2, 3)]
    dense = np.array([cell + off + 1 for cell in cells for off in offsets])  # (N*25, 2)
    centre = np.floor((dense.max(axis=0) + dense.min(axis=0)) / 2)
    dense = dense + (size / 2 - centre - 1)
    dense = dense + (dense < 0) - (dense > size - 1)
    image = np.zeros((size, size), np.float64)
    np.add.at(image, (dense[:, 0].astype(int), dense[:, 1].astype(int)), np.repeat(depth, len(offsets)))
    return image


def _random_clouds(batch: int, num: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(batch, 1, 3, generator=g) + 0.5
    return torch.randn(batch, num, 3, generator=g) * scale  # (B, N, 3), a different aspect per cloud


def test_two_point_cloud_matches_hand_computation():
    # A at the (0, 0) corner of every plane, B at the far end of x: every view spans 221 units -> step 1 unit.
    a = (1.0, 1.0, 1.0 + 221 * UNIT)
    b = (1.0 + 221 * UNIT, 1.0 + 110 * UNIT, 1.0)
    views = project(torch.tensor([[a, b]]))
    assert torch.equal(views.step, torch.full((1, 3), UNIT))
    assert torch.equal(views.minimum, torch.ones(1, 3, 2))
    # View (x, y) -> z: cells A (0, 0), B (221, 110); splat box rows -1..224, cols -1..113;
    # centre (111, 56) -> offset 112 - centre = (1, 56). (z, x) -> y: box -1..224 both ways -> (1, 1).
    # (y, z) -> x: rows -1..113, cols -1..224 -> (56, 1).
    assert views.offset.tolist() == [[[1, 56], [1, 1], [56, 1]]]
    expected_pixels = [[[1, 56], [222, 166]], [[222, 1], [1, 222]], [[56, 222], [166, 1]]]
    assert pixel_coords(views, torch.tensor([[a, b]])).tolist() == [expected_pixels]

    # View 0 stores z. Row -1 of A's splat folds onto row 0 and row 224 of B's onto row 223.
    depth_a, depth_b = a[2], b[2]
    expected = torch.zeros(S, S)
    expected[0, 54:59] = 2 * depth_a
    expected[1:4, 54:59] = depth_a
    expected[220:223, 164:169] = depth_b
    expected[223, 164:169] = 2 * depth_b
    assert torch.allclose(views.depth[0, 0], expected, rtol=0, atol=1e-6)
    # (z, x): both splats sit in corners and fold on two sides (4 x 4 pixels); (y, z): on one side (5 x 4).
    assert views.depth[0, 1].count_nonzero() == 32 and views.depth[0, 2].count_nonzero() == 40

    pixel_a = views.images[0, 0, :, 2, 56]
    assert torch.allclose(pixel_a, _normalised(torch.sigmoid(torch.tensor(depth_a)).item()), atol=1e-6)
    empty = views.images[0, 0, :, 100, 100]
    assert torch.allclose(empty, _normalised(0.5), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pointwise_reference(seed: int):
    points = _random_clouds(1, 60, seed)
    views = project(points)
    for v, view in enumerate(PAPER_VIEWS):
        expected = _reference_depth(points[0].numpy(), view)
        assert np.allclose(views.depth[0, v].numpy(), expected, rtol=1e-6, atol=1e-5)


def test_cells_are_computed_in_float32_even_for_float64_input():
    # Row axis x spans [0, 1], so step = 1 / 221; x sits just below the border of cell 7.
    x = np.nextafter(7 / 221, 0.0)
    cell64 = np.floor(x / (1 / 221))
    cell32 = np.floor(np.float32(x) / (np.float32(1) / np.float32(221)))
    assert (cell64, cell32) == (6, 7), "not a border case: float32 and float64 must disagree here"
    points = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [x, 0.0, 0.0]]], dtype=torch.float64)
    views = project(points)
    rows = pixel_coords(views, points)[0, 0, :, 0] - views.offset[0, 0, 0]
    assert rows.tolist() == [0, 220, 7]  # the far end too: 1 / float32(1 / 221) = 220.99998
    reference = project(points.float())
    assert torch.equal(views.depth, reference.depth)
    assert views.depth.dtype == views.images.dtype == torch.float32


def test_back_projected_points_land_inside_their_splats():
    points = _random_clouds(2, 500) + 4.0  # positive depth everywhere, so a non-empty pixel is > 0
    views = project(points)
    pixels = pixel_coords(views, points)  # (B, V, N, 2)
    b = torch.arange(2).view(2, 1, 1)
    v = torch.arange(3).view(1, 3, 1)
    at_pixel = views.depth[b, v, pixels[..., 0], pixels[..., 1]]  # (B, V, N)
    own_depth = points[:, :, [2, 1, 0]].transpose(1, 2)  # (B, V, N) depth axis of each paper view
    assert bool((at_pixel >= own_depth - 1e-5).all())
    assert bool((pixels >= 1).all() and (pixels <= S - 2).all()), "splat centres stay off the folded ring"


def test_batch_equals_per_sample():
    points = _random_clouds(3, 200)
    batched = project(points)
    for i in range(3):
        single = project(points[i : i + 1])
        for field in ("images", "depth", "minimum", "step", "offset"):
            assert torch.equal(getattr(batched, field)[i], getattr(single, field)[0]), field
        assert torch.equal(pixel_coords(batched, points)[i], pixel_coords(single, points[i : i + 1])[0])


def test_rotation_projects_the_rotated_cloud():
    quarter_turn_z = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    points = _random_clouds(2, 100)
    rotated = project(points, rotation=quarter_turn_z)
    reference = project(points @ quarter_turn_z.T)
    assert torch.equal(rotated.depth, reference.depth)
    assert torch.equal(pixel_coords(rotated, points), pixel_coords(reference, points @ quarter_turn_z.T))


def test_custom_views_and_sizes():
    points = _random_clouds(1, 50)
    views = project(points, views=[(1, 0, 2)], image_size=32, splat_size=3)
    assert views.images.shape == (1, 1, 3, 32, 32) and views.num_views == 1
    transposed = project(points, image_size=32, splat_size=3)
    assert torch.allclose(views.depth[0, 0], transposed.depth[0, 0].T, rtol=0, atol=1e-6)


def test_pixel_coords_clamps_points_outside_the_cloud():
    points = _random_clouds(1, 100)
    views = project(points)
    far = torch.tensor([[[1e6, -1e6, 0.0], [-1e30, 0.0, 1e30]]])
    pixels = pixel_coords(views, far)
    assert pixels.min() == 0 and pixels.max() == S - 1
    assert pixels[0, 0, 0].tolist() == [S - 1, 0]


def test_degenerate_cloud_is_one_splat():
    views = project(torch.zeros(1, 5, 3) + 0.5)
    assert torch.equal(views.offset, torch.full((1, 3, 2), 111))
    assert views.depth[0, 0].count_nonzero() == 25
    assert torch.allclose(views.depth[0, 0, 111, 111], torch.tensor(2.5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("grid", [14, 7])
def test_sample_maps_equals_bicubic_upsample_then_index(dtype: torch.dtype, grid: int):
    maps = torch.randn(2, 3, 4, grid, grid, dtype=dtype)
    rows, cols = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    every_pixel = torch.stack([rows, cols], -1).view(1, 1, -1, 2).expand(2, 3, -1, -1)  # (B, V, S*S, 2)
    sampled = sample_maps(maps, every_pixel)  # (B, V, S*S, C)
    upsampled = F.interpolate(maps.flatten(0, 1), size=S, mode="bicubic", align_corners=False)
    expected = upsampled.view(2, 3, 4, S * S).transpose(2, 3)  # (B, V, S*S, C)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(sampled, expected, rtol=0, atol=tolerance)
    assert sampled.dtype == dtype


def test_sample_maps_reads_each_sample_and_view_at_its_own_pixels():
    maps = torch.randn(2, 3, 1, 14, 14)
    pixels = torch.randint(0, S, (2, 3, 10, 2))
    sampled = sample_maps(maps, pixels)[..., 0]  # (B, V, M)
    upsampled = F.interpolate(maps.flatten(0, 1), size=S, mode="bicubic", align_corners=False)
    upsampled = upsampled.view(2, 3, S, S)  # (B, V, S, S)
    for b in range(2):
        for v in range(3):
            expected = upsampled[b, v][pixels[b, v, :, 0], pixels[b, v, :, 1]]
            assert torch.allclose(sampled[b, v], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": torch.zeros(5, 3)}, "shape"),
        ({"points": torch.zeros(1, 0, 3)}, "non-empty"),
        ({"points": torch.tensor([[[0.0, float("nan"), 0.0]]])}, "NaN"),
        ({"points": torch.zeros(1, 4, 3), "views": [(0, 1, 1)]}, "permutations"),
        ({"points": torch.zeros(1, 4, 3), "splat_size": 4}, "odd"),
        ({"points": torch.zeros(1, 4, 3), "image_size": 223}, "even"),
        ({"points": torch.zeros(2, 4, 3), "rotation": torch.eye(3).expand(3, 3, 3)}, "rotation"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs: dict, message: str):
    points = kwargs.pop("points")
    with pytest.raises(ValueError, match=message):
        project(points, **kwargs)


def test_bad_back_projection_input_raises():
    views: DepthViews = project(torch.randn(2, 10, 3))
    with pytest.raises(ValueError, match="2"):
        pixel_coords(views, torch.randn(3, 10, 3))
    with pytest.raises(ValueError, match="pixels"):
        sample_maps(torch.randn(2, 3, 4, 14, 14), torch.zeros(2, 2, 5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        sample_maps(torch.randn(2, 3, 4, 14, 14), torch.full((2, 3, 5, 2), S))
