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
  (it checks that every row has those lengths). When the lengths vary (triangles and quads), plyfile's
  row-by-row reader would take 36 s and 2.2 GB for 28 MB, so :func:`_walk_binary` reads the file instead:
  one loop over the rows' list lengths, then the lists gathered per length with numpy;
- nothing is built before the read budget allows it (:func:`~i2pmae.io.checks.claim`): rows with lists are
  bounded by MAX_FACES, a polygon by MAX_POLYGON_VERTICES, and each table is claimed before it is parsed;
- header lines end in LF, CRLF or, as the first line shows, CR alone (the spec's "carriage-return
  terminated" lines, which Rhino 6 writes: a binary body then starts right after the CR of ``end_header``,
  :func:`_header_lines`); they are rewritten to LF for plyfile, which takes the first line's ending for all
  of them (a CRLF header after "ply\n" made it read on into the binary data). An ASCII body of CR-only
  lines is read as LF lines.

Kept by hand for speed: plyfile also reads ASCII row by row (0.87 s for 50k faces, x30 open3d), so an
ASCII body whose header is regular is read with one numpy ``loadtxt`` per element and cast to the
declared types (:func:`_ascii_columns`); faces of mixed lengths are parsed all at once from the bytes
(:func:`_ragged_face_lists`). Any other file, and any file where that reading finds something odd, goes to
plyfile, whose verdict stands (``tests/test_io.py::test_ply_ascii_fast_path_agrees_with_plyfile``).
"""

from __future__ import annotations

import io
import re
import struct
import tempfile
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .checks import Parsed, ShapeError, as_index, check_count, claim
from .polygons import check_lengths, triangulate
from .source import MAX_HEADER_LINES, Source

_KEYWORDS = frozenset(("ply", "format", "element", "property", "comment", "end_header"))
_OBJ_INFO = "obj_info"  # standard, but exporters write it where plyfile refuses it: made a comment silently
_BYTE_ORDERS = {"binary_little_endian": "<", "binary_big_endian": ">"}
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_STRUCT = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I"}  # list count types
_FACE_LISTS = ("vertex_indices", "vertex_index")
_UNKNOWN = "?"  # a type name that is not PLY's
_ROW_BYTES = 128  # what plyfile's row-by-row reader allocates per row beyond the values (objects, arrays)
_WHITESPACE = np.frombuffer(b" \t\r\n\v\f", np.uint8)
_SCAN_CHUNK = 1 << 20  # bytes counted at a time when looking for where an element's lines end
_CHUNK_LINES = 1 << 18  # ASCII face rows parsed at once: bounds the working arrays (~40 bytes a byte)
_GATHER_BYTES = 1 << 24  # index bytes built at a time when gathering variable-length lists
_CR_FIRST_LINE = re.compile(rb"ply[ \t]*\r(?!\n)")  # header lines that end in CR alone (Rhino 6, old Macs)


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, type, list count type


def read_ply(source: Source) -> Parsed:
    if not source.data.startswith(b"ply"):
        raise ShapeError("not a PLY file (it does not start with 'ply')")
    lines, offset = _header_lines(source.data)
    header, ignored = _standard_header(lines)
    fmt, elements = _declared(header)
    body = memoryview(source.data)[offset:]
    _check_counts(elements)
    notes = ()
    if ignored:
        notes = (f"ignored {len(ignored)} non-standard PLY header line(s), e.g. {ignored[0][:60]!r}",)
    known, columns, body_changed = {}, None, False
    if fmt == "ascii":
        claim(2 * body.nbytes, "the ASCII body")  # its bytes, and each element's lines cut from them
        text = bytes(body)
        if b"\r" in text and b"\n" not in text:  # lines of old Macs: every reader below splits at LF
            claim(len(text), "the ASCII body with LF line ends")
            text = body = text.replace(b"\r", b"\n")
            body_changed = True
        _check_ascii_rows(text, elements)
        columns = _ascii_columns(text, elements) if _regular(header) else None
        if columns is None:  # plyfile reads ASCII row by row, a few objects per row
            claim(sum(e.count * (_ROW_BYTES + 8 * len(e.properties)) for e in elements), "plyfile's rows")
    elif fmt in _BYTE_ORDERS:
        known = _first_row_list_lengths(body, elements, _BYTE_ORDERS[fmt])
    if columns is None:
        # Header lines end in \n here, whatever the file's: plyfile takes the first line's ending for all.
        rewritten = header != lines or b"\r" in source.data[:offset] or body_changed
        data = ("\n".join(header) + "\n").encode("ascii") + body if rewritten else source.data
        with _stream(data, source.path if not rewritten else None, binary=fmt in _BYTE_ORDERS) as stream:
            columns = _read_plyfile(stream, known, body, elements, _BYTE_ORDERS.get(fmt, "<"))
    return _points_and_faces(columns, notes)


def _header_lines(data: bytes) -> tuple[list[str], int]:
    """The header's lines up to ``end_header`` (stripped), and the offset where the body starts.

    Lines end as the first one does: in LF (a CR before it is stripped), or in CR alone, as Rhino 6 and old
    Macs write them; the body then starts right after the CR of ``end_header``, even where its first byte
    is an LF (a uchar of 10).
    """
    newline = b"\r" if _CR_FIRST_LINE.match(data) else b"\n"
    lines, offset = [], 0
    while len(lines) < MAX_HEADER_LINES and (end := data.find(newline, offset)) >= 0:
        try:
            line = data[offset:end].decode("ascii").strip()
        except UnicodeDecodeError as err:
            raise ShapeError("not a PLY file (binary data inside the header)") from err
        lines.append(line)
        offset = end + 1
        if line == "end_header":
            return lines, offset
    raise ShapeError("not a PLY file, or its header is cut off (no end of header found)")


def _check_counts(elements: list[_Element]) -> None:
    """Elements with lists (faces, strips) are read row by row when their lengths vary: bound the rows."""
    for element in elements:
        if any(count is not None for _, _, count in element.properties):
            check_count(element.count, f"{element.name} rows", faces=True)


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
    Each element's lines are handed to ``loadtxt`` as one block of bytes: no Python object per line.
    """
    start, columns = 0, {}
    for element in elements:
        end = _after_lines(body, start, element.count)
        block, start = body[start:end], end
        width = len(block[:_SCAN_CHUNK].split(b"\n", 1)[0].split())  # values in the first row
        what = f"{element.count:,} {element.name} rows of {width} values"
        claim(2 * 8 * element.count * max(width, 1), what)  # the float64 table and its typed copy
        try:
            table = np.loadtxt(io.BytesIO(block), ndmin=2, comments=None) if element.count else None
        except ValueError:  # rows of different lengths (triangles and quads), or what plyfile must name
            table = None
        if not element.count:
            values = _element_columns(np.empty((0, 0)), element)
        elif table is None:
            values = _ragged_face_lists(block, element)
        else:
            values = _element_columns(table, element) if len(table) == element.count else None
        if values is None:
            return None
        columns[element.name] = values
    return columns


