"""Triangulation of a mesh file's polygons that is exact for concave ones too.

A fan from a polygon's first corner covers a convex polygon exactly, but folds over a concave one (a 66-corner
comb comes out at many times its area, and surface samples land outside it). So each polygon of four or more
corners is projected onto its own plane and tested for convexity, all polygons of one length at once:

* convex polygons (every turn the same way round, turning once in all) get the fan, as before;
* a quad with one reflex corner (a dart) gets the fan from that corner, its only inside diagonal;
* every other polygon is ear-clipped by ``mapbox_earcut``, one at a time, in the same projection. Its L - 2
  triangles are kept as they are (for a self-intersecting polygon no triangulation is right). Fewer than
  L - 2 means it dropped repeated or collinear corners (no area) or gave up on a self-intersecting polygon:
  its triangles are kept when their area equals the polygon's shoelace area (compared in the projection,
  which scales every area of a planar polygon alike), their vector area the polygon's in 3D, and the
  corners they leave out are straight in 3D (a projection can make a corner raised over an edge look
  collinear); else the fan is kept, so no area is dropped silently, for non-planar polygons too;
* polygons with no plane (all corners collinear: zero area whatever the triangles) or with a non-finite
  coordinate (their faces are dropped later) get the fan.

Triangles keep the polygon's winding, and come out in polygon order: those of polygon i, then of i + 1.
The memory is claimed from the read's budget before anything is built, and a polygon too long to ear-clip in
seconds is refused (:data:`MAX_POLYGON_VERTICES`, :data:`MAX_EAR_CLIP_VERTICES`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .checks import ShapeError, check_face_indices, claim, to_unit_range

MAX_POLYGON_VERTICES = 2**20  # a face with more vertex indices is refused
# A face that must be ear-clipped with more vertex indices is refused: earcut's time grows about as L^2 on
# spiky polygons (random stars: 0.06 s at 2^14 corners, 1.2 s at 2^16, 100 s at 2^18).
MAX_EAR_CLIP_VERTICES = 2**16

_CHUNK_CORNERS = 2**16  # polygon corners analysed at once: bounds the working arrays, keeps numpy calls big
_BYTES_PER_TRIANGLE = 24  # the (T, 3) int64 output
_BYTES_PER_POLYGON = 64  # lengths, first output rows, the rows of one length (measured: about 40)
_BYTES_PER_CORNER = 160  # working arrays of one chunk (measured: about 90)
_EARCUT_BYTES_PER_CORNER = 256  # the 2D copy, earcut's nodes and z-order index, its triangles (about 180)
_TURNING_TOLERANCE = 1e-6  # radians: total turning of a convex polygon is 2 pi up to rounding
_AREA_TOLERANCE = 1e-9  # relative to the fan's unsigned area, which bounds the shoelace sum's rounding


def triangulate(vertices: np.ndarray, polygons: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Split polygons into triangles, exactly for concave ones too (see the module docstring).

    Args:
        vertices: (V, 3) real coordinates; non-finite ones are allowed (their polygons get the fan).
        polygons: (F, L) int array of one length L, or a sequence of F 1-D int arrays (or lists).

    Returns:
        (T, 3) int64 triangles indexing ``vertices``, T = sum(L_i - 2) (less where ear clipping dropped
        triangles of zero area in 3D, at repeated or collinear corners).

    Raises:
        ShapeError: a polygon with fewer than 3 or more than :data:`MAX_POLYGON_VERTICES` indices, a concave
            one with more than :data:`MAX_EAR_CLIP_VERTICES`, an index outside 0 .. V - 1, indices that are
            not integers, or triangles over the read's memory budget (:func:`~.checks.claim`).
    """
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got shape {vertices.shape}")
    lengths = _lengths(polygons)  # (F,)
    if not len(lengths):
        return np.empty((0, 3), dtype=np.int64)
    check_lengths(lengths)
    num_triangles = int(lengths.sum()) - 2 * len(lengths)
    claim(
        _estimate_bytes(lengths, num_triangles),
        f"the {num_triangles:,} triangles of {len(lengths):,} face(s)",
    )
    out = np.empty((num_triangles, 3), dtype=np.int64)
    starts = np.cumsum(lengths - 2) - (lengths - 2)  # (F,) first output row of each polygon
    has_gaps = False  # whether the ear clipper left rows empty (marked -1)
    for length, rows in _by_length(polygons, lengths):
        step = max(1, _CHUNK_CORNERS // length)
        for begin in range(0, len(rows), step):
            chunk = rows[begin : begin + step]
            polys = _take(polygons, chunk)  # (n, L)
            check_face_indices(polys, len(vertices))
            has_gaps |= _triangulate_chunk(vertices, polys, starts[chunk], out)
    return _without_gaps(out) if has_gaps else out


# ----------------------------------------------------------------------------------------------------------
# Input checks and memory
# ----------------------------------------------------------------------------------------------------------


def _is_uniform(polygons: np.ndarray | Sequence[np.ndarray]) -> bool:
    return isinstance(polygons, np.ndarray) and polygons.dtype != object


def _by_length(
    polygons: np.ndarray | Sequence[np.ndarray], lengths: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """(length L, (F_L,) indices of the polygons of that length) for each length, shortest first."""
    if _is_uniform(polygons):
        yield polygons.shape[1], np.arange(len(polygons))
        return
    for length in np.unique(lengths):
        yield int(length), np.flatnonzero(lengths == length)


def _lengths(polygons: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(F,) int64 number of indices of each polygon."""
    if _is_uniform(polygons):
        if polygons.ndim != 2:
            raise ValueError(f"a polygon array must be (F, L), got shape {polygons.shape}")
        return np.broadcast_to(np.int64(polygons.shape[1]), len(polygons))  # a view: no memory before claim
    return np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))


def check_lengths(lengths: np.ndarray) -> None:
    """Refuse a polygon of fewer than 3 or more than :data:`MAX_POLYGON_VERTICES` indices; readers call it
    on the lengths alone, before they copy or parse the indices (one face can list 30 M of them)."""
    if not len(lengths):
        return
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest < 3:
        raise ShapeError(f"a face has {shortest} vertex indices; faces need at least 3")
    if longest > MAX_POLYGON_VERTICES:
        raise ShapeError(
            f"a face has {longest:,} vertex indices, over the limit of {MAX_POLYGON_VERTICES:,} per face "
            f"(MAX_POLYGON_VERTICES)"
        )


def _estimate_bytes(lengths: np.ndarray, num_triangles: int) -> int:
    """Upper estimate of what :func:`triangulate` allocates for polygons of (F,) ``lengths``."""
    longest = int(lengths.max())
    working = _BYTES_PER_CORNER * max(min(int(lengths.sum()), _CHUNK_CORNERS), longest)
    earcut = _EARCUT_BYTES_PER_CORNER * min(longest, MAX_EAR_CLIP_VERTICES) if longest > 4 else 0
    return _BYTES_PER_TRIANGLE * num_triangles + _BYTES_PER_POLYGON * len(lengths) + working + earcut


def _take(polygons: np.ndarray | Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """(n,) rows of polygons of one length L -> (n, L) int64."""
    if _is_uniform(polygons):
        taken = polygons[rows]
    else:
        taken = np.stack([np.asarray(polygons[i]) for i in rows])
    if taken.dtype.kind not in "iu":
        raise ShapeError(f"vertex indices must be integers, got {taken.dtype}")
    return taken.astype(np.int64, copy=False)


def _without_gaps(out: np.ndarray) -> np.ndarray:
    """(T, 3) -> its (T', 3) rows not marked -1, moved up in place a chunk at a time: no second (T, 3)."""
    kept = 0
    for begin in range(0, len(out), _CHUNK_CORNERS):
        block = out[begin : begin + _CHUNK_CORNERS]
        block = block[block[:, 0] >= 0]  # a copy: the move below may overlap it
        out[kept : kept + len(block)] = block
        kept += len(block)
    return out[:kept]


# ----------------------------------------------------------------------------------------------------------
# Geometry, vectorised over polygons of one length
# ----------------------------------------------------------------------------------------------------------


def _triangulate_chunk(vertices: np.ndarray, polys: np.ndarray, starts: np.ndarray, out: np.ndarray) -> bool:
    """Write the triangles of (n, L) polygons into ``out`` from their (n,) ``starts``; -> whether some rows
    were left empty (marked -1: ear clipping dropped zero-area triangles)."""
    length = polys.shape[1]
    if length == 3:
        _write(out, starts, polys[:, None])
        return False
    uv, orientation = _project(vertices, polys)  # (2, L, n), (n,)
    hub, fan_is_exact = _fan_hubs(uv, orientation)  # (n,), (n,)
    rolled = (
        np.take_along_axis(polys, (np.arange(length) + hub[:, None]) % length, axis=1) if hub.any() else polys
    )
    _write(out, starts, _fan(rolled))
    concave = np.flatnonzero(~fan_is_exact)
    if len(concave) and length > MAX_EAR_CLIP_VERTICES:
        raise ShapeError(
            f"a concave face has {length:,} vertex indices, over the limit of {MAX_EAR_CLIP_VERTICES:,} "
            f"for faces that must be ear-clipped (MAX_EAR_CLIP_VERTICES)"
        )
    clipped = (uv[..., concave], orientation[concave], polys[concave])
    return _ear_clip_into(out, vertices, *clipped, starts[concave])


def _ear_clip_into(
    out: np.ndarray,
    vertices: np.ndarray,
    uv: np.ndarray,
    orientation: np.ndarray,
    polys: np.ndarray,
    starts: np.ndarray,
) -> bool:
    """Overwrite the fans of (m, L) polygons, projected to (2, L, m), with their ear clipping where it is
    kept (see :func:`_ear_clip`); -> whether some rows were left empty (marked -1)."""
    length = polys.shape[1]
    has_gaps = False
    for j in range(len(polys)):
        triangles = _ear_clip(uv[..., j].T, orientation[j], vertices[polys[j]])  # (t, 3) local, or None
        if triangles is not None:
            rows = out[starts[j] : starts[j] + length - 2]
            rows[: len(triangles)] = polys[j][triangles]
            rows[len(triangles) :] = -1
            has_gaps |= len(triangles) < length - 2
    return has_gaps


def _write(out: np.ndarray, starts: np.ndarray, triangles: np.ndarray) -> None:
    """Put (n, k, 3) triangles into ``out`` rows ``starts[i]`` .. ``starts[i] + k - 1`` for each polygon i."""
    n, k = triangles.shape[:2]
    if starts[-1] - starts[0] == (n - 1) * k:  # consecutive polygons (always for an (F, L) array): a slice
        out[starts[0] : starts[0] + n * k] = triangles.reshape(-1, 3)
    else:
        out[starts[:, None] + np.arange(k)] = triangles


def _fan(polys: np.ndarray) -> np.ndarray:
    """(n, L) polygons -> (n, L - 2, 3) triangles fanning out from each polygon's first corner."""
    triangles = np.empty((polys.shape[0], polys.shape[1] - 2, 3), dtype=np.int64)
    triangles[..., 0] = polys[:, :1]
    triangles[..., 1] = polys[:, 1:-1]
    triangles[..., 2] = polys[:, 2:]
    return triangles


def _project(vertices: np.ndarray, polys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, L) polygons -> (2, L, n) corners in each polygon's plane, and (n,) orientation.

    Arrays are (coordinate, corner, polygon): sums over corners then add whole rows, fast for short L. The
    plane's normal is Newell's (twice the vector area, defined for non-planar polygons too); the projection
    drops its largest component and keeps the other two in cyclic order, so a positive 2D cross product turns
    the way the polygon winds when ``orientation`` is +1. Orientation 0: no plane (zero or non-finite normal).
    """
    corners = np.ascontiguousarray(np.moveaxis(vertices[polys.T], 2, 0), dtype=np.float64)  # (3, L, n)
    finite = np.isfinite(corners).all(axis=(0, 1))  # (n,)
    if not finite.all():
        corners[~np.isfinite(corners)] = 0  # their polygons get orientation 0 below
    corners -= corners[:, :1]  # relative to the first corner: no cancellation far from the origin
    corners = to_unit_range(corners)  # any shape: no overflow or underflow in the products below
    x, y, z = corners  # (L, n) each
    x1, y1, z1 = np.roll(corners, -1, axis=1)  # the next corners
    normal = np.stack(
        [(y * z1 - z * y1).sum(0), (z * x1 - x * z1).sum(0), (x * y1 - y * x1).sum(0)]
    )  # (3, n)
    axis = np.abs(normal).argmax(axis=0)  # (n,) the one to drop
    orientation = np.sign(normal[axis, np.arange(len(axis))]) * finite  # (n,)
    u = np.where(axis == 0, y, np.where(axis == 1, z, x))  # (L, n): the other two axes, in cyclic order
    v = np.where(axis == 0, z, np.where(axis == 1, x, y))
    return np.stack([u, v]), orientation


def _fan_hubs(uv: np.ndarray, orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, L, n) projected polygons -> (n,) the corner to fan from, and (n,) whether that fan is exact.

    The fan is exact from any corner of a convex polygon: every turn goes the polygon's way round (zero
    turns, at collinear corners, allowed) and they add up to one full turn, not two as in a pentagram. A quad
    with one reflex corner is fanned from that corner. A polygon with no plane takes the fan.

    Quads need no arctangents: their turns lie in (-pi, pi), so with no reflex corner (or one) they add up
    to 0 or 2 pi, and 0 is impossible (edges whose directions span less than a half-turn cannot close up).
    """
    turn, dot = _turns(uv)  # (L, n) each
    turn *= orientation  # positive: turning the polygon's way round
    reflex = turn < 0  # (L, n)
    num_reflex = reflex.sum(axis=0)  # (n,)
    candidate = ~((turn == 0) & (dot < 0)).any(axis=0)  # doubling back on itself: neither convex nor a dart
    if uv.shape[1] > 4:
        candidate &= num_reflex == 0
        turning = np.arctan2(turn[:, candidate], dot[:, candidate]).sum(axis=0)  # 2 pi * turning number
        candidate[candidate] = np.abs(turning - 2 * np.pi) < _TURNING_TOLERANCE
    convex = candidate & (num_reflex == 0)
    hub = np.zeros(len(orientation), dtype=np.int64)
    if uv.shape[1] == 4:  # a simple quad's one reflex corner sees the opposite corner: its only diagonal
        dart = candidate & (num_reflex == 1)
        hub[dart] = reflex[:, dart].argmax(axis=0)
        convex |= dart
    return hub, convex | (orientation == 0)


def _turns(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, L, n) polygons -> cross and dot products of each edge with the previous non-zero edge, (L, n) each.

    Edge i goes from corner i to corner i + 1, so its turn is at corner i; a zero edge (a repeated corner)
    turns by nothing (cross 0, dot 1), and the next edge turns from the edge before it: no turn is missed.
    """
    edges = np.roll(uv, -1, axis=1) - uv  # (2, L, n)
    nonzero = (edges != 0).any(axis=0)  # (L, n)
    if nonzero.all():
        before = np.roll(edges, 1, axis=1)
    else:
        before = np.take_along_axis(edges, _previous(nonzero)[None], axis=1)
    turn = before[0] * edges[1] - before[1] * edges[0]
    dot = before[0] * edges[0] + before[1] * edges[1]
    return np.where(nonzero, turn, 0.0), np.where(nonzero, dot, 1.0)


def _previous(nonzero: np.ndarray) -> np.ndarray:
    """(L, n) bool -> (L, n) index of the last True strictly before each position, cyclically."""
    length = len(nonzero)
    positions = np.where(np.tile(nonzero, (2, 1)), np.arange(2 * length)[:, None], -1)  # (2L, n): two laps
    latest = np.maximum.accumulate(positions, axis=0)  # (2L, n)
    return latest[length - 1 : 2 * length - 1] % length


# ----------------------------------------------------------------------------------------------------------
# Ear clipping, one polygon at a time
# ----------------------------------------------------------------------------------------------------------


def _ear_clip(uv: np.ndarray, orientation: float, corners: np.ndarray) -> np.ndarray | None:
    """(L, 2) projected polygon and its (L, 3) corners -> (t, 3) local triangles keeping its winding,
    t <= L - 2; None: keep the fan.

    Fewer than L - 2 triangles are kept only when their area equals the polygon's shoelace area, their vector
    area its vector area in 3D, and the corners they leave out are straight in 3D: earcut drops repeated and
    collinear corners (no area lost), but also gives up on some self-intersecting polygons, and takes a
    corner raised over an edge for collinear (a projection hides heights).
    """
    import mapbox_earcut  # optional: only concave polygons need it

    length = len(uv)
    flat = mapbox_earcut.triangulate_float64(np.ascontiguousarray(uv), np.array([length], dtype=np.uint32))
    triangles = flat.reshape(-1, 3).astype(np.int64)  # (t, 3)
    area = _twice_areas(uv[triangles])  # (t,) signed
    flip = area * orientation < 0
    triangles[flip] = triangles[flip][:, ::-1]
    if len(triangles) == length - 2:
        return triangles
    terms = _shoelace_terms(uv)  # (L,) their sum is twice the polygon's signed area
    same_area = abs(np.abs(area).sum() - abs(terms.sum())) <= _AREA_TOLERANCE * np.abs(terms).sum()
    if not same_area:
        return None
    corners = np.asarray(corners, dtype=np.float64)
    corners = to_unit_range(corners - corners[0])  # (L, 3): no overflow in the products below
    kept = _same_vector_area(corners, triangles) and _left_out_are_straight(corners, triangles)
    return triangles if kept else None


def _same_vector_area(corners: np.ndarray, triangles: np.ndarray) -> bool:
    """Whether (t, 3) triangles, wound as the (L, 3) polygon, add up to its vector area in 3D.

    Triangles tiling a polygon (any surface it bounds) add up to its vector area; those earcut left out have
    no area in the projection, so they are missing from this sum only if they have none in 3D either: a
    repeated or collinear corner, a spike out and back, but not an apex raised over an edge.
    """
    ends = corners[triangles]  # (t, 3 corners, 3)
    parts = np.cross(ends[:, 1] - ends[:, 0], ends[:, 2] - ends[:, 0])  # (t, 3) twice their vector areas
    whole = np.cross(corners, np.roll(corners, -1, axis=0))  # (L, 3) adding up to twice the polygon's
    bound = np.linalg.norm(parts, axis=1).sum() + np.linalg.norm(whole, axis=1).sum()  # bounds the rounding
    return bool(np.linalg.norm(parts.sum(axis=0) - whole.sum(axis=0)) <= _AREA_TOLERANCE * bound)


def _left_out_are_straight(corners: np.ndarray, triangles: np.ndarray) -> bool:
    """Whether the (L, 3) polygon's corners that no triangle uses can be removed one at a time, each a repeat
    of a neighbour or straight between them in 3D: earcut's own filter, redone where heights are seen.

    It catches what the vector area misses: left-out triangles whose vector areas cancel (a bow tie standing
    on the projection's line). Removing a corner joins its neighbours, which can make a left-out neighbour
    removable (a spike's tip goes first, then the repeated corner at its foot): they are looked at again.
    """
    length = len(corners)
    left_out = np.ones(length, dtype=bool)  # (L,) not used and not removed yet
    left_out[triangles.ravel()] = False
    before, after = np.roll(np.arange(length), 1), np.roll(np.arange(length), -1)  # a linked ring
    queue = np.flatnonzero(left_out).tolist()
    while queue:
        corner = queue.pop()
        prev, following = before[corner], after[corner]
        if not left_out[corner] or not _is_straight(corners[prev], corners[corner], corners[following]):
            continue
        left_out[corner] = False
        after[prev], before[following] = following, prev
        queue += [int(c) for c in (prev, following) if left_out[c]]
    return not left_out.any()


def _is_straight(prev: np.ndarray, corner: np.ndarray, following: np.ndarray) -> bool:
    """Whether the path prev -> corner -> following (3D) does not turn: an edge of length 0, or a turn whose
    sine is within :data:`_AREA_TOLERANCE` (turning right back, as at a spike's tip, encloses no area)."""
    incoming, outgoing = corner - prev, following - corner
    bound = _AREA_TOLERANCE * np.linalg.norm(incoming) * np.linalg.norm(outgoing)
    return bool(np.linalg.norm(np.cross(incoming, outgoing)) <= bound)


def _shoelace_terms(uv: np.ndarray) -> np.ndarray:
    """(L, 2) polygon -> (L,) cross products of consecutive corners, whose sum is twice its signed area.

    Corner 0 is at the origin (see :func:`_project`), so the terms are twice the areas of the fan from it, and
    their absolute sum bounds the rounding of the area.
    """
    following = np.roll(uv, -1, axis=0)
    return uv[:, 0] * following[:, 1] - uv[:, 1] * following[:, 0]


def _twice_areas(corners: np.ndarray) -> np.ndarray:
    """(t, 3, 2) triangles -> (t,) twice their signed areas."""
    first, second = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    return first[:, 0] * second[:, 1] - first[:, 1] * second[:, 0]
