"""OBJ and OFF (our parsers) and STL (trimesh, behind checks of our own); glTF / GLB are in ``gltf``.

OBJ and OFF are parsed here because no library reads them strictly (measured on the cases of
tests/test_io.py): trimesh reads OBJ index 0 as another vertex (``f 0 1 2`` became the degenerate face
0 0 1), accepts ``v 1 2`` as a vertex, reads binary junk as an empty mesh, silently keeps 7 of 12 faces of
a cut-off OFF file and drops two-vertex OFF faces; open3d (assimp) returns an empty or partial mesh with a
printed warning for every one of these.
The formats are simple enough for a page of code that knows what the file promised. Most OBJ files take a
vectorised path (a regex and a ``loadtxt`` per kind of statement, 3x faster than line by line); anything
unusual goes line by line, which decides (``test_obj_fast_path_agrees_with_the_line_by_line_reader``).

STL is read by trimesh, after checks that catch what it lets through: a binary STL whose size does not match
its triangle count (trimesh returns an empty mesh) and an ASCII STL cut inside a triangle.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Sequence

import numpy as np

from .checks import Parsed, ShapeError, as_index, check_count, triangulate
from .source import Source, decode_text

_STL_HEADER_BYTES = 80
_STL_TRIANGLE_BYTES = 50  # normal, 3 vertices (12 float32) and a uint16 attribute
_STL_VERTEX = re.compile(rb"^\s*vertex\s", re.MULTILINE)
_OFF_KEYWORD = re.compile(r"(ST)?C?N?OFF")
_OBJ_VERTEX = re.compile(r"^[^\S\n]*v[^\S\n]+(.*)$", re.MULTILINE)  # the text after "v" (spaces, not \n)
_OBJ_FACE = re.compile(r"^[^\S\n]*f[^\S\n]+(.*)$", re.MULTILINE)
_OBJ_BARE = re.compile(r"^[^\S\n]*[vf][^\S\n]*$", re.MULTILINE)
_OBJ_TEXTURE_NORMAL = re.compile(r"/\S*")  # the "/t/n" of "i/t/n"
# What trimesh raises on content it cannot parse; turned into ShapeError by read_shape or here.
TRIMESH_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError, struct.error)


# ----------------------------------------------------------------------------------------------------------
# OBJ
# ----------------------------------------------------------------------------------------------------------


def read_obj(source: Source) -> Parsed:
    """Vertices (``v x y z ...``) and faces (``f a b c ...``, 1-based or negative relative indices).

    A line ending in a backslash continues on the next; errors name the line where a statement starts.
    """
    text = decode_text(source.data, "OBJ")
    fast = _obj_fast(text)
    if fast is not None:
        return fast
    vertices, polygons = [], []
    for number, line in _obj_statements(text):
        words = line.split()
        if not words:
            continue
        if words[0] == "v":
            if len(words) < 4:
                raise ShapeError(f"line {number}: a vertex needs x y z, got {line.strip()[:80]!r}")
            vertices.append(words[1:4])
        elif words[0] == "f":
            polygons.append([_obj_index(word, len(vertices), number) for word in words[1:]])
    check_count(len(vertices), "vertices")
    points = _float_rows(vertices, "OBJ vertices") if vertices else np.empty((0, 3))
    if not polygons:
        return Parsed(points)
    uniform = len({len(p) for p in polygons}) == 1
    return Parsed(points, triangulate(np.array(polygons) if uniform else [np.array(p) for p in polygons]))


def _obj_fast(text: str) -> Parsed | None:
    """The common OBJ (positive indices, one polygon size) read with a regex and a ``loadtxt`` per kind of
    statement, about 3x faster than line by line; None wherever the line-by-line reader must decide."""
    if "\\" in text or len(text.splitlines()) != text.count("\n") + (not text.endswith("\n")):
        return None  # continuations, or line breaks other than \n
    if _OBJ_BARE.search(text):
        return None  # a "v" or "f" with nothing after it
    vertex_rows, face_rows = _OBJ_VERTEX.findall(text), _OBJ_FACE.findall(text)
    check_count(len(vertex_rows), "vertices")
    try:
        points = np.loadtxt(vertex_rows, usecols=(0, 1, 2), ndmin=2, comments=None) if vertex_rows else None
        faces = None
        if face_rows:
            indices = _OBJ_TEXTURE_NORMAL.sub("", "\n".join(face_rows)).split("\n")  # "1/2/3" -> "1"
            faces = np.loadtxt(indices, dtype=np.int64, ndmin=2, comments=None)  # (F, L), 1-based
    except (ValueError, OverflowError):
        return None
    if points is None or len(points) != len(vertex_rows):
        return None
    if faces is None:
        return Parsed(points)
    if len(faces) != len(face_rows) or faces.min() < 1:
        return None
    return Parsed(points, triangulate(faces - 1))


def _obj_statements(text: str):
    """(line number, statement) with backslash continuations joined."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.endswith("\\"):
            pending, start = pending + line[:-1] + " ", start or number
            continue
        yield (start or number), pending + line
        pending, start = "", 0
    if pending:
        yield start, pending


