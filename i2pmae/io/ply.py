"""PLY, read by plyfile, with a header pre-pass of our own.

plyfile is strict where trimesh is lax: it refuses truncated data, rows with too many or too few values and
malformed numbers (trimesh reads an ASCII file whose header promises more vertices than it holds by taking
face rows as vertices, and keeps 8 of 12 faces of a cut-off file), and it reads list properties of any
length (trimesh fails on faces of mixed sizes and on extra lists such as ``texcoord``). The pre-pass does
what plyfile does not:

- header lines that are not PLY keywords (Blender's ``Created by Blender ...``) become comments, with a
  note, where plyfile refuses the whole file;
- the vertex count is checked against MAX_POINTS before anything is read, and an ASCII body with fewer
  lines than the header promises is reported as truncated;
- the list lengths of each element's first row are worked out, so that plyfile memory-maps binary data
  (it checks that every row has those lengths; when one does not, the file is read again row by row).
  Without this, plyfile reads binary faces row by row in Python: about 15 s for a million faces.

Kept by hand for speed: plyfile also reads ASCII row by row (0.87 s for 50k faces, x30 open3d), so an
ASCII body whose header is regular and whose rows share one layout per element is read with one numpy
``loadtxt`` per element and cast to the declared types (:func:`_ascii_columns`); any other file, and any
file where that reading finds something odd, goes to plyfile, whose verdict stands
(``tests/test_io.py::test_ply_ascii_fast_path_agrees_with_plyfile``).
"""

from __future__ import annotations

import io
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .checks import Parsed, ShapeError, as_index, check_count, triangulate
from .source import Source, header_lines

_KEYWORDS = frozenset(("ply", "format", "element", "property", "comment", "end_header"))
_OBJ_INFO = "obj_info"  # standard, but exporters write it where plyfile refuses it: made a comment silently
_BYTE_ORDERS = {"binary_little_endian": "<", "binary_big_endian": ">"}
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FACE_LISTS = ("vertex_indices", "vertex_index")
_UNKNOWN = "?"  # a type name that is not PLY's


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, type, list count type


def read_ply(source: Source) -> Parsed:
    if not source.data.startswith(b"ply"):
        raise ShapeError("not a PLY file (it does not start with 'ply')")
    lines, offset = header_lines(source.data, lambda line: line == "end_header", "PLY")
    header, ignored = _standard_header(lines)
    fmt, elements = _declared(header)
    body = memoryview(source.data)[offset:]
    notes = ()
    if ignored:
        notes = (f"ignored {len(ignored)} non-standard PLY header line(s), e.g. {ignored[0][:60]!r}",)
    known, columns = {}, None
    if fmt == "ascii":
        _check_ascii_rows(body.tobytes(), elements)
        columns = _ascii_columns(body.tobytes(), elements) if _regular(header) else None
    elif fmt in _BYTE_ORDERS:
        known = _first_row_list_lengths(body, elements, _BYTE_ORDERS[fmt])
    if columns is None:
        rewritten = header != lines
        data = ("\n".join(header) + "\n").encode("ascii") + body if rewritten else source.data
        with _stream(data, source.path if not rewritten else None, binary=fmt in _BYTE_ORDERS) as stream:
            ply = _read_plyfile(stream, known)
        columns = {e.name: {p.name: e[p.name] for p in e.properties} for e in ply.elements}
    return _points_and_faces(columns, notes)


def _standard_header(lines: list[str]) -> tuple[list[str], list[str]]:
    """The header with each line that is not a PLY keyword made a comment, and those lines (blank ones and
    ``obj_info`` aside)."""
    header, ignored = [], []
    for line in lines:
        words = line.split()
        if words and words[0] in _KEYWORDS:
            header.append(line)
            continue
        header.append(f"comment {line}")
        if words and words[0] != _OBJ_INFO:
            ignored.append(line)
    return header, ignored


