"""What every shape file must satisfy, whichever library read it: the limits, the finite and distinct points,
the faces; and :class:`Shape`, the validated result with the notes a user should see.

The limits are module globals read when a check runs, so a test (or a deployment) can change them here.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

MAX_FILE_BYTES = 256 * 2**20  # a file, and anything decompressed from it, larger than this is refused
MAX_POINTS = 5_000_000  # points of a cloud or vertices of a mesh
MAX_FACES = 10_000_000  # faces of a mesh (rows read one by one in the worst case: ~1 s per million)
MIN_DISTINCT_POINTS = 16  # a cloud needs at least this many distinct finite points to be tokenised
# Memory one read may allocate (file bytes, decompressed bytes, parsed arrays, triangles), in GiB: the
# default of ``--max-gib``, the same knob and default as a data set's limit (i2pmae.data.limits).
MAX_GIB = 2.0
GIB = 2**30

_MIB = 2**20
_DISTINCT_PROBE = 4096  # points checked for distinctness before falling back to the whole cloud
_AREA_PROBE = 4096  # faces checked for a positive area before falling back to the whole mesh
_FACE_CHUNK = 1 << 18  # faces whose corners are gathered at once: ~20 MB of working arrays, whatever F
_MAX_EXACT_INT = 2**53  # float64 integers beyond this are not exact
_SAFE_RANGE = (2.0**-60, 2.0**60)  # largest |coordinate| whose squares float32 holds as normal numbers


class ShapeError(ValueError):
    """A shape file that cannot be used; the message names the file and says what is wrong with it."""


@dataclass(frozen=True, eq=False)  # arrays: compare the fields, not the shapes
class Shape:
    """Validated content of a shape file, in the file's own units.

    Attributes:
        points: (N, 3) float64, the cloud's points or the mesh's vertices; all finite.
        faces: (F, 3) int64 triangles indexing ``points`` (polygons split by :mod:`~i2pmae.io.polygons`),
            or None for a cloud.
        notes: short sentences about what the loader did that the user should know (points dropped, a
            header row skipped, columns ignored, ...); empty for a file read exactly as written.
    """

    points: np.ndarray
    faces: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None


class Parsed(NamedTuple):
    """What a format reader returns, before the checks of :func:`validated`."""

    points: np.ndarray  # (N, 3) any real dtype
    faces: np.ndarray | None = None  # (F, 3) int triangles, or None for a cloud
    notes: tuple[str, ...] = ()


def format_size(num_bytes: int) -> str:
    """1,234 bytes, 12.3 MiB or 4.6 GiB (a file that implies terabytes reads as 7,311.5 GiB)."""
    if num_bytes >= GIB:
        return f"{num_bytes / GIB:,.1f} GiB"
    return f"{num_bytes / _MIB:.1f} MiB" if num_bytes >= _MIB else f"{num_bytes:,} bytes"


def check_size(num_bytes: int, what: str, qualifier: str = "") -> None:
    """Refuse ``what`` (e.g. "the file") when it is larger than :data:`MAX_FILE_BYTES`."""
    if num_bytes > MAX_FILE_BYTES:
        size = f"{format_size(num_bytes)} {qualifier}".rstrip()
        raise ShapeError(
            f"{what} is {size}, over the limit of {format_size(MAX_FILE_BYTES)} (MAX_FILE_BYTES)"
        )


class ReadBudget:
    """Bytes one :func:`~i2pmae.io.read_shape` call may allocate; a reader claims each large buffer *before*
    it allocates it, so a small file that implies a huge one (a fan, a declared size, instancing, a
    compressed body) is refused without being built."""

    def __init__(self, max_gib: float = MAX_GIB) -> None:
        if isinstance(max_gib, bool) or not isinstance(max_gib, (int, float)) or not 0 < max_gib < math.inf:
            raise ShapeError(f"max_gib must be a positive number of GiB, got {max_gib!r}")
        self.max_gib = float(max_gib)
        self.used = 0

    @property
    def limit(self) -> int:
        return int(self.max_gib * GIB)

    def claim(self, num_bytes: int, what: str) -> None:
        """Count ``num_bytes`` more for ``what``; a ShapeError naming the limit when the total passes it."""
        self.used += int(num_bytes)
        if self.used > self.limit:
            raise ShapeError(
                f"{what} would take {format_size(int(num_bytes))}, which brings this file to "
                f"{format_size(self.used)}, over the memory limit of {self.max_gib:g} GiB per file "
                f"(max_gib; --max-gib on the command line)"
            )


_budget: contextvars.ContextVar[ReadBudget | None] = contextvars.ContextVar("read_budget", default=None)


@contextlib.contextmanager
def read_budget(max_gib: float = MAX_GIB) -> Iterator[ReadBudget]:
    """The budget :func:`claim` charges while reading one file (nested reads share the outer one)."""
    outer = _budget.get()
    if outer is not None:
        yield outer
        return
    token = _budget.set(ReadBudget(max_gib))
    try:
        yield _budget.get()
    finally:
        _budget.reset(token)


def claim(num_bytes: int, what: str) -> None:
    """Charge ``num_bytes`` that a reader is about to allocate to the current read's budget (see
    :class:`ReadBudget`); outside :func:`read_budget`, to a fresh default budget."""
    budget = _budget.get()
    (budget if budget is not None else ReadBudget()).claim(num_bytes, what)


def check_count(count: int, noun: str, *, faces: bool = False) -> None:
    """Refuse more than :data:`MAX_POINTS` points or vertices (:data:`MAX_FACES` faces with ``faces``)."""
    limit, name = (MAX_FACES, "MAX_FACES") if faces else (MAX_POINTS, "MAX_POINTS")
    if count > limit:
        raise ShapeError(f"{count:,} {noun}, over the limit of {limit:,} ({name})")


def to_unit_range(points: np.ndarray) -> np.ndarray:
    """(N, 3) float64 whose float32 casts and squares stay finite and normal, whatever the file's units.

    Coordinates whose largest absolute value lies outside 2^-60 .. 2^60 (1e-300 or 1e300) are scaled by a
    power of two into [0.5, 1); others are returned as they are. The scaling is exact (no rounding), so
    every later result equals the unscaled one up to that factor.
    """
    largest = max(float(points.max()), -float(points.min())) if points.size else 0.0
    if _SAFE_RANGE[0] <= largest <= _SAFE_RANGE[1] or largest == 0.0:
        return points  # the same result as scaling, without the copy
    return np.ldexp(points, -math.frexp(largest)[1])  # (N, 3)


def validated(parsed: Parsed, notes: Sequence[str] = ()) -> Shape:
    """Apply the package docstring's checks to a reader's output; ``notes`` come from opening the file."""
    faces = parsed.faces if parsed.faces is not None and len(parsed.faces) else None
    num_faces = 0 if faces is None else len(faces)
    check_count(num_faces, "faces", faces=True)
    # float64 points and their finite mask, int64 faces and what sampling keeps of them (8 bytes a face)
    claim(32 * len(parsed.points) + 32 * num_faces, "checking the points and faces")
    points = np.ascontiguousarray(parsed.points, dtype=np.float64)
    notes = (*notes, *parsed.notes)
    noun = "points" if faces is None else "vertices"
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ShapeError(f"the file holds no {noun}")
    check_count(len(points), noun)
    if faces is not None:
        faces = np.ascontiguousarray(faces, dtype=np.int64)
        check_face_indices(faces, len(points))
    finite = np.isfinite(points).all(axis=1)  # (N,)
    if not finite.all():
        points, faces, note = _drop_non_finite(points, faces, finite, noun)
        notes = (*notes, note)
    if faces is None:
        _check_distinct(points, notes)
        return Shape(points=points, notes=notes)
    _check_area(points, faces)
    return Shape(points=points, faces=faces, notes=notes)


def _drop_non_finite(
    points: np.ndarray, faces: np.ndarray | None, finite: np.ndarray, noun: str
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Drop points (and faces using them) with a NaN or infinite coordinate; the note says how many."""
    note = f"{int((~finite).sum()):,} of {len(points):,} {noun} have NaN or infinite coordinates"
    if not finite.any():
        raise ShapeError(f"no {noun} with finite coordinates: {note}")
    if faces is None:
        return points[finite], None, f"{note} and were dropped"
    kept_faces = finite[faces].all(axis=1)  # (F,)
    note += f"; they and the {int((~kept_faces).sum()):,} face(s) using them were dropped"
    if not kept_faces.any():
        raise ShapeError(f"every face uses a vertex with NaN or infinite coordinates ({note})")
    new_index = np.cumsum(finite) - 1  # (V,), index of each kept vertex among the kept ones
    return points[finite], new_index[faces[kept_faces]], note


