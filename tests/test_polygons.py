"""Polygon triangulation (i2pmae.io.polygons) against closed forms and brute-force references: shoelace areas,
point-in-polygon tests of triangle centroids, the fan for convex polygons, the one diagonal of a dart."""

from __future__ import annotations

import importlib
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

from i2pmae.io import polygons
from i2pmae.io.checks import ShapeError, read_budget
from i2pmae.io.polygons import triangulate

# ----------------------------------------------------------------------------------------------------------
# Shapes and references (plain numpy, none of them uses the code under test)
# ----------------------------------------------------------------------------------------------------------


def comb(teeth: int) -> np.ndarray:
    """(4 teeth + 2, 2) counter-clockwise comb: a 1-high bar under ``teeth`` 0.5-wide, 4-high teeth.

    Its area is 3 per tooth (1 x 1 of bar, 0.5 x 4 of tooth); a fan from corner 0 folds over it.
    """
    corners = [(0.0, 0.0), (float(teeth), 0.0)]
    for i in reversed(range(teeth)):
        corners += [(i + 1.0, 5.0), (i + 0.5, 5.0), (i + 0.5, 1.0), (i + 0.0, 1.0)]
    return np.array(corners)


def star(num_corners: int, rng: np.random.Generator) -> np.ndarray:
    """(L, 2) random star-shaped polygon, counter-clockwise: increasing angles (gaps under pi), noisy radii;
    simple, and concave almost surely."""
    step = 2 * np.pi / num_corners
    angles = np.arange(num_corners) * step + rng.uniform(-0.4, 0.4, num_corners) * step
    radii = rng.uniform(0.2, 1.0, num_corners)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def regular(num_corners: int, phase: float = 0.3) -> np.ndarray:
    """(L, 2) convex regular polygon, counter-clockwise."""
    angles = phase + 2 * np.pi * np.arange(num_corners) / num_corners
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def shoelace(corners: np.ndarray) -> float:
    """Signed area of a (L, 2) polygon, positive counter-clockwise."""
    x, y = corners.T
    return 0.5 * float(x @ np.roll(y, -1) - y @ np.roll(x, -1))


