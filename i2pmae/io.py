"""Read 3D shape files into validated points (and triangles) and sample them to fixed-size clouds.

Formats: PLY (ASCII and binary, either byte order), OBJ, OFF (including ModelNet's ``OFF8 12 0`` headers,
where the counts are glued to the keyword), STL (ASCII and binary), PCD (ASCII, binary and binary_compressed),
XYZ/TXT (3 or 6 columns, comma or whitespace separated), NPY and NPZ.

Every format is parsed here, with numpy doing the bulk work, rather than through trimesh or open3d: on broken
files those libraries return plausible garbage instead of failing (trimesh reads an ASCII PLY whose header
promises more vertices than it holds by taking face rows as vertices, treats OBJ index 0 as valid and turns
a truncated binary STL into an empty scene; open3d returns an empty cloud and prints a warning). Our parsers
know what the header promised, so each of those cases becomes a :class:`ShapeError` that names the problem.

Checks made on every file, each a :class:`ShapeError` with the file name first:

- extension in :data:`SUPPORTED_EXTENSIONS`; size at most :data:`MAX_FILE_BYTES`, checked before reading;
- well-formed content: header counts match the data, no pickled objects in NPY/NPZ, arrays of shape (N, 3)
  or (N, 6);
- at most :data:`MAX_POINTS` points or vertices, all finite;
- meshes: face indices in range and a positive surface area; clouds (files without faces): at least
  :data:`MIN_DISTINCT_POINTS` distinct points.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .geometry import LARGE_CLOUD_CANDIDATES, farthest_point_sample, normalize_unit_sphere

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_POINTS",
    "MIN_DISTINCT_POINTS",
    "SUPPORTED_EXTENSIONS",
    "Shape",
    "ShapeError",
    "load_points",
    "read_shape",
    "sample_surface",
]

MAX_FILE_BYTES = 256 * 2**20  # files (and arrays inside an NPZ, uncompressed) larger than this are refused
MAX_POINTS = 5_000_000  # points of a cloud or vertices of a mesh
MIN_DISTINCT_POINTS = 16  # a cloud needs at least this many distinct points to be tokenised
CLOUD_COLUMNS = (3, 6)  # x y z, optionally followed by normals or colours (ignored)
NPZ_POINT_KEYS = ("points", "xyz", "data")  # array names tried in order inside an NPZ

_MIB = 2**20
_DISTINCT_PROBE = 4096  # points checked for distinctness before falling back to the whole cloud
_MAX_EXACT_INT = 2**53  # float64 integers beyond this are not exact
_MAX_HEADER_LINES = 200  # PLY/PCD header lines read before a file is declared not to be one
_STL_HEADER_BYTES = 80
_STL_TRIANGLE = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
_LZF_MAX_LITERAL = 32  # control bytes below this start a literal run of (control + 1) bytes
_LZF_LONG_MATCH = 7  # a back-reference length field of 7 means "read one more length byte"
_LZF_MIN_MATCH = 2  # back-references copy (length field + 2) bytes

# Errors numpy, struct, zipfile and the text codecs raise on malformed content; turned into ShapeError.
_PARSE_ERRORS = (
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    EOFError,
    NotImplementedError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
    RuntimeError,  # zipfile: encrypted member
)


class ShapeError(ValueError):
    """A shape file that cannot be used; the message names the file and says what is wrong with it."""


@dataclass(frozen=True, eq=False)  # arrays: compare the fields, not the shapes
class Shape:
    """Validated content of a shape file, in the file's own units.

    Attributes:
        points: (N, 3) float64, the cloud's points or the mesh's vertices; all finite.
        faces: (F, 3) int64 triangles indexing ``points`` (polygons fan-triangulated), or None for a cloud.
    """

    points: np.ndarray
    faces: np.ndarray | None = None

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None


# ----------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------


def read_shape(path: str | os.PathLike) -> Shape:
    """Read and validate a shape file (format chosen by extension, see :data:`SUPPORTED_EXTENSIONS`).

    Returns:
        :class:`Shape` with points (N, 3) float64 and faces (F, 3) int64, or None when the file has no faces.

    Raises:
        ShapeError: for any file that cannot be used (see the module docstring for the checks).
    """
    path = Path(path)
    name = path.name or str(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        suffix = f"'{path.suffix}'" if path.suffix else "no extension"
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        raise ShapeError(f"{name}: unsupported file type ({suffix}); supported: {supported}")
    data = _read_bytes(path, name)
    try:
        with np.errstate(invalid="ignore"):  # signalling NaNs in binary data warn when cast; they are refused
            return _validated(*reader(data))
    except ShapeError as err:
        raise ShapeError(f"{name}: {err}") from err
    except MemoryError as err:
        raise ShapeError(f"{name}: not enough memory to read this file") from err
    except _PARSE_ERRORS as err:
        kind = path.suffix.lower().lstrip(".").upper()
        raise ShapeError(f"{name}: malformed {kind} file ({type(err).__name__}: {err})") from err


def load_points(path: str | os.PathLike, num_points: int = 2048, *, seed: int = 0) -> np.ndarray:
    """Read a shape file; return ``num_points`` points, centred on their mean, scaled to the unit sphere.

    Meshes are sampled uniformly on their surface (triangles chosen in proportion to their area). Clouds
    with at least ``num_points`` points are reduced by farthest point sampling (deterministic, starting at
    the file's first point, so ``seed`` does not change them); smaller clouds keep every point once and fill
    the rest by drawing points again, uniformly with replacement, so they contain duplicates.

    Args:
        path: a file with one of :data:`SUPPORTED_EXTENSIONS`.
        num_points: N, the number of points returned.
        seed: seeds the surface sampling and the resampling of small clouds.

    Returns:
        (N, 3) float32, mean 0, largest norm 1.

    Raises:
        ShapeError: the file cannot be used (see :func:`read_shape`).
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    shape = read_shape(path)
    rng = np.random.default_rng(seed)
    if shape.is_mesh:
        points = sample_surface(shape.points, shape.faces, num_points, rng=rng)
    else:
        points = _resample_cloud(shape.points, num_points, rng)
    return normalize_unit_sphere(torch.from_numpy(points)).numpy().astype(np.float32)  # (N, 3)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, num_samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    """Uniform samples on a mesh's surface: triangles drawn in proportion to area, a uniform point in each.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int indices into ``vertices``, with a positive total area.
        num_samples: S.
        rng: numpy generator (the only source of randomness).

    Returns:
        (S, 3) float64.
    """
    origin, edge1, edge2 = _triangle_edges(vertices, faces)  # (F, 3) each
    cumulative_area = np.cumsum(np.linalg.norm(np.cross(edge1, edge2), axis=1))  # (F,), twice the areas
    target = rng.random(num_samples) * cumulative_area[-1]  # (S,)
    tri = np.minimum(np.searchsorted(cumulative_area, target, side="right"), len(faces) - 1)  # (S,)
    # sqrt(u) makes the barycentric point uniform over the triangle (Osada et al. 2002, Shape distributions).
    sqrt_u, v = np.sqrt(rng.random(num_samples))[:, None], rng.random(num_samples)[:, None]  # (S, 1)
    return origin[tri] + sqrt_u * (1 - v) * edge1[tri] + sqrt_u * v * edge2[tri]  # (S, 3)


def _triangle_edges(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V, 3), (F, 3) -> first corner, second - first, third - first, each (F, 3)."""
    corners = vertices[faces]  # (F, 3 corners, 3)
    return corners[:, 0], corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]