def _obj_index(word: str, num_vertices: int, line: int) -> int:
    """``i``, ``i/t``, ``i//n`` or ``i/t/n`` -> 0-based vertex index (negative = relative to the end)."""
    try:
        index = int(word.split("/", 1)[0])
    except ValueError as err:
        raise ShapeError(f"line {line}: {word!r} is not a vertex index") from err
    if index == 0:
        raise ShapeError(f"line {line}: OBJ vertex indices start at 1, found 0")
    return index - 1 if index > 0 else num_vertices + index


def _float_rows(rows: Sequence[Sequence[str]], what: str) -> np.ndarray:
    """R >= 1 equal-length rows of number strings -> (R, C) float64, with an error naming ``what``."""
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), -1)  # (R, C)
    except ValueError as err:
        raise ShapeError(f"{what}: a value is not a number or a row has the wrong length ({err})") from err


# ----------------------------------------------------------------------------------------------------------
# OFF
# ----------------------------------------------------------------------------------------------------------


def read_off(source: Source) -> Parsed:
    """OFF, COFF, NOFF, STOFF; the counts may follow the keyword on its line, even glued (``OFF8 12 0``)."""
    lines = [line.split("#", 1)[0].strip() for line in decode_text(source.data, "OFF").splitlines()]
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
    check_count(num_vertices, "vertices")
    body = lines[start : start + num_vertices + num_faces]
    if len(body) < num_vertices + num_faces:
        raise ShapeError(
            f"truncated OFF file: the header promises {num_vertices:,} vertices and {num_faces:,} faces "
            f"but the file holds only {len(body):,} data lines"
        )
    if num_vertices == 0:
        return Parsed(np.empty((0, 3)))
    points = _off_vertices(body[:num_vertices])  # (V, 3)
    if num_faces == 0:
        return Parsed(points)
    return Parsed(points, triangulate(_count_prefixed(body[num_vertices:])))


def _off_vertices(lines: list[str]) -> np.ndarray:
    """Vertex lines "x y z [colour ...]" -> (V, 3) float64."""
    try:
        return np.loadtxt(lines, usecols=(0, 1, 2), ndmin=2, comments=None)  # (V, 3)
    except ValueError:
        rows = [line.split() for line in lines]  # find what is wrong
    if any(len(row) < 3 for row in rows):
        raise ShapeError("OFF vertices: every vertex line needs x y z (is the header's vertex count right?)")
    return _float_rows([row[:3] for row in rows], "OFF vertices")  # (V, 3)


def _count_prefixed(lines: list[str]) -> np.ndarray | list[np.ndarray]:
    """Rows "k i_1 ... i_k [colour]" -> (F, k) int64 if every k is the same, else a list of (k,) arrays."""
    what = "OFF faces"
    try:
        table = np.loadtxt(lines, ndmin=2, comments=None)  # (F, T): rows of one length
    except ValueError:
        table = None
    if table is not None:
        k = as_index(table[:, 0], what)  # (F,)
        if (k == k[0]).all() and 0 <= k[0] < table.shape[1]:
            return as_index(table[:, 1 : 1 + k[0]], what)  # (F, k)
    rows = [line.split() for line in lines]
    polygons = []
    for row in rows:
        k = int(row[0]) if row[0].isdigit() else -1
        if not 0 <= k < len(row):
            raise ShapeError(
                f"{what}: a face row announces {row[0]} vertices but holds {len(row) - 1} values"
            )
        polygons.append(as_index(_float_rows([row[1 : 1 + k]], what)[0], what))
    return polygons


# ----------------------------------------------------------------------------------------------------------
# STL (trimesh)
# ----------------------------------------------------------------------------------------------------------


def read_stl(source: Source) -> Parsed:
    """Binary STL (80-byte header, uint32 count, 50 bytes a triangle) or ASCII ``solid ... vertex x y z``."""
    from trimesh.exchange.stl import load_stl

    data, header = source.data, _STL_HEADER_BYTES + 4
    count = struct.unpack_from("<I", data, _STL_HEADER_BYTES)[0] if len(data) >= header else None
    expected = None if count is None else header + count * _STL_TRIANGLE_BYTES
    if count is not None and len(data) == expected:
        num_vertices = 3 * count
    elif data.lstrip().startswith(b"solid"):
        num_vertices = len(_STL_VERTEX.findall(data))
        if num_vertices == 0 or num_vertices % 3:
            raise ShapeError(
                f"ASCII STL: found {num_vertices} 'vertex' lines; a triangle needs 3 (cut-off file?)"
            )
    elif count is not None and len(data) < expected:
        raise ShapeError(
            f"truncated binary STL file: the header promises {count:,} triangles "
            f"({expected:,} bytes) but the file has {len(data):,} bytes"
        )
    else:
        raise ShapeError("not an STL file (neither 'solid' text nor a triangle count that matches its size)")
    check_count(num_vertices, "vertices")
    mesh = load_stl(io.BytesIO(data))
    vertices, faces = np.asarray(mesh["vertices"]), np.asarray(mesh["faces"])
    if len(faces) * 3 != num_vertices:
        raise ShapeError(f"malformed STL file: {num_vertices:,} vertices read as {len(faces):,} triangles")
    return Parsed(vertices, faces)