def _check_distinct(points: np.ndarray, notes: Sequence[str]) -> None:
    """At least :data:`MIN_DISTINCT_POINTS` distinct rows; a small probe settles almost every real cloud."""
    distinct = len(np.unique(points[:_DISTINCT_PROBE], axis=0))
    if distinct < MIN_DISTINCT_POINTS and len(points) > _DISTINCT_PROBE:
        distinct = len(np.unique(points, axis=0))
    if distinct < MIN_DISTINCT_POINTS:
        dropped = [note for note in notes if "NaN" in note]
        reason = f" ({dropped[0]})" if dropped else ""
        raise ShapeError(
            f"the cloud has only {distinct} distinct point(s); "
            f"at least {MIN_DISTINCT_POINTS} are needed{reason}"
        )


def check_face_indices(faces: np.ndarray, num_vertices: int) -> None:
    """Every index of ``faces`` (any shape) is a vertex: 0 .. num_vertices - 1."""
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= num_vertices:
        bad = low if low < 0 else high
        raise ShapeError(
            f"a face refers to vertex {bad}, but the file has {num_vertices:,} vertices "
            f"(valid indices 0 to {num_vertices - 1:,})"
        )


def _check_area(points: np.ndarray, faces: np.ndarray) -> None:
    """Some face has a positive area; the first faces settle almost every real mesh."""
    if _any_area(points, faces[:_AREA_PROBE]) or (len(faces) > _AREA_PROBE and _any_area(points, faces)):
        return
    raise ShapeError(f"every one of the {len(faces):,} faces has zero area: there is no surface to sample")