def _declared(lines: list[str]) -> tuple[str, list[_Element]]:
    """The format and the elements the header declares, read leniently (plyfile reports malformed lines)."""
    fmt, elements = "", []
    for words in (line.split() for line in lines):
        if words[:1] == ["format"] and len(words) > 1:
            fmt = words[1]
        elif words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
            elements.append(_Element(words[1], int(words[2])))
            if words[1] == "vertex":
                check_count(elements[-1].count, "vertices")
        elif words[:1] == ["property"] and elements:
            is_list = len(words) == 5 and words[1] == "list"
            name, kind, count = (words[4], words[3], words[2]) if is_list else (words[-1], words[1], None)
            count = None if count is None else _TYPES.get(count, _UNKNOWN)
            elements[-1].properties.append((name, _TYPES.get(kind, _UNKNOWN), count))
    return fmt, elements


def _regular(header: list[str]) -> bool:
    """Whether every header line is a well-formed ASCII PLY declaration (then :func:`_ascii_columns` may
    read the body; anything else is left to plyfile, which names what is wrong)."""
    declared: list[tuple[str, ...]] = []  # ("element",) or (element, property), to find duplicates
    for words in (line.split() for line in header[1:-1]):
        if words[0] == "element" and len(words) == 3 and words[2].isdigit():
            declared.append((words[1],))
        elif words[0] == "property" and declared and len(words) in (3, 5):
            is_list = len(words) == 5 and words[1] == "list"
            if not {*(words[2:4] if is_list else words[1:2])} <= {*_TYPES}:
                return False
            declared.append((next(d[0] for d in reversed(declared) if len(d) == 1), words[-1]))
        elif words[0] != "comment" and words != ["format", "ascii", "1.0"]:
            return False
    return header[0] == "ply" and len(set(declared)) == len(declared)


def _ascii_columns(body: bytes, elements: list[_Element]) -> dict[str, dict[str, np.ndarray]] | None:
    """{element: {property: values}} with one ``loadtxt`` per element, where each element's rows share one
    layout (each list one length); None to let plyfile read the file (and report what is wrong).

    plyfile reads ASCII row by row in Python, about 17 s for a million faces; this takes well under one.
    Values are cast to their declared types, as plyfile does; integers must be exact and in range.
    """
    lines, start, columns = body.decode("ascii", errors="replace").splitlines(), 0, {}
    for element in elements:
        block, start = lines[start : start + element.count], start + element.count
        try:
            table = np.loadtxt(block, ndmin=2, comments=None) if block else np.empty((0, 0))  # (count, T)
        except ValueError:
            return None
        values = _element_columns(table, element) if len(table) == element.count else None
        if values is None:
            return None
        columns[element.name] = values
    return columns


def _element_columns(table: np.ndarray, element: _Element) -> dict[str, np.ndarray] | None:
    """Split one element's (count, T) table into its properties; None when a row's layout differs."""
    if not len(table):
        return {name: np.empty((0, 0) if count else 0, kind) for name, kind, count in element.properties}
    values, position = {}, 0
    for name, kind, count in element.properties:
        width = 1
        if count is not None:
            width = table[0, position] if position < table.shape[1] else -1
            if not (width >= 0 and (table[:, position] == width).all() and _fits(table[:, position], count)):
                return None
            position, width = position + 1, int(width)
        column = table[:, position : position + width]  # (count, width)
        if column.shape[1] != width or not _fits(column, kind):
            return None
        values[name] = column.astype(kind) if count is not None else column[:, 0].astype(kind)
        position += width
    return values if position == table.shape[1] else None


def _fits(values: np.ndarray, kind: str) -> bool:
    """Whether float64 values cast to the PLY type ``kind`` unchanged (integers) or finite as before."""
    if np.dtype(kind).kind == "f":
        with np.errstate(over="ignore"):
            return bool((np.isfinite(values.astype(kind)) == np.isfinite(values)).all())
    info = np.iinfo(kind)
    return bool(((values == np.round(values)) & (values >= info.min) & (values <= info.max)).all())