def plane(seed: int, normal_axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(2, 3) orthonormal in-plane axes and (3,) offset of a tilted plane; with ``normal_axis`` (0, 1, 2, or
    3, 4, 5 for the negative ones), a plane whose normal is mostly along that axis."""
    rng = np.random.default_rng(seed)
    if normal_axis is None:
        basis = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    else:
        tilt = np.linalg.qr(np.eye(3) + 0.2 * rng.normal(size=(3, 3)))[0]  # a rotation near the identity
        axis = normal_axis % 3
        basis = np.eye(3)[[(axis + 1) % 3, (axis + 2) % 3]] @ tilt  # their cross product is about e_axis
        basis[1] *= -1 if normal_axis >= 3 else 1
    return basis[:2], rng.normal(size=3) * 5


def embed(corners: np.ndarray, axes: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(L, 2) plane coordinates -> (L, 3) points."""
    return corners @ axes + offset


def flatten(points: np.ndarray, axes: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(N, 3) points of the plane -> (N, 2) plane coordinates."""
    return (points - offset) @ axes.T


def areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3), (T, 3) -> (T,) unsigned areas."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def inside(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N,) whether each is inside the (L, 2) polygon (even-odd ray casting to +x)."""
    result = np.zeros(len(points), dtype=bool)
    x, y = points.T
    for (x0, y0), (x1, y1) in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        result ^= crosses & (x < at)
    return result


def fan(num_corners: int) -> np.ndarray:
    """(L - 2, 3) local fan from corner 0."""
    middle = np.arange(1, num_corners - 1)
    return np.stack([np.zeros_like(middle), middle, middle + 1], axis=1)


def assert_covers(
    triangles: np.ndarray, corners: np.ndarray, axes: np.ndarray, offset: np.ndarray, rel: float = 1e-9
) -> None:
    """``triangles`` of ``vertices = embed(corners)`` tile the (L, 2) polygon: their area is its shoelace
    area, their centroids lie inside it, and each keeps the polygon's winding.

    Triangles of three collinear corners (zero area, e.g. along the comb's bar) have their centroid on the
    boundary, where point-in-polygon is undecided, and take no surface samples: their centroids are skipped.
    """
    vertices = embed(corners, axes, offset)
    true_area = abs(shoelace(corners))
    area = areas(vertices, triangles)  # (T,)
    assert area.sum() == pytest.approx(true_area, rel=rel, abs=0)
    solid = area > 1e-9 * true_area
    centroids = flatten(vertices[triangles[solid]].mean(axis=1), axes, offset)  # (T', 2)
    assert inside(centroids, corners).all()
    flat = corners[triangles]  # (T, 3, 2)
    first, second = flat[:, 1] - flat[:, 0], flat[:, 2] - flat[:, 0]
    signed = first[:, 0] * second[:, 1] - first[:, 1] * second[:, 0]
    assert (signed * np.sign(shoelace(corners)) >= 0).all()  # zero: three collinear corners of the comb


# ----------------------------------------------------------------------------------------------------------
# Concave polygons
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normal_axis", [None, 0, 1, 2, 3, 4, 5])
def test_concave_comb_is_covered_exactly(normal_axis):
    """The 66-corner comb in a tilted plane: the fan is 11x too large, the triangulation exact."""
    corners = comb(16)
    assert len(corners) == 66 and shoelace(corners) == 48.0
    axes, offset = plane(1, normal_axis)
    vertices = embed(corners, axes, offset)
    assert areas(vertices, fan(66)).sum() > 10 * 48  # the bug this module fixes
    triangles = triangulate(vertices, np.arange(66)[None])
    assert triangles.dtype == np.int64 and triangles.shape == (64, 3)
    assert_covers(triangles, corners, axes, offset)


def test_clockwise_comb_keeps_its_winding():
    corners = comb(16)[::-1].copy()
    axes, offset = plane(2)
    assert_covers(triangulate(embed(corners, axes, offset), np.arange(66)[None]), corners, axes, offset)


@pytest.mark.parametrize("seed", range(3))
def test_random_star_polygons_match_the_shoelace_area(seed, monkeypatch):
    """Brute-force reference: random simple polygons of 5 to 60 corners, each in its own tilted plane, as a
    list (several lengths) with small chunks, so chunk edges and scattered output rows are crossed."""
    monkeypatch.setattr(polygons, "_CHUNK_CORNERS", 50)
    rng = np.random.default_rng(seed)
    shapes = [star(int(n), rng) for n in rng.integers(5, 61, size=60)]
    shapes = [s if i % 2 else s[::-1].copy() for i, s in enumerate(shapes)]  # both windings
    planes = [plane(100 * seed + i) for i in range(len(shapes))]
    vertices = np.concatenate([embed(s, *p) for s, p in zip(shapes, planes, strict=True)])
    starts = np.cumsum([0] + [len(s) for s in shapes])
    triangles = triangulate(vertices, [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)])
    assert len(triangles) == sum(len(s) - 2 for s in shapes)
    first = 0
    for shape, (axes, offset), start in zip(shapes, planes, starts[:-1], strict=True):
        own = triangles[first : first + len(shape) - 2] - start  # polygon order: this polygon's rows
        assert own.min() >= 0 and own.max() < len(shape)
        assert_covers(own, shape, axes, offset)
        first += len(shape) - 2


@pytest.mark.parametrize("scale", [2.0**600, 2.0**-600])
def test_huge_and_tiny_coordinates_give_the_same_triangles(scale):
    corners = np.concatenate([comb(5), star(30, np.random.default_rng(0)) + 20])
    vertices = embed(corners, *plane(3))
    faces = np.array([np.arange(22), np.arange(22, 52)], dtype=object)
    np.testing.assert_array_equal(triangulate(vertices * scale, faces), triangulate(vertices, faces))


@pytest.mark.parametrize("seed", range(4))
def test_small_polygons_far_from_the_origin(seed):
    """Millimetre polygons a kilometre away: the plane is still found (a convex one gets the fan) and the
    comb is covered, to the precision its rounded coordinates allow (1e-16 * 1e6 / 1e-3)."""
    axes, offset = plane(seed)
    offset *= 1e6 / np.linalg.norm(offset)
    vertices = embed(regular(12) * 1e-3, axes, offset)
    np.testing.assert_array_equal(triangulate(vertices, np.arange(12)[None]), fan(12))
    corners = comb(16) * 1e-3
    triangles = triangulate(embed(corners, axes, offset), np.arange(66)[None])
    assert_covers(triangles, corners, axes, offset, rel=1e-7)


def test_repeated_corner_of_a_concave_polygon_drops_no_area():
    """The ear clipper skips a repeated corner (one triangle fewer); the rows in between stay in order."""
    corners = np.array([(0, 0), (3, 0), (3, 0), (3, 3), (1.5, 1), (0, 3), (5, 5), (6, 5), (6, 6)], float)
    axes, offset = plane(5)
    vertices = embed(corners, axes, offset)
    faces = [np.array([6, 7, 8]), np.arange(6), np.array([6, 7, 8])]
    triangles = triangulate(vertices, faces)
    assert len(triangles) == 1 + 3 + 1 and (triangles >= 0).all()
    np.testing.assert_array_equal(triangles[[0, -1]], [[6, 7, 8], [6, 7, 8]])
    assert_covers(triangles[1:-1], corners[:6], axes, offset)


# ----------------------------------------------------------------------------------------------------------
# Convex polygons, darts, triangles, mixed lengths
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [4, 5, 6, 9, 32])
def test_convex_polygons_give_the_fan_exactly(length):
    rng = np.random.default_rng(length)
    shapes = [regular(length, phase) * rng.uniform(0.1, 10) for phase in rng.uniform(0, 6, 40)]
    shapes = [s if i % 2 else s[::-1] for i, s in enumerate(shapes)]
    vertices = np.concatenate([embed(s, *plane(i)) for i, s in enumerate(shapes)])
    faces = rng.permutation(len(vertices)).reshape(-1, length)  # shuffle the vertex indices
    vertices[faces.ravel()] = vertices.copy()
    expected = faces[:, fan(length)].reshape(-1, 3)
    np.testing.assert_array_equal(triangulate(vertices, faces), expected)
    np.testing.assert_array_equal(triangulate(vertices, list(faces)), expected)