def _ragged_face_lists(block: bytes, element: _Element) -> dict[str, list] | None:
    """The face lists of an ASCII element whose rows differ in length, as [(row ids, (n, L))] per length L;
    None unless the element has one list, of vertex indices, and every row holds what its length says.

    The numbers and each line's count of values are found from the bytes, a chunk of lines at a time,
    without a Python object per row (plyfile takes about 15 s a million rows here).
    """
    lists = [i for i, (_, _, count) in enumerate(element.properties) if count is not None]
    if len(lists) != 1 or element.properties[lists[0]][0] not in _FACE_LISTS:
        return None
    # values (at most one per two bytes) and their offsets, row starts and lengths; one chunk's working arrays
    claim(8 * len(block) + 32 * element.count + 40 * _SCAN_CHUNK, f"the values of {element.count:,} rows")
    parts, start = [], 0
    while start < len(block):
        end = _after_lines(block, start, _CHUNK_LINES)
        part = _parse_lines(block[start:end])
        if part is None:
            return None
        parts.append(part)
        start = end
    values = np.concatenate([v for v, _ in parts]) if parts else np.empty(0)  # (all values,)
    per_row = np.concatenate([n for _, n in parts]) if parts else np.empty(0, np.int64)  # (rows,)
    if len(per_row) != element.count:
        return None
    before = lists[0]  # fixed values ahead of the list; the ones after it follow from the row length
    after = len(element.properties) - before - 1
    row_start = np.concatenate([[0], np.cumsum(per_row)[:-1]])  # (rows,)
    lengths = values[row_start + before]  # (rows,) as the rows announce them
    if not np.array_equal(lengths, per_row - before - 1 - after):
        return None
    lengths = lengths.astype(np.int64)
    check_lengths(lengths)
    groups = []
    for length in np.unique(lengths):
        ids = np.flatnonzero(lengths == length)  # (n,)
        groups.append((ids, values[row_start[ids, None] + before + 1 + np.arange(length)]))  # (n, L)
    return {element.properties[before][0]: groups}