# ----------------------------------------------------------------------------------------------------------
# Reading, validation and resampling
# ----------------------------------------------------------------------------------------------------------


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes, after checking it exists, is not empty and is within :data:`MAX_FILE_BYTES`."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ShapeError(f"{name}: not a file")
        if size == 0:
            raise ShapeError(f"{name}: the file is empty")
        if size > MAX_FILE_BYTES:
            raise ShapeError(
                f"{name}: the file is {_format_size(size)}, over the limit of {_format_size(MAX_FILE_BYTES)} "
                "(MAX_FILE_BYTES)"
            )
        return path.read_bytes()
    except FileNotFoundError as err:
        raise ShapeError(f"{name}: no such file ({path})") from err
    except OSError as err:
        raise ShapeError(f"{name}: cannot read the file ({err.strerror or err})") from err


def _format_size(num_bytes: int) -> str:
    return f"{num_bytes / _MIB:.1f} MiB" if num_bytes >= _MIB else f"{num_bytes:,} bytes"


def _validated(points: np.ndarray, faces: np.ndarray | None) -> Shape:
    """Apply the checks of the module docstring to a parsed (N, 3) array and optional (F, 3) triangles."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    noun = "vertices" if faces is not None and len(faces) else "points"
    if len(points) == 0:
        raise ShapeError(f"the file holds no {noun}")
    _check_count(len(points), noun)
    finite = np.isfinite(points).all(axis=1)  # (N,)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ShapeError(
            f"{len(bad):,} of {len(points):,} {noun} have NaN or infinite coordinates "
            f"(the first at index {bad[0]})"
        )
    if faces is None or len(faces) == 0:
        _check_distinct(points)
        return Shape(points=points)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    _check_faces(points, faces)
    return Shape(points=points, faces=faces)


def _check_count(count: int, noun: str) -> None:
    if count > MAX_POINTS:
        raise ShapeError(f"{count:,} {noun}, over the limit of {MAX_POINTS:,} (MAX_POINTS)")


def _check_distinct(points: np.ndarray) -> None:
    """At least :data:`MIN_DISTINCT_POINTS` distinct rows; a small probe settles almost every real cloud."""
    distinct = len(np.unique(points[:_DISTINCT_PROBE], axis=0))
    if distinct < MIN_DISTINCT_POINTS and len(points) > _DISTINCT_PROBE:
        distinct = len(np.unique(points, axis=0))
    if distinct < MIN_DISTINCT_POINTS:
        raise ShapeError(
            f"the cloud has only {distinct} distinct point(s); at least {MIN_DISTINCT_POINTS} are needed"
        )


def _check_faces(points: np.ndarray, faces: np.ndarray) -> None:
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= len(points):
        bad = low if low < 0 else high
        raise ShapeError(
            f"a face refers to vertex {bad}, but the file has {len(points):,} vertices "
            f"(valid indices 0 to {len(points) - 1:,})"
        )
    _, edge1, edge2 = _triangle_edges(points, faces)  # (F, 3) each
    area = np.linalg.norm(np.cross(edge1, edge2), axis=1).sum()  # twice the surface area
    if not np.isfinite(area):
        raise ShapeError("the mesh's coordinates are too large to compute its surface area")
    if area <= 0:
        raise ShapeError(
            f"every one of the {len(faces):,} faces has zero area: there is no surface to sample"
        )


def _resample_cloud(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float64 -> (num_points, 3): farthest point sampling, or every point plus random repeats."""
    if len(points) < num_points:
        repeats = rng.integers(len(points), size=num_points - len(points))
        return points[np.concatenate([np.arange(len(points)), repeats])]  # (num_points, 3)
    # FPS ignores translation; centring first keeps the detail of far-off coordinates in float32.
    # Clouds of millions of points run exact FPS on a seeded 200k-point subset (well under a second).
    xyz = torch.from_numpy((points - points.mean(axis=0)).astype(np.float32))  # (N, 3)
    idx = farthest_point_sample(xyz[None], num_points, max_candidates=LARGE_CLOUD_CANDIDATES)[0]  # (S,)
    return points[idx.numpy()]  # (num_points, 3)