def test_convex_polygon_with_a_repeated_corner_gives_the_fan():
    """A triangle written as a quad (one index twice), and a square with a collinear extra corner."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0, 0]], dtype=float)
    faces = [np.array([0, 1, 2, 2]), np.array([0, 4, 1, 2, 3])]
    expected = [[0, 1, 2], [0, 2, 2], [0, 4, 1], [0, 1, 2], [0, 2, 3]]
    np.testing.assert_array_equal(triangulate(vertices, faces), expected)


@pytest.mark.parametrize("reflex", range(4))
@pytest.mark.parametrize("clockwise", [False, True])
def test_dart_gets_the_diagonal_from_its_reflex_corner(reflex, clockwise):
    dart = np.array([(1.0, 2.0), (0.0, 0.0), (4.0, 2.0), (0.0, 4.0)])  # corner 0 is reflex
    corners = np.roll(dart, reflex, axis=0)  # now corner `reflex` is
    if clockwise:
        corners, reflex = corners[::-1].copy(), 3 - reflex
    axes, offset = plane(6)
    triangles = triangulate(embed(corners, axes, offset), np.arange(4)[None])
    q = (reflex + np.arange(4)) % 4
    np.testing.assert_array_equal(triangles, [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
    assert_covers(triangles, corners, axes, offset)


def test_many_random_darts_match_the_brute_force_diagonal(monkeypatch):
    """Brute force: of a quad's two diagonals, the one whose two triangles turn the same way as the quad."""
    monkeypatch.setattr(polygons, "_CHUNK_CORNERS", 64)
    rng = np.random.default_rng(7)
    triangle = rng.normal(size=(500, 3, 2))
    weights = rng.dirichlet(np.ones(3), size=500)[:, :, None]
    reflex = (weights * triangle).sum(axis=1, keepdims=True)  # a point inside: a dart
    quads = np.concatenate([triangle[:, :1], reflex, triangle[:, 1:]], axis=1)  # (500, 4, 2)
    quads = np.roll(quads, rng.integers(4), axis=1)
    vertices = np.concatenate([embed(q, *plane(i)) for i, q in enumerate(quads)])
    faces = np.arange(2000).reshape(500, 4)
    triangles = triangulate(vertices, faces).reshape(500, 2, 3)
    for quad, face, pair in zip(quads, faces, triangles, strict=True):
        signs = []
        for diagonal in ([[0, 1, 2], [0, 2, 3]], [[1, 2, 3], [1, 3, 0]]):
            d = quad[diagonal]  # (2, 3, 2)
            e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
            signs.append(np.sign(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]))
        good = [s[0] == s[1] == np.sign(shoelace(quad)) for s in signs]
        assert sum(good) == 1
        expected = [[0, 1, 2], [0, 2, 3]] if good[0] else [[1, 2, 3], [1, 3, 0]]
        assert sorted(map(sorted, pair.tolist())) == sorted(map(sorted, face[expected].tolist()))