def _any_area(points: np.ndarray, faces: np.ndarray) -> bool:
    """Whether some face of (F, 3) has a non-zero area (computed in unit-range units: no overflow)."""
    for start in range(0, len(faces), _FACE_CHUNK):
        corners = points[faces[start : start + _FACE_CHUNK]]  # (f, 3 corners, 3)
        corners = to_unit_range(corners.reshape(-1, 3)).reshape(-1, 3, 3)
        if (np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]) != 0).any():
            return True
    return False


def triangle_edges(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V, 3), (F, 3) -> first corner, second - first, third - first, each (F, 3)."""
    corners = vertices[faces]  # (F, 3 corners, 3)
    return corners[:, 0], corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]


def double_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3), (F, 3) -> (F,) twice each triangle's area, a chunk of faces at a time, so that the working
    memory stays small whatever F (gathering every corner at once takes 200 bytes a face)."""
    areas = np.empty(len(faces))  # (F,)
    for start in range(0, len(faces), _FACE_CHUNK):
        _, edge1, edge2 = triangle_edges(vertices, faces[start : start + _FACE_CHUNK])  # (f, 3) each
        areas[start : start + len(edge1)] = np.linalg.norm(np.cross(edge1, edge2), axis=1)
    return areas


# ----------------------------------------------------------------------------------------------------------
# Polygons, shared by the PLY, OBJ and OFF readers
# ----------------------------------------------------------------------------------------------------------


def as_index(values: np.ndarray, what: str) -> np.ndarray:
    """Array of vertex indices (integers, or floats from a text file) -> int64, refusing fractions."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and not (
        np.array_equal(values, np.round(values)) and (np.abs(values) <= _MAX_EXACT_INT).all()
    ):
        raise ShapeError(f"{what}: vertex indices must be integers")
    return values.astype(np.int64)