# ----------------------------------------------------------------------------------------------------------
# Shared parsing helpers
# ----------------------------------------------------------------------------------------------------------


def _decode_text(data: bytes, kind: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ShapeError(f"not a text {kind} file (undecodable bytes at offset {err.start})") from err


def _float_rows(rows: Sequence[Sequence[str]], what: str) -> np.ndarray:
    """R >= 1 equal-length rows of number strings -> (R, C) float64, with an error naming ``what``."""
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), -1)  # (R, C)
    except ValueError as err:
        raise ShapeError(f"{what}: a value is not a number or a row has the wrong length ({err})") from err


def _triangulate(polygons: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Fan-triangulate polygons: (F, L) int or a list of 1-D int arrays -> (T, 3) int64."""
    if isinstance(polygons, np.ndarray):
        groups = [polygons]
    else:
        lengths = np.array([len(p) for p in polygons])  # (F,)
        groups = [np.stack([polygons[i] for i in np.flatnonzero(lengths == n)]) for n in np.unique(lengths)]
    triangles = []
    for group in groups:  # (F_L, L), one polygon length L per group
        if group.shape[1] < 3:
            raise ShapeError(f"a face has {group.shape[1]} vertex indices; faces need at least 3")
        fan = np.arange(1, group.shape[1] - 1)  # (L - 2,)
        hub = np.repeat(group[:, :1], len(fan), axis=1)  # (F_L, L - 2)
        tris = np.stack([hub, group[:, fan], group[:, fan + 1]], axis=-1)  # (F_L, L - 2, 3)
        triangles.append(tris.reshape(-1, 3))  # (F_L * (L - 2), 3)
    return np.concatenate(triangles).astype(np.int64)  # (T, 3)


def _count_prefixed(rows: Sequence[Sequence[str]], what: str) -> np.ndarray | list[np.ndarray]:
    """Rows "k i_1 ... i_k [extra]" -> (F, k) int64 if every k is the same, else a list of (k,) arrays."""
    counts = {len(row) for row in rows}
    if len(counts) == 1:
        table = _float_rows(rows, what)  # (F, T)
        k = _as_index(table[:, 0], what)  # (F,)
        if (k == k[0]).all() and 0 <= k[0] < table.shape[1]:
            return _as_index(table[:, 1 : 1 + k[0]], what)  # (F, k)
    polygons = []
    for row in rows:
        k = int(row[0])
        if not 0 <= k < len(row):
            raise ShapeError(f"{what}: a face row announces {k} vertices but holds {len(row) - 1} values")
        polygons.append(_as_index(_float_rows([row[1 : 1 + k]], what)[0], what))
    return polygons


def _as_index(values: np.ndarray, what: str) -> np.ndarray:
    """Array of vertex indices (integers, or floats from a text file) -> int64, refusing fractions."""
    if values.dtype.kind == "f" and not (np.array_equal(values, np.round(values)) and _exact_ints(values)):
        raise ShapeError(f"{what}: vertex indices must be integers")
    return values.astype(np.int64)


def _exact_ints(values: np.ndarray) -> bool:
    """Whether float values lie where float64 still holds every integer (and so are finite)."""
    return bool((np.abs(values) <= _MAX_EXACT_INT).all())


def _header_lines(data: bytes, end: Callable[[str], bool], kind: str) -> tuple[list[str], int]:
    """ASCII header lines up to the one where ``end(line)`` holds (included), and the offset of the data."""
    lines, offset = [], 0
    while len(lines) < _MAX_HEADER_LINES:
        newline = data.find(b"\n", offset)
        if newline < 0:
            break
        try:
            line = data[offset:newline].decode("ascii").strip()
        except UnicodeDecodeError as err:
            raise ShapeError(f"not a {kind} file (binary data inside the header)") from err
        lines.append(line)
        offset = newline + 1
        if end(line):
            return lines, offset
    raise ShapeError(f"not a {kind} file, or its header is cut off (no end of header found)")


# ----------------------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_BYTE_ORDER = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
_PLY_FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass
class _PlyProperty:
    name: str
    dtype: str  # numpy type code of the value (of each list item for lists)
    count_dtype: str | None = None  # numpy type code of a list's length; None for a scalar property


@dataclass
class _PlyElement:
    name: str
    count: int
    properties: list[_PlyProperty]


def _read_ply(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    if not data.startswith(b"ply"):
        raise ShapeError("not a PLY file (it does not start with 'ply')")
    lines, offset = _header_lines(data, lambda line: line == "end_header", "PLY")
    fmt, elements = _parse_ply_header(lines)
    read = _read_ply_ascii if fmt == "ascii" else _read_ply_binary
    values = read(data[offset:], elements, _PLY_BYTE_ORDER[fmt])
    vertex = values.get("vertex", {})
    if not all(axis in vertex for axis in "xyz"):
        raise ShapeError("the PLY header declares no vertex element with x, y and z properties")
    points = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], axis=1)  # (N, 3)
    face = values.get("face", {})
    polygons = next((face[key] for key in _PLY_FACE_LISTS if key in face), None)
    if polygons is None or len(polygons) == 0:
        return points, None
    if isinstance(polygons, np.ndarray):
        return points, _triangulate(_as_index(polygons, "PLY faces"))
    return points, _triangulate([_as_index(np.asarray(p), "PLY faces") for p in polygons])


def _parse_ply_header(lines: list[str]) -> tuple[str, list[_PlyElement]]:
    if lines[0] != "ply":
        raise ShapeError("not a PLY file (its first line is not 'ply')")
    fmt, elements = None, []
    for line in lines[1:-1]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3 and words[1] in _PLY_BYTE_ORDER:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(_PlyElement(words[1], int(words[2]), []))
            if words[1] == "vertex":
                _check_count(elements[-1].count, "vertices")
        elif words[0] == "property" and elements and len(words) >= 3:
            elements[-1].properties.append(_ply_property(words))
        else:
            raise ShapeError(f"unexpected PLY header line {line[:80]!r}")
    if fmt is None:
        raise ShapeError("the PLY header has no valid 'format' line")
    return fmt, elements


def _ply_property(words: list[str]) -> _PlyProperty:
    """``property <type> <name>`` or ``property list <count type> <item type> <name>``."""
    if words[1] == "list" and len(words) == 5 and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
        return _PlyProperty(words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]])
    if len(words) == 3 and words[1] in _PLY_TYPES:
        return _PlyProperty(words[2], _PLY_TYPES[words[1]])
    raise ShapeError(f"unknown PLY property declaration {' '.join(words)[:80]!r}")


def _read_ply_ascii(body: bytes, elements: list[_PlyElement], _order: str) -> dict[str, dict]:
    lines = [line for line in _decode_text(body, "PLY").splitlines() if line.strip()]
    values, start = {}, 0
    for element in elements:
        rows = [line.split() for line in lines[start : start + element.count]]
        if len(rows) < element.count:
            raise ShapeError(_ply_truncated(element, len(rows)))
        values[element.name] = _ply_ascii_element(rows, element)
        start += element.count
    return values


def _ply_ascii_element(rows: list[list[str]], element: _PlyElement) -> dict[str, np.ndarray | list]:
    """Rows of tokens of one element -> {property: (count,) values, or (count, L) / ragged lists}."""
    what = f"PLY {element.name} data"
    if not rows:
        return {prop.name: np.empty(0) for prop in element.properties}
    scalar_only = all(prop.count_dtype is None for prop in element.properties)
    if scalar_only:
        if any(len(row) != len(element.properties) for row in rows):
            raise ShapeError(
                f"{what}: every row should hold {len(element.properties)} values; check the header's "
                f"{element.name} count ({element.count:,}) against the data"
            )
        table = _float_rows(rows, what)  # (count, P)
        return {prop.name: table[:, i] for i, prop in enumerate(element.properties)}
    if [prop.count_dtype is not None for prop in element.properties] == [True]:
        return {element.properties[0].name: _count_prefixed(rows, what)}
    return _ply_ascii_rows(rows, element, what)


def _ply_ascii_rows(rows: list[list[str]], element: _PlyElement, what: str) -> dict[str, list]:
    """General case (lists mixed with scalars): walk each row property by property."""
    columns: dict[str, list] = {prop.name: [] for prop in element.properties}
    for row in rows:
        numbers, pos = _float_rows([row], what)[0], 0  # (T,)
        for prop in element.properties:
            if prop.count_dtype is None:
                columns[prop.name].append(numbers[pos])
                pos += 1
            else:
                length = int(numbers[pos])
                columns[prop.name].append(numbers[pos + 1 : pos + 1 + length])
                pos += 1 + length
        if pos != len(numbers):
            raise ShapeError(f"{what}: a row holds {len(numbers)} values where its properties need {pos}")
    return columns


def _read_ply_binary(body: bytes, elements: list[_PlyElement], order: str) -> dict[str, dict]:
    values, offset = {}, 0
    for element in elements:
        values[element.name], offset = _ply_binary_element(body, offset, element, order)
    return values


def _ply_binary_element(body: bytes, offset: int, element: _PlyElement, order: str) -> tuple[dict, int]:
    """One element from ``body[offset:]``; returns ({property: values}, offset after the element).

    Fast path: each list property has the same length in every row, so the element is one structured array.
    """
    if element.count == 0:
        return {prop.name: np.empty(0) for prop in element.properties}, offset
    lengths = _ply_first_row_lengths(body, offset, element, order)
    fields = []
    for i, prop in enumerate(element.properties):
        if prop.count_dtype is None:
            fields.append((f"v{i}", order + prop.dtype))
        else:
            fields += [(f"n{i}", order + prop.count_dtype), (f"v{i}", order + prop.dtype, (lengths[i],))]
    row = np.dtype(fields)
    if offset + element.count * row.itemsize > len(body):
        if not lengths:
            raise ShapeError(_ply_truncated(element, (len(body) - offset) // row.itemsize))
        return _ply_binary_rows(body, offset, element, order)  # rows may be shorter than the first one
    table = np.frombuffer(body, row, element.count, offset)  # (count,) structured
    if not all((table[f"n{i}"] == length).all() for i, length in lengths.items()):
        return _ply_binary_rows(body, offset, element, order)
    columns = {prop.name: table[f"v{i}"] for i, prop in enumerate(element.properties)}
    return columns, offset + element.count * row.itemsize


def _ply_first_row_lengths(body: bytes, offset: int, element: _PlyElement, order: str) -> dict[int, int]:
    """List lengths in the element's first row, by property index (empty when there are no lists)."""
    lengths = {}
    for i, prop in enumerate(element.properties):
        if prop.count_dtype is None:
            offset += np.dtype(prop.dtype).itemsize
            continue
        if offset + np.dtype(prop.count_dtype).itemsize > len(body):
            raise ShapeError(_ply_truncated(element, 0))
        lengths[i] = int(np.frombuffer(body, order + prop.count_dtype, 1, offset)[0])
        offset += np.dtype(prop.count_dtype).itemsize + lengths[i] * np.dtype(prop.dtype).itemsize
    return lengths


def _ply_binary_rows(body: bytes, offset: int, element: _PlyElement, order: str) -> tuple[dict, int]:
    """General case (lists of varying length): read row by row."""
    columns: dict[str, list] = {prop.name: [] for prop in element.properties}
    for row in range(element.count):
        for prop in element.properties:
            length = 1
            if prop.count_dtype is not None:
                length, offset = _ply_take(body, offset, order + prop.count_dtype, 1, element, row)
                length = int(length[0])
            value, offset = _ply_take(body, offset, order + prop.dtype, length, element, row)
            columns[prop.name].append(value if prop.count_dtype is not None else value[0])
    return columns, offset


def _ply_take(
    body: bytes, offset: int, dtype: str, count: int, element: _PlyElement, row: int
) -> tuple[np.ndarray, int]:
    end = offset + count * np.dtype(dtype).itemsize
    if end > len(body):
        raise ShapeError(_ply_truncated(element, row))
    return np.frombuffer(body, dtype, count, offset), end


def _ply_truncated(element: _PlyElement, found: int) -> str:
    return (
        f"truncated PLY file: the header promises {element.count:,} {element.name} elements "
        f"but the data ends after {found:,}"
    )


# ----------------------------------------------------------------------------------------------------------
# OBJ, OFF, STL
# ----------------------------------------------------------------------------------------------------------


def _read_obj(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices (``v x y z ...``) and faces (``f a b c ...``, 1-based or negative relative indices)."""
    vertices, polygons = [], []
    for number, line in enumerate(_decode_text(data, "OBJ").splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if words[0] == "v":
            if len(words) < 4:
                raise ShapeError(f"line {number}: a vertex needs x y z, got {line.strip()[:80]!r}")
            vertices.append(words[1:4])
        elif words[0] == "f":
            polygons.append([_obj_index(word, len(vertices), number) for word in words[1:]])
    _check_count(len(vertices), "vertices")
    points = _float_rows(vertices, "OBJ vertices") if vertices else np.empty((0, 3))
    if not polygons:
        return points, None
    uniform = len({len(p) for p in polygons}) == 1
    faces = np.array(polygons) if uniform else [np.array(p) for p in polygons]
    return points, _triangulate(faces)


def _obj_index(word: str, num_vertices: int, line: int) -> int:
    """``i``, ``i/t``, ``i//n`` or ``i/t/n`` -> 0-based vertex index (negative = relative to the end)."""
    try:
        index = int(word.split("/", 1)[0])
    except ValueError as err:
        raise ShapeError(f"line {line}: {word!r} is not a vertex index") from err
    if index == 0:
        raise ShapeError(f"line {line}: OBJ vertex indices start at 1, found 0")
    return index - 1 if index > 0 else num_vertices + index


_OFF_KEYWORD = re.compile(r"(ST)?C?N?OFF")


def _read_off(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """OFF, COFF, NOFF, STOFF; the counts may follow the keyword on its line, even glued (``OFF8 12 0``)."""
    lines = [line.split("#", 1)[0].strip() for line in _decode_text(data, "OFF").splitlines()]
    lines = [line for line in lines if line]
    keyword = _OFF_KEYWORD.match(lines[0]) if lines else None
    if keyword is None:
        raise ShapeError("not an OFF file (the first line does not start with 'OFF')")
    counts, start = lines[0][keyword.end() :].split(), 1
    if not counts and len(lines) > 1:
        counts, start = lines[1].split(), 2
    if len(counts) not in (2, 3) or not all(c.isdigit() for c in counts):
        found = " ".join(counts)
        raise ShapeError(f"the OFF header should give 'vertices faces edges' counts, got {found!r}")
    num_vertices, num_faces = int(counts[0]), int(counts[1])
    _check_count(num_vertices, "vertices")
    body = lines[start : start + num_vertices + num_faces]
    if len(body) < num_vertices + num_faces:
        raise ShapeError(
            f"truncated OFF file: the header promises {num_vertices:,} vertices and {num_faces:,} faces "
            f"but the file holds only {len(body):,} data lines"
        )
    rows = [line.split() for line in body[:num_vertices]]
    if not rows:
        return np.empty((0, 3)), None
    if any(len(row) < 3 for row in rows):
        raise ShapeError("OFF vertices: every vertex line needs x y z (is the header's vertex count right?)")
    points = _float_rows([row[:3] for row in rows], "OFF vertices")  # (V, 3)
    if num_faces == 0:
        return points, None
    polygons = _count_prefixed([line.split() for line in body[num_vertices:]], "OFF faces")
    return points, _triangulate(polygons)


def _read_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Binary STL (80-byte header, uint32 count, 50 bytes a triangle) or ASCII ``solid ... vertex x y z``."""
    header = _STL_HEADER_BYTES + 4
    count = struct.unpack_from("<I", data, _STL_HEADER_BYTES)[0] if len(data) >= header else None
    if count is not None and len(data) == header + count * _STL_TRIANGLE.itemsize:
        triangles = np.frombuffer(data, _STL_TRIANGLE, count, header)["vertices"]  # (F, 3 corners, 3)
    elif data.lstrip().startswith(b"solid"):
        triangles = _stl_ascii_triangles(data)
    elif count is not None and len(data) < header + count * _STL_TRIANGLE.itemsize:
        raise ShapeError(
            f"truncated binary STL file: the header promises {count:,} triangles "
            f"({header + count * _STL_TRIANGLE.itemsize:,} bytes) but the file has {len(data):,} bytes"
        )
    else:
        raise ShapeError("not an STL file (neither 'solid' text nor a triangle count that matches its size)")
    _check_count(3 * len(triangles), "vertices")
    points = triangles.reshape(-1, 3).astype(np.float64)  # (3F, 3)
    return points, np.arange(len(points)).reshape(-1, 3)  # (F, 3)


def _stl_ascii_triangles(data: bytes) -> np.ndarray:
    words = np.array(_decode_text(data, "STL").split())
    starts = np.flatnonzero(words == "vertex")  # (3F,)
    if len(starts) == 0 or len(starts) % 3 or starts[-1] + 3 >= len(words):
        raise ShapeError(f"ASCII STL: found {len(starts)} 'vertex' lines; a triangle needs 3 (cut-off file?)")
    coords = words[starts[:, None] + np.arange(1, 4)]  # (3F, 3) strings
    return _float_rows(coords.tolist(), "ASCII STL vertices").reshape(-1, 3, 3)  # (F, 3 corners, 3)


# ----------------------------------------------------------------------------------------------------------
# PCD (PCL point cloud data)
# ----------------------------------------------------------------------------------------------------------

_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")


@dataclass
class _PcdHeader:
    fields: list[str]
    dtypes: list[str]  # numpy type code per field
    counts: list[int]  # values per field
    points: int
    data: str  # ascii | binary | binary_compressed

    def layout(self) -> list[tuple[str, int]]:
        """(numpy type code, values per point) of each field."""
        return list(zip(self.dtypes, self.counts, strict=True))

    def column(self, name: str) -> int:
        """Index of the first value of field ``name`` in a row of all values."""
        return sum(self.counts[: self.fields.index(name)])


def _read_pcd(data: bytes) -> tuple[np.ndarray, None]:
    lines, offset = _header_lines(data, lambda line: line.startswith("DATA"), "PCD")
    header = _parse_pcd_header(lines)
    _check_count(header.points, "points")
    readers = {"ascii": _pcd_ascii, "binary": _pcd_binary, "binary_compressed": _pcd_compressed}
    if header.data not in readers:
        raise ShapeError(f"unknown PCD data encoding {header.data!r}; expected one of {', '.join(readers)}")
    return readers[header.data](data[offset:], header), None


def _parse_pcd_header(lines: list[str]) -> _PcdHeader:
    entries = {}
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] not in _PCD_KEYS:
            raise ShapeError(f"not a PCD file (unexpected header line {line[:80]!r})")
        entries[words[0]] = words[1:]
    fields = entries.get("FIELDS", [])
    if not all(axis in fields for axis in "xyz"):
        raise ShapeError(f"the PCD file has no x, y and z fields (FIELDS {' '.join(fields)})")
    sizes, types = entries.get("SIZE", []), entries.get("TYPE", [])
    counts = [int(c) for c in entries.get("COUNT", ["1"] * len(fields))]
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise ShapeError("the PCD header's FIELDS, SIZE, TYPE and COUNT lines have different lengths")
    dtypes = [_pcd_dtype(kind, size) for kind, size in zip(types, sizes, strict=True)]
    width, height = int(entries.get("WIDTH", ["0"])[0]), int(entries.get("HEIGHT", ["1"])[0])
    points = int(entries.get("POINTS", [str(width * height)])[0])
    return _PcdHeader(fields, dtypes, counts, points, entries["DATA"][0] if entries.get("DATA") else "")


def _pcd_dtype(kind: str, size: str) -> str:
    code = {"F": "f", "I": "i", "U": "u"}.get(kind, "?") + size
    if code not in ("f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"):
        raise ShapeError(f"unsupported PCD field type {kind} of size {size}")
    return "<" + code


def _pcd_ascii(body: bytes, header: _PcdHeader) -> np.ndarray:
    rows = [line.split() for line in _decode_text(body, "PCD").splitlines() if line.strip()]
    if len(rows) != header.points:
        raise ShapeError(
            f"the PCD header promises {header.points:,} points but the data holds {len(rows):,} rows"
        )
    if not rows:
        return np.empty((0, 3))
    table = _float_rows(rows, "PCD data")  # (N, sum(counts))
    return table[:, [header.column(axis) for axis in "xyz"]]  # (N, 3)


def _pcd_binary(body: bytes, header: _PcdHeader) -> np.ndarray:
    """Row-major records: all fields of point 0, then of point 1, ..."""
    row = np.dtype([(f"f{i}", dt, (c,)) for i, (dt, c) in enumerate(header.layout())])
    if header.points * row.itemsize > len(body):
        raise ShapeError(
            f"truncated binary PCD file: the header promises {header.points:,} points "
            f"({header.points * row.itemsize:,} bytes) but only {len(body):,} bytes follow"
        )
    table = np.frombuffer(body, row, header.points)  # (N,) structured
    return np.stack([table[f"f{header.fields.index(axis)}"][:, 0] for axis in "xyz"], axis=1)  # (N, 3)


def _pcd_compressed(body: bytes, header: _PcdHeader) -> np.ndarray:
    """LZF-compressed, column-major: all values of field 0, then of field 1, ..."""
    if len(body) < 8:
        raise ShapeError("truncated compressed PCD file (no size fields after the header)")
    compressed_size, raw_size = struct.unpack_from("<II", body)
    sizes = [np.dtype(dt).itemsize * c * header.points for dt, c in header.layout()]
    if raw_size != sum(sizes) or 8 + compressed_size > len(body):
        raise ShapeError(
            f"corrupt or truncated compressed PCD file: {header.points:,} points need {sum(sizes):,} bytes, "
            f"the file announces {raw_size:,} bytes from {compressed_size:,} compressed bytes "
            f"and holds {len(body) - 8:,}"
        )
    raw = _lzf_decompress(body[8 : 8 + compressed_size], raw_size)
    starts = np.concatenate([[0], np.cumsum(sizes)])  # (fields + 1,)
    columns = []
    for axis in "xyz":
        i = header.fields.index(axis)
        column = np.frombuffer(raw, header.dtypes[i], header.points * header.counts[i], int(starts[i]))
        columns.append(column.reshape(header.points, header.counts[i])[:, 0])  # (N,)
    return np.stack(columns, axis=1)  # (N, 3)


def _lzf_decompress(src: bytes, size: int) -> bytes:
    """Decompress an LZF stream (liblzf format, as PCL writes it) into exactly ``size`` bytes."""
    out, pos = bytearray(), 0
    while pos < len(src):
        control = src[pos]
        pos += 1
        if control < _LZF_MAX_LITERAL:  # literal run
            out += src[pos : pos + control + 1]
            pos += control + 1
            continue
        length = control >> 5
        if length == _LZF_LONG_MATCH:
            length += src[pos]
            pos += 1
        start = len(out) - ((control & 0x1F) << 8) - src[pos] - 1
        pos += 1
        length += _LZF_MIN_MATCH
        if start < 0:
            raise ShapeError("corrupt compressed PCD data (a back-reference points before the start)")
        period = out[start : start + length]  # shorter than the match when it overlaps its own output
        out += (period * (length // len(period) + 1))[:length]
        if len(out) > size:
            break
    if pos > len(src) or len(out) != size:
        raise ShapeError(f"corrupt compressed PCD data (decompressed {len(out):,} bytes, expected {size:,})")
    return bytes(out)


# ----------------------------------------------------------------------------------------------------------
# XYZ / TXT, NPY, NPZ
# ----------------------------------------------------------------------------------------------------------


def _read_text_cloud(data: bytes) -> tuple[np.ndarray, None]:
    """One point per line, 3 or 6 columns separated by commas or whitespace; '#' starts a comment."""
    text = _decode_text(data, "point")
    data_lines = (line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    first = next(data_lines, "")
    if not first:
        raise ShapeError("the file holds no points (only blank or comment lines)")
    delimiter = "," if "," in first else None
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=delimiter, comments="#", ndmin=2, dtype=np.float64)
    except ValueError as err:
        reason = str(err).split(";")[0]  # drop numpy's advice about its own arguments
        raise ShapeError(f"malformed point list ({reason})") from err
    return _cloud_columns(table, "the point list"), None


def _cloud_columns(table: np.ndarray, what: str) -> np.ndarray:
    """(N, C) with C in :data:`CLOUD_COLUMNS` -> (N, 3), the first three columns."""
    if table.ndim != 2 or table.shape[1] not in CLOUD_COLUMNS:
        raise ShapeError(
            f"{what} has shape {tuple(table.shape)}; expected (N, 3) for x y z, "
            "or (N, 6) with normals or colours"
        )
    _check_count(len(table), "points")
    return table[:, :3]  # (N, 3)


def _read_npy(data: bytes) -> tuple[np.ndarray, None]:
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise ShapeError("this is an NPZ (zip) archive, not an NPY file; give it the extension .npz")
    if not data.startswith(b"\x93NUMPY"):
        raise ShapeError("not an NPY file (no NPY header); expected a single array saved with numpy.save")
    return _array_points(_load_npy(io.BytesIO(data), "the array"), "the array"), None


def _read_npz(data: bytes) -> tuple[np.ndarray, None]:
    stream = io.BytesIO(data)
    if not zipfile.is_zipfile(stream):
        raise ShapeError("not an NPZ file (not a zip archive)")
    with zipfile.ZipFile(stream) as archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        key = next((k for k in NPZ_POINT_KEYS if k in members), None)
        if key is None and len(members) == 1:
            key = next(iter(members))
        if key is None:
            raise ShapeError(
                f"cannot tell which array holds the points; name it one of {', '.join(NPZ_POINT_KEYS)} "
                f"or store a single array (found: {', '.join(sorted(members)) or 'none'})"
            )
        info = members[key]
        if info.file_size > MAX_FILE_BYTES:
            raise ShapeError(
                f"array {key!r} is {_format_size(info.file_size)} uncompressed, over the limit of "
                f"{_format_size(MAX_FILE_BYTES)} (MAX_FILE_BYTES)"
            )
        what = f"array {key!r}"
        return _array_points(_load_npy(io.BytesIO(archive.read(info)), what), what), None


_NPY_HEADER_ERRORS = (ValueError, SyntaxError, tokenize.TokenError)  # numpy parses the header as a literal
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _load_npy(stream: io.BytesIO, what: str) -> np.ndarray:
    """One NPY stream; refuses pickled objects (``allow_pickle=False``) with a clear message."""
    header = _npy_header(stream, what)
    if header is not None:  # other versions are rare; read_array below still refuses pickles
        shape, dtype = header
        if dtype.hasobject:
            raise ShapeError(f"{what} holds Python objects (pickled data), which are never loaded for safety")
        if dtype.kind not in "fiu":
            raise ShapeError(f"{what} has data type {dtype}; expected floats or integers")
        if len(shape) >= 1:
            _check_count(shape[-2] if len(shape) >= 2 else shape[0], "points")
    stream.seek(0)
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except _NPY_HEADER_ERRORS[1:] as err:
        raise ShapeError(f"{what} has a damaged NPY header") from err


def _npy_header(stream: io.BytesIO, what: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from an NPY header of version 1 or 2; None for other versions."""
    try:
        read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(stream))
        if read_header is None:
            return None
        shape, _, dtype = read_header(stream)
        return shape, dtype
    except _NPY_HEADER_ERRORS as err:
        raise ShapeError(f"{what} is not a numpy array, or its NPY header is damaged") from err


def _array_points(array: np.ndarray, what: str) -> np.ndarray:
    """(N, C), or (1, N, C) -> (N, 3); a batch of several shapes is refused."""
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    elif array.ndim == 3:
        raise ShapeError(
            f"{what} holds a batch of {array.shape[0]:,} shapes {tuple(array.shape)}; "
            "save one shape as (N, 3)"
        )
    if array.dtype.kind not in "fiu":
        raise ShapeError(f"{what} has data type {array.dtype}; expected floats or integers")
    return _cloud_columns(array, what)


_READERS: dict[str, Callable[[bytes], tuple[np.ndarray, np.ndarray | None]]] = {
    ".ply": _read_ply,
    ".obj": _read_obj,
    ".off": _read_off,
    ".stl": _read_stl,
    ".pcd": _read_pcd,
    ".xyz": _read_text_cloud,
    ".txt": _read_text_cloud,
    ".npy": _read_npy,
    ".npz": _read_npz,
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_READERS)  # lower case, with the dot