def test_triangles_pass_through_unchanged():
    rng = np.random.default_rng(8)
    vertices = rng.normal(size=(50, 3))
    faces = rng.integers(0, 50, size=(200, 3)).astype(np.int32)
    faces[:10, 1] = faces[:10, 0]  # degenerate ones too
    out = triangulate(vertices, faces)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, faces)
    np.testing.assert_array_equal(triangulate(vertices, list(faces)), faces)


def test_mixed_lengths_come_out_in_polygon_order():
    corners = [np.array([(0, 0), (1, 0), (0, 1)], float), regular(4), comb(2), regular(7), comb(3)]
    vertices = np.concatenate([embed(c, *plane(10 + i)) for i, c in enumerate(corners)])
    starts = np.cumsum([0] + [len(c) for c in corners])
    faces = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    triangles = triangulate(vertices, faces)
    owners = np.searchsorted(starts, triangles, side="right") - 1  # (T, 3) polygon of each index
    assert (owners == owners[:, :1]).all()
    np.testing.assert_array_equal(owners[:, 0], np.repeat(np.arange(5), [len(c) - 2 for c in corners]))
    np.testing.assert_array_equal(triangles[: 1 + 2], [[0, 1, 2], [3, 4, 5], [3, 5, 6]])  # triangle, fan
    first = 3
    for i in (2, 3, 4):
        own = triangles[first : first + len(corners[i]) - 2] - starts[i]
        assert_covers(own, corners[i], *plane(10 + i))
        first += len(corners[i]) - 2


def test_empty_input_gives_no_triangles():
    assert triangulate(np.zeros((3, 3)), []).shape == (0, 3)
    assert triangulate(np.zeros((3, 3)), np.zeros((0, 4), dtype=np.int64)).shape == (0, 3)


# ----------------------------------------------------------------------------------------------------------
# The convexity test and its fallbacks
# ----------------------------------------------------------------------------------------------------------


def fan_hubs(corners: np.ndarray, tilted: bool = True) -> tuple[int, bool]:
    """The private classifier on one (L, 2) polygon, embedded in a tilted plane or (exactly) in z = 2."""
    vertices = embed(corners, *plane(11)) if tilted else np.insert(corners, 2, 2.0, axis=1)
    uv, orientation = polygons._project(vertices, np.arange(len(corners))[None])
    hub, exact = polygons._fan_hubs(uv, orientation)
    return int(hub[0]), bool(exact[0])


def test_classifier_takes_only_convex_polygons_and_darts_for_a_fan():
    pentagram = regular(5)[[0, 2, 4, 1, 3]]  # every turn the same way, but twice round
    twice_round = np.concatenate([regular(8), 0.5 * regular(8)])
    square_with_extra = np.array([(0, 0), (1, 0), (1, 0), (1, 1), (0.5, 1), (0, 1)], float)
    assert fan_hubs(regular(6)) == (0, True)
    assert fan_hubs(square_with_extra, tilted=False) == (0, True)  # tilted, rounding may make it concave
    assert fan_hubs(np.roll(np.array([(1.0, 2.0), (0, 0), (4, 2), (0, 4)]), 2, axis=0)) == (2, True)
    assert not fan_hubs(pentagram)[1]
    assert not fan_hubs(twice_round)[1]
    assert not fan_hubs(comb(2))[1]