def _parse_lines(block: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(every number of ``block`` (values,), how many each line holds (lines,)), or None for a non-number."""
    chars = np.frombuffer(block, np.uint8)
    space = np.isin(chars, _WHITESPACE)  # (bytes,)
    starts = np.flatnonzero(~space & np.concatenate([[True], space[:-1]]))  # (values,) first byte of each
    values = _integers(chars, space, starts)
    if values is None:
        values = _numbers(block)
    if values is None or len(values) != len(starts):
        return None
    return values, _values_per_line(chars, starts)


def _values_per_line(chars: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """How many values each line holds, from the bytes (B,) and the values' first bytes: (lines,) int64."""
    ends = np.flatnonzero(chars == ord("\n"))  # (lines,) or one less when the last line has no newline
    lines = len(ends) + (len(chars) > 0 and chars[-1] != ord("\n"))
    return np.bincount(np.searchsorted(ends, starts), minlength=lines)


def _integers(chars: np.ndarray, space: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """Whitespace-separated integers (face lists), parsed digit by digit with numpy, 10x faster than
    its float parser; None when some value is not a plain integer of at most 18 digits."""
    if not (space | ((chars >= ord("0")) & (chars <= ord("9"))) | (chars == ord("-"))).all():
        return None
    ends = np.flatnonzero(~space & np.concatenate([space[1:], [True]])) + 1  # (values,) one past the last
    negative = chars[starts] == ord("-")
    first = starts + negative
    digits = ends - first  # (values,)
    if len(digits) and (digits.min() < 1 or digits.max() > 18):
        return None
    value = np.zeros(len(starts), np.int64)
    for k in range(int(digits.max()) if len(digits) else 0):
        live = np.flatnonzero(digits > k)
        digit = chars[first[live] + k].astype(np.int64) - ord("0")
        if ((digit < 0) | (digit > 9)).any():  # a "-" inside a value
            return None
        value[live] = value[live] * 10 + digit
    return np.where(negative, -value, value)


def _numbers(block: bytes) -> np.ndarray | None:
    """Every whitespace-separated number of ``block`` (float64), or None when one is not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy warns, and stops, at a non-number
        try:
            return np.fromstring(block, sep=" ")
        except ValueError:
            return None


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


def _after_lines(data: bytes, start: int, count: int) -> int:
    """The offset just after ``count`` lines from ``start`` (or the end), counted in chunks of bytes."""
    while count > 0 and start < len(data):
        stop = min(start + _SCAN_CHUNK, len(data))
        found = data.count(b"\n", start, stop)
        if found < count:
            count, start = count - found, stop
            continue
        for _ in range(count):
            start = data.index(b"\n", start, stop) + 1
        return start
    return len(data) if count > 0 else start


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


def _read_plyfile(
    stream: BinaryIO, known: dict, body: memoryview, elements: list[_Element], order: str
) -> dict[str, dict]:
    """{element: {property: values}} from plyfile; binary lists whose lengths vary from row to row are
    walked by :func:`_walk_binary` instead of plyfile's row-by-row reader (36 s and 2.2 GB for 28 MB)."""
    import plyfile

    try:
        try:
            ply = plyfile.PlyData.read(stream, known_list_len=known)
        except plyfile.PlyElementParseError:
            if not known:
                raise
            return _walk_binary(body, elements, order)  # a row whose lists differ from the first row's
    except plyfile.PlyHeaderParseError as err:
        raise ShapeError(f"unexpected PLY header line ({err})") from err
    except plyfile.PlyElementParseError as err:
        raise ShapeError(_element_error(err)) from err
    except UnicodeDecodeError as err:
        raise ShapeError("PLY data: the ASCII body holds bytes that are not text") from err
    return {e.name: {p.name: e[p.name] for p in e.properties} for e in ply.elements}


def _walk_binary(body: memoryview, elements: list[_Element], order: str) -> dict[str, dict]:
    """Vertex and face columns of a binary body whose lists vary in length, without plyfile.

    Elements without lists are one ``frombuffer``; rows with lists are walked once in a loop that reads only
    their list lengths (about 1 s per million rows), and the face lists are then gathered per length with
    numpy. Face lists come back as [(row ids (n,), values (n, L))], one entry per length L.
    """
    columns, offset = {}, 0
    for element in elements:
        if any(_UNKNOWN in (kind, count) for _, kind, count in element.properties):
            raise ShapeError(f"unknown PLY property type in element {element.name!r}")
        if all(count is None for _, _, count in element.properties):
            columns[element.name], offset = _fixed_rows(body, offset, element, order)
        else:
            columns[element.name], offset = _list_rows(body, offset, element, order)
    return columns


def _fixed_rows(body: memoryview, offset: int, element: _Element, order: str) -> tuple[dict, int]:
    row = np.dtype([(f"p{i}", order + kind) for i, (_, kind, _) in enumerate(element.properties)])
    end = offset + element.count * row.itemsize
    if end > body.nbytes:
        raise ShapeError(_truncated(element, (body.nbytes - offset) // row.itemsize))
    table = np.frombuffer(body, row, element.count, offset)  # (count,) records, no copy
    return {name: table[f"p{i}"] for i, (name, _, _) in enumerate(element.properties)}, end


def _list_rows(body: memoryview, offset: int, element: _Element, order: str) -> tuple[dict, int]:
    """Walk rows with lists; return the face list (grouped by length) and the offset after the element."""
    steps = []  # per property: (fixed bytes, None) or (item bytes, count reader)
    for name, kind, count in element.properties:
        size = np.dtype(kind).itemsize
        if count is not None and count not in _STRUCT:
            raise ShapeError(f"PLY list {name!r}: its length type must be an integer type")
        steps.append((size, None) if count is None else (size, struct.Struct(order + _STRUCT[count])))
    face = next((i for i, (name, _, c) in enumerate(element.properties) if name in _FACE_LISTS and c), None)
    claim(16 * element.count, f"the list lengths of {element.count:,} {element.name} rows")
    starts = np.empty(element.count, np.int64)  # offset of each row's face list values
    lengths = np.empty(element.count, np.int64)
    position, row = offset, 0
    try:
        for row in range(element.count):
            for i, (size, reader) in enumerate(steps):
                if reader is None:
                    position += size
                    continue
                length = reader.unpack_from(body, position)[0]
                if length < 0:
                    raise ShapeError(f"PLY data: {element.name} row {row:,} has a list of {length} values")
                position += reader.size
                if i == face:
                    starts[row], lengths[row] = position, length
                position += size * length
    except struct.error:
        position = body.nbytes + 1
    if position > body.nbytes:
        raise ShapeError(_truncated(element, row))
    if face is None:
        return {}, position
    name, kind, _ = element.properties[face]
    return {name: _gather(body, starts, lengths, np.dtype(order + kind))}, position


def _gather(body: memoryview, starts: np.ndarray, lengths: np.ndarray, kind: np.dtype) -> list:
    """[(row ids (n,), values (n, L))] per list length L, read from the byte offsets ``starts``."""
    raw = np.frombuffer(body, np.uint8)
    check_lengths(lengths)
    claim(8 * int(lengths.sum()), f"{len(lengths):,} face lists")
    groups = []
    for length in np.unique(lengths):
        ids = np.flatnonzero(lengths == length)  # (n,)
        width = int(length) * kind.itemsize  # bytes of one row's list
        step = max(1, _GATHER_BYTES // (8 * max(width, 1)))
        parts = [raw[starts[ids[i : i + step], None] + np.arange(width)].view(kind)  # (<= step, L)
                 for i in range(0, len(ids), step)]
        groups.append((ids, np.concatenate(parts) if parts else np.empty((0, int(length)), kind)))
    return groups


def _truncated(element: _Element, rows: int) -> str:
    return (f"truncated PLY file: the header promises {element.count:,} {element.name} elements "
            f"but the data ends after {rows:,}")


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


def _points_and_faces(columns: dict[str, dict], notes: tuple[str, ...]) -> Parsed:
    vertex = columns.get("vertex", {})
    if not all(axis in vertex for axis in "xyz"):
        raise ShapeError("the PLY header declares no vertex element with x, y and z properties")
    claim(24 * len(vertex["x"]), f"{len(vertex['x']):,} vertices")
    points = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], axis=1)  # (N, 3)
    face = columns.get("face", {})
    key = next((k for k in _FACE_LISTS if k in face), None)
    if key is None or len(face[key]) == 0:
        return Parsed(points, None, notes)
    triangles = [triangulate(points, as_index(polygons, "PLY faces")) for _, polygons in _polygons(face[key])]
    return Parsed(points, np.concatenate(triangles), notes)


def _polygons(values: np.ndarray | list) -> list[tuple[np.ndarray, np.ndarray]]:
    """A face list column -> [(row ids (n,), polygons (n, L))], one entry per polygon length L.

    plyfile gives (F, L) when memory-mapped and an object array of rows otherwise; :func:`_walk_binary`
    gives the groups themselves.
    """
    if isinstance(values, list):
        return values
    if values.dtype != object:  # memory-mapped: (F, L)
        check_lengths(np.array([values.shape[1]]))
        claim(8 * values.size, f"{len(values):,} face lists")
        return [(np.arange(len(values)), values)]
    lengths = np.fromiter((len(p) for p in values), dtype=np.int64, count=len(values))  # (F,)
    check_lengths(lengths)
    return [(ids, np.stack([values[i] for i in ids])) for ids in
            (np.flatnonzero(lengths == length) for length in np.unique(lengths))]