def _check_ascii_rows(body: bytes, elements: list[_Element]) -> None:
    """An ASCII body holds one line per element row; fewer lines than promised is a cut-off file."""
    num_lines = body.count(b"\n")
    if body and not body.endswith(b"\n"):
        num_lines += 1
    promised = sum(element.count for element in elements)
    if num_lines < promised:
        counts = ", ".join(f"{element.count:,} {element.name}" for element in elements)
        raise ShapeError(
            f"truncated PLY file: the header promises {promised:,} rows ({counts}) "
            f"but the data holds {num_lines:,} lines"
        )


def _first_row_list_lengths(body: memoryview, elements: list[_Element], order: str) -> dict:
    """{element: {list property: its length in the element's first row}}, for plyfile's memory-mapped path.

    Row sizes follow from those lengths, so each element's offset is known as long as every earlier element
    has rows of one size, which plyfile checks while memory-mapping.
    """
    known, offset = {}, 0
    for element in elements:
        if element.count == 0:
            continue
        if any(_UNKNOWN in (kind, count) for _, kind, count in element.properties):
            break  # plyfile will name the unknown type
        lengths, row_size = {}, 0
        for name, kind, count in element.properties:
            length = 1
            if count is not None:
                at = offset + row_size
                if at + np.dtype(count).itemsize > len(body):
                    return known  # truncated: plyfile will say where
                length = lengths[name] = int(np.frombuffer(body, order + count, 1, at)[0])
                row_size += np.dtype(count).itemsize
            if length < 0:
                return known
            row_size += np.dtype(kind).itemsize * length
        if lengths:
            known[element.name] = lengths
        offset += element.count * row_size
    return known


def _stream(data: bytes, path: Path | None, *, binary: bool) -> AbstractContextManager[BinaryIO]:
    """A stream of ``data``: a real file for binary data, which plyfile memory-maps; memory for text."""
    if not binary:
        return io.BytesIO(data)
    if path is not None:  # the file on disk holds exactly ``data``
        return open(path, "rb")
    stream = tempfile.TemporaryFile()
    stream.write(data)
    stream.seek(0)
    return stream


def _read_plyfile(stream: BinaryIO, known: dict):
    import plyfile

    try:
        try:
            return plyfile.PlyData.read(stream, known_list_len=known)
        except plyfile.PlyElementParseError:
            if not known:
                raise
            stream.seek(0)  # a row whose lists differ from the first row's (or a cut-off file): row by row,
            return plyfile.PlyData.read(stream)  # which says which
    except plyfile.PlyHeaderParseError as err:
        raise ShapeError(f"unexpected PLY header line ({err})") from err
    except plyfile.PlyElementParseError as err:
        raise ShapeError(_element_error(err)) from err
    except UnicodeDecodeError as err:
        raise ShapeError("PLY data: the ASCII body holds bytes that are not text") from err


def _element_error(err) -> str:
    element, row = err.element, err.row
    if err.message == "early end-of-file" and element is not None:
        return (
            f"truncated PLY file: the header promises {element.count:,} {element.name} elements "
            f"but the data ends after {row or 0:,}"
        )
    if err.message == "malformed input":
        return f"PLY data: a value is not a number or does not fit its type ({err})"
    return f"malformed PLY data ({err})"


def _points_and_faces(columns: dict[str, dict[str, np.ndarray]], notes: tuple[str, ...]) -> Parsed:
    vertex = columns.get("vertex", {})
    if not all(axis in vertex for axis in "xyz"):
        raise ShapeError("the PLY header declares no vertex element with x, y and z properties")
    points = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], axis=1)  # (N, 3)
    face = columns.get("face", {})
    key = next((k for k in _FACE_LISTS if k in face), None)
    if key is None or len(face[key]) == 0:
        return Parsed(points, None, notes)
    return Parsed(points, triangulate(_polygons(face[key])), notes)


def _polygons(values: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """plyfile's list column -> (F, L) int64, or a list of 1-D int64 arrays when lengths differ."""
    if values.dtype != object:  # memory-mapped: (F, L)
        return as_index(values, "PLY faces")
    lengths = np.fromiter((len(p) for p in values), dtype=np.int64, count=len(values))  # (F,)
    if (lengths == lengths[0]).all():
        return as_index(np.stack(list(values)), "PLY faces")  # (F, L)
    return [as_index(p, "PLY faces") for p in values]