def test_self_intersecting_polygons_keep_the_fan_where_ear_clipping_loses_area():
    """A bow tie and a pentagram: earcut returns fewer triangles covering a different area; the fan stays."""
    bow_tie = np.array([(0, 0), (2, 2), (2, 0), (0, 2)], float)
    pentagram = regular(5)[[0, 2, 4, 1, 3]]
    for corners in (bow_tie, pentagram):
        vertices = embed(corners, *plane(12))
        np.testing.assert_array_equal(triangulate(vertices, np.arange(len(corners))[None]), fan(len(corners)))


def test_a_spike_out_and_back_adds_no_area():
    """A unit square with a zero-width spike: a fan from corner 0 counts a triangle twice (area 1.5)."""
    corners = np.array([(0, 0), (1, 0), (1, 1), (2, 1.5), (1, 1), (0, 1)], float)
    vertices = embed(corners, *plane(18))
    assert areas(vertices, fan(6)).sum() == pytest.approx(1.5)
    assert areas(vertices, triangulate(vertices, np.arange(6)[None])).sum() == pytest.approx(
        1.0, rel=1e-9, abs=0
    )


@pytest.mark.parametrize("clockwise", [False, True])
def test_an_exact_slit_is_not_taken_for_convex(clockwise):
    """A unit square with a zero-width slit in from a corner, in the plane z = 2 (exact, so the slit's tip
    turns back with a cross product of exactly zero): every other turn is convex and the turns add up to one
    full turn for one of the windings, yet a fan from (0, 0) would cover a triangle twice (area 1.5)."""
    corners = np.array([(0, 0), (1, 0), (0.5, 0.5), (1, 0), (1, 1), (0, 1)])
    if clockwise:
        corners = np.roll(corners[::-1], 1, axis=0)  # still from (0, 0)
    vertices = np.insert(corners, 2, 2.0, axis=1)
    assert areas(vertices, fan(6)).sum() == pytest.approx(1.5)
    assert areas(vertices, triangulate(vertices, np.arange(6)[None])).sum() == pytest.approx(
        1.0, rel=1e-9, abs=0
    )


def test_polygons_without_a_plane_or_with_nan_get_the_fan_quietly():
    vertices = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [0, 1, 0], [np.nan, 0, 0], [9, 0, 0]])
    faces = np.array([[0, 1, 2, 3, 1], [4, 5, 6, 0, 2]])  # collinear; a NaN corner
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(triangulate(vertices, faces), faces[:, fan(5)].reshape(-1, 3))


def test_convex_polygons_need_no_earcut(monkeypatch):
    """The package imports, and convex polygons triangulate, without mapbox_earcut installed."""
    monkeypatch.setitem(sys.modules, "mapbox_earcut", None)  # import mapbox_earcut -> ImportError
    try:
        module = importlib.reload(polygons)
        vertices = embed(regular(6), *plane(13))
        np.testing.assert_array_equal(module.triangulate(vertices, np.arange(6)[None]), fan(6))
        with pytest.raises(ImportError):
            module.triangulate(embed(comb(2), *plane(13)), np.arange(10)[None])
    finally:
        monkeypatch.undo()
        importlib.reload(polygons)


# ----------------------------------------------------------------------------------------------------------
# Non-planar polygons: every corner is kept
# ----------------------------------------------------------------------------------------------------------


def turns_in_3d(corners: np.ndarray) -> bool:
    """Whether every corner of the (L, 3) polygon turns in 3D: no repeat, no straight or backward corner."""
    incoming = corners - np.roll(corners, 1, axis=0)
    outgoing = np.roll(incoming, -1, axis=0)
    return bool((np.linalg.norm(np.cross(incoming, outgoing), axis=1) > 1e-6).all())


def newell_normal(corners: np.ndarray) -> np.ndarray:
    """(3,) twice the vector area of an (L, 3) polygon, planar or not."""
    return np.cross(corners, np.roll(corners, -1, axis=0)).sum(axis=0)


def test_an_apex_over_an_edge_keeps_its_triangle():
    """trimesh's models/polygonfaces.obj: a square in y = 0 and an apex over the middle of one edge. Seen
    from y the apex lies on that edge; ear clipping in that projection dropped the corner before it, and
    with it a vertical triangle of 250,000 units^2. The fan keeps all five corners (what trimesh gives)."""
    vertices = np.array([[-500, 0, 500], [500, 0, 500], [500, 0, -500], [-500, 0, -500], [0, 500, -500.0]])
    triangles = triangulate(vertices, np.arange(5)[None])
    np.testing.assert_array_equal(triangles, fan(5))
    assert areas(vertices, triangles).sum() == pytest.approx(1e6 + 250_000 * np.sqrt(2), rel=1e-12)


@pytest.mark.parametrize("length", [5, 6])
def test_random_non_planar_polygons_keep_every_corner_and_their_vector_area(length):
    """Brute force: corners on a 3 x 3 grid with random integer heights, so that a corner often lies on the
    line through its neighbours in the projection used (straight ahead or turning back) while it turns in
    3D, as in trimesh's polygonfaces.obj. No corner is straight in 3D, so each must be in some triangle;
    and triangles tiling a polygon add up to its vector area, whichever triangles they are."""
    rng = np.random.default_rng(length)
    shapes = []
    while len(shapes) < 300:
        corners = np.concatenate([rng.integers(0, 3, (length, 2)), rng.integers(0, 4, (length, 1))], axis=1)
        if turns_in_3d(corners.astype(float)):
            shapes.append(corners.astype(float))
    vertices = np.concatenate(shapes)
    faces = np.arange(len(vertices)).reshape(-1, length)
    triangles = triangulate(vertices, faces)
    owner = triangles[:, 0] // length  # (T,) the polygon of each triangle
    for i, face in enumerate(faces):
        own = triangles[owner == i]
        assert set(own.ravel().tolist()) == set(face.tolist())
        first, second, third = (vertices[own[:, k]] for k in range(3))
        vector_area = np.cross(second - first, third - first).sum(axis=0)
        np.testing.assert_allclose(vector_area, newell_normal(vertices[face]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("length", [5, 6])
def test_non_planar_polygons_convex_in_projection_give_the_fans_area(length):
    """Convex polygons seen from z, with random heights, half of them with a corner raised over the middle
    of an edge (straight in the projection, not in 3D): the fan, and so its 3D area, whatever the heights.
    Integer corners put the middle exactly on the edge."""
    rng = np.random.default_rng(10 + length)
    shapes = []
    for i in range(200):
        flat = np.round(regular(length - i % 2, rng.uniform(0, 6)) * 64)  # (L or L - 1, 2) strictly convex
        if i % 2:  # a corner in the middle of the edge from the last corner back to the first
            flat = np.concatenate([flat, 0.5 * (flat[-1:] + flat[:1])])
        corners = np.insert(flat, 2, rng.uniform(-10, 10, length), axis=1)  # (L, 3)
        assert np.abs(newell_normal(corners)).argmax() == 2  # seen from z: convex
        shapes.append(corners if i % 4 < 2 else corners[::-1].copy())
    vertices = np.concatenate(shapes)
    faces = np.arange(len(vertices)).reshape(-1, length)
    triangles = triangulate(vertices, faces)
    expected = faces[:, fan(length)].reshape(-1, 3)
    assert areas(vertices, triangles).sum() == pytest.approx(areas(vertices, expected).sum(), rel=1e-12)
    for face, own in zip(faces, triangles.reshape(len(faces), length - 2, 3), strict=True):
        assert set(own.ravel().tolist()) == set(face.tolist())


def test_corners_straight_in_3d_are_still_left_out():
    """What ear clipping gets right stays right for a concave, non-planar pentagon: a repeated corner, and a
    spike out and back along a 3D line, are left out with no area (a fan would fold over and count the
    spike twice)."""
    vertices = np.array([[0, 0, 0], [4, 0, 2], [4, 3, 0], [2, 1, 5], [0, 3, 0], [5, 0, 1]], float)
    area = areas(vertices, triangulate(vertices, np.arange(5)[None])).sum()
    for face in ([0, 1, 1, 2, 3, 4], [0, 1, 5, 1, 2, 3, 4]):
        triangles = triangulate(vertices, [np.array(face)])
        assert len(triangles) == 3 and set(triangles.ravel().tolist()) == set(range(5))
        assert areas(vertices, triangles).sum() == pytest.approx(area, rel=1e-12)
    assert areas(vertices, np.array([0, 1, 5, 1, 2, 3, 4])[fan(7)]).sum() > area + 1  # the fan's spike


# ----------------------------------------------------------------------------------------------------------
# Refusals and memory
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("faces", [[np.array([0, 1, 2]), np.array([0, 1])], np.array([[0, 1], [1, 2]])])
def test_faces_need_three_indices(faces):
    with pytest.raises(ShapeError, match="a face has 2 vertex indices; faces need at least 3"):
        triangulate(np.zeros((3, 3)), faces)


def test_too_many_vertices_in_one_face(monkeypatch):
    monkeypatch.setattr(polygons, "MAX_POLYGON_VERTICES", 8)
    vertices = embed(regular(9), *plane(14))
    with pytest.raises(ShapeError, match="a face has 9 vertex indices, over the limit of 8.*MAX_POLYGON"):
        triangulate(vertices, np.arange(9)[None])
    assert triangulate(vertices[:8], np.arange(8)[None]).shape == (6, 3)


def test_too_many_vertices_to_ear_clip(monkeypatch):
    """Only concave faces are limited by MAX_EAR_CLIP_VERTICES: convex ones take the fan at any size."""
    monkeypatch.setattr(polygons, "MAX_EAR_CLIP_VERTICES", 8)
    with pytest.raises(ShapeError, match="a concave face has 10 vertex indices.*MAX_EAR_CLIP_VERTICES"):
        triangulate(embed(comb(2), *plane(15)), np.arange(10)[None])
    assert triangulate(embed(regular(10), *plane(15)), np.arange(10)[None]).shape == (8, 3)


@pytest.mark.parametrize("bad", [-1, 5])
def test_indices_out_of_range(bad):
    with pytest.raises(ShapeError, match=f"a face refers to vertex {bad}, but the file has 5 vertices"):
        triangulate(np.zeros((5, 3)), [np.array([0, 1, 2]), np.array([0, bad, 2, 3])])


def test_fractional_indices_are_refused():
    with pytest.raises(ShapeError, match="integers"):
        triangulate(np.zeros((5, 3)), np.array([[0, 1, 2.5]]))


def test_memory_budget_is_claimed_before_building():
    vertices = embed(regular(40), *plane(16))
    with read_budget(1e-6), pytest.raises(ShapeError, match="over the memory limit of 1e-06 GiB"):
        triangulate(vertices, np.arange(40)[None])
    with read_budget(1e-3):  # 1 MiB is plenty
        assert triangulate(vertices, np.arange(40)[None]).shape == (38, 3)


def test_a_huge_implied_triangle_count_is_refused_without_allocating_it():
    faces = np.broadcast_to(np.arange(4), (100_000_000, 4))  # 200 million triangles, stored in 32 bytes
    tracemalloc.start()
    try:
        with pytest.raises(ShapeError, match="200,000,000 triangles.*over the memory limit"):
            triangulate(np.zeros((4, 3)), faces)
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", ["quads", "mixed", "concave"])
def test_claim_covers_what_is_allocated(case, monkeypatch):
    """The claimed bytes are an upper bound of the traced peak (numpy's allocations, not earcut's own)."""
    rng = np.random.default_rng(17)
    if case == "quads":  # a 200 x 200 grid: several chunks
        x, y = np.meshgrid(np.arange(201.0), np.arange(201.0), indexing="ij")
        vertices = np.stack([x.ravel(), y.ravel(), rng.normal(size=x.size) * 0.1], axis=1)
        corner = (np.arange(200)[:, None] * 201 + np.arange(200)).ravel()
        faces = np.stack([corner, corner + 201, corner + 202, corner + 1], axis=1)
    elif case == "mixed":  # random indices: mostly self-intersecting, ear-clipped
        vertices = rng.normal(size=(1000, 3))
        faces = [rng.integers(0, 1000, size=n) for n in rng.integers(3, 9, size=3000)]
    else:
        corners = star(5000, rng)
        vertices, faces = embed(corners, *plane(17)), np.arange(5000)[None]
    claimed = []
    monkeypatch.setattr(polygons, "claim", lambda num_bytes, what: claimed.append(num_bytes))
    tracemalloc.start()
    try:
        triangulate(vertices, faces)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= sum(claimed) < 4 * peak + 2**25
