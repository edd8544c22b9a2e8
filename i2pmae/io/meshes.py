"""OBJ, OFF and ASCII STL (our parsers) and binary STL (trimesh, behind checks of our own); glTF / GLB are
in ``gltf``.

OBJ and OFF are parsed here because no library reads them strictly (measured on the cases of
tests/test_io.py): trimesh reads OBJ index 0 as another vertex (``f 0 1 2`` became the degenerate face
0 0 1), accepts ``v 1 2`` as a vertex, reads binary junk as an empty mesh, silently keeps 7 of 12 faces of
a cut-off OFF file and drops two-vertex OFF faces; open3d (assimp) returns an empty or partial mesh with a
printed warning for every one of these. ASCII STL is parsed here too: trimesh returns a scene, not a mesh,
for a file of several ``solid`` blocks, and splits the whole text into Python strings.

Text is bounded while it is read, not after. Vertices and faces are counted on the bytes (``bytes.count``,
refused past MAX_POINTS and MAX_FACES, an OFF file by its header) before a line is split; then the text is
parsed a chunk of about 1 MiB at a time (:func:`_chunks`, cut at line breaks), so the Python objects made
for lines never outgrow a chunk, and each chunk's arrays are claimed from the read budget before they are
built. Numbers are parsed by numpy: a regex picks the statements of a chunk, and rows of different lengths
(triangles and quads) are counted on the bytes and parsed flat (:func:`_word_counts`, :func:`_numbers`).
The OBJ line-by-line reader decides wherever that vectorised path declines (bare statements, index 0,
faces of fewer than 3 indices, values numpy does not parse: its errors name the line):
``test_obj_fast_path_agrees_with_the_line_by_line_reader``.

OFF faces whose indices wrap onto the following lines are read as a stream of values (:class:`_OffReader`),
and ``OFF BINARY`` in Geomview's layout and in pmp-library's (:func:`_binary_off`).

A binary STL is read by trimesh after a check that its size matches its triangle count (trimesh returns an
empty mesh otherwise, and fails on a count of 0); an ASCII STL cut inside a triangle or after its last facet
is refused.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from .checks import Parsed, ShapeError, as_index, check_count, claim, format_size
from .polygons import MAX_POLYGON_VERTICES, check_lengths, triangulate
from .source import Source
from .tables import text_bytes, unix_lines

_CHUNK_BYTES = 1 << 20  # text parsed at a time: it bounds the Python objects made for its lines
# Bytes of transient parsing per byte of text (numpy's per-byte arrays, its UCS4 copy of a row and its
# fields, or the line reader's words and ints); claimed for a chunk that one long line made larger than usual.
_LONG_CHUNK_FACTOR = 24  # measured on a line of 1 M indices: about 16 for numpy, 20 for the line reader
_INDEX_BYTES = 8  # int64 vertex indices and float64 coordinates alike
_LINE_BREAK = re.compile(rb"\r\n|[\r\n]")
_OTHER_BREAKS = re.compile(rb"[\x0b\x0c\x1c-\x1e]|\xc2\x85|\xe2\x80[\xa8\xa9]")  # str.splitlines' others
_SPACES = bytes.maketrans(b"\r\n", b"  ")

_STL_HEADER_BYTES = 80
_STL_TRIANGLE_BYTES = 50  # normal, 3 vertices (12 float32) and a uint16 attribute
_STL_SOLID = re.compile(rb"\s*solid", re.IGNORECASE)  # after any byte-order mark

_OFF_KEYWORD = re.compile(r"(ST)?C?N?OFF")
# A line's text before any comment (a byte-order mark counts as a space: ``^`` only matches at line starts).
_OFF_CONTENT = re.compile(rb"^(?:\xef\xbb\xbf)?+[ \t\r\f\v]*([^#\s][^\n#]*)", re.MULTILINE)
_OFF_COMMENT = re.compile(rb"#[^\n]*")
_OFF_BINARY = re.compile(rb"[ \t]*((?:ST)?C?N?4?n?OFF)[ \t]+BINARY[ \t]*\r?\n")
# (byte order, whether each face ends in a colour count and that many floats): Geomview's layout (it
# specifies big-endian), then pmp-library's (little-endian, no face colours), then the other two.
_OFF_BINARY_LAYOUTS = ((">", True), ("<", False), ("<", True), (">", False))

_BLANK = np.isin(np.arange(256), list(b" \t\x1f\n"))  # (256,) what str.split() splits at, once breaks are LF
# Where str.splitlines splits besides LF: made LF before the OBJ statements are picked out.
_OBJ_BREAKS = tuple(c.encode() for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_OBJ_INDEX = re.compile(r"[+-]?[0-9]+", re.ASCII)
# A line holding a byte that is not UTF-8 (a lone surrogate once decoded) outside a comment or a statement
# whose text is a name: a Latin-1 byte there is no reason to refuse the file. Lines follow a "\n".
_OBJ_UNDECODABLE = re.compile(
    "\n(?![^\\S\n]*(?:#|(?:o|g|mtllib|usemtl|usemap|maplib)(?:[^\\S\n]|$)))"  # not a comment or a name
    "[^\n]*[\udc80-\udcff]",
    re.MULTILINE,
)
_MAX_INDEX = 2**63 - 1
# What trimesh raises on content it cannot parse; turned into ShapeError by read_shape or here.
TRIMESH_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError, struct.error)


# ----------------------------------------------------------------------------------------------------------
# Text in chunks, shared by the three readers
# ----------------------------------------------------------------------------------------------------------


def _chunks(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """(offset, chunk) of ``data[start:]`` in pieces of about _CHUNK_BYTES, each ending at a line break that
    no backslash continues (so no statement is cut); a longer piece (one long line) is claimed first."""
    while start < len(data):
        end = _chunk_end(data, start + _CHUNK_BYTES)
        if end - start > 2 * _CHUNK_BYTES:
            claim(_LONG_CHUNK_FACTOR * (end - start), f"parsing a line of {format_size(end - start)}")
        yield start, data[start:end]
        start = end


def _chunk_end(data: bytes, position: int) -> int:
    if data[position - 1 : position] == b"\r":
        position -= 1  # a CR LF is one line break
    while (found := _LINE_BREAK.search(data, position)) is not None:
        if data[found.start() - 1 : found.start()] != b"\\":
            return found.end()
        position = found.end()
    return len(data)


class _LineNumbers:
    """Line numbers of byte offsets as str.splitlines counts them, counted forwards once (for error messages
    of the line reader, which may run on any chunk)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset, self.line = data, 0, 1

    def at(self, offset: int) -> int:
        data, start = self.data, self.offset
        breaks = data.count(b"\n", start, offset) + data.count(b"\r", start, offset)
        breaks -= data.count(b"\r\n", start, offset)
        breaks += len(_OTHER_BREAKS.findall(data, start, offset))
        self.offset, self.line = offset, self.line + breaks
        return self.line


class _Reserved:
    """The read budget with bytes claimed ahead, from counts on the text, so that a file is refused before
    its text is parsed; the claims of the arrays as they are built draw on them first (nothing twice)."""

    def __init__(self, num_bytes: int, what: str) -> None:
        claim(num_bytes, what)
        self.left = num_bytes

    def claim(self, num_bytes: int, what: str) -> None:
        drawn = min(num_bytes, self.left)
        self.left -= drawn
        claim(num_bytes - drawn, what)


def _statement_count(data: bytes, start: int, keyword: bytes) -> int:
    """How many lines start with ``keyword`` and a space (at least: indented ones are not counted)."""
    breaks = b"\n\r" if b"\r" in data else b"\n"  # CR alone: lines of old Macs (a fast check first)
    gaps = b" \t" if b"\t" in data else b" "
    count = sum(data.count(bytes((b, *keyword, g)), start) for b in breaks for g in gaps)
    return count + data.startswith(tuple(bytes((*keyword, g)) for g in gaps), start)


def _word_counts(codes: np.ndarray) -> np.ndarray:
    """(R,) how many words each of the R non-blank lines of the bytes ``codes`` holds, without a Python
    object per line: rows of different lengths (triangles and quads), which loadtxt refuses, are then parsed
    flat by :func:`_numbers`."""
    space = codes <= ord(" ")  # numpy splits words at whitespace; other control characters fail to parse
    starts = ~space
    starts[1:] &= space[:-1]  # (B,), the first byte of each word
    line = np.cumsum(codes == ord("\n"), dtype=np.int32)  # (B,), the line of each byte
    counts = np.bincount(line[starts])  # (lines,), words per line
    return counts[counts > 0]


def _numbers(codes: np.ndarray, dtype: type, count: int) -> np.ndarray:
    """The ``count`` whitespace-separated numbers of the bytes ``codes``, flat; ValueError for a word that is
    not one."""
    if count == 0:
        return np.empty(0, dtype)
    text = codes.tobytes().translate(_SPACES)
    flat = np.loadtxt([text], dtype=dtype, ndmin=1, comments=None)  # one row of them all
    if len(flat) != count:
        raise ValueError("a word numpy reads differently")  # a byte numpy takes for a space, or not
    return flat


def _rows_of(flat: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(R, length) values of ``flat`` from each of the R ``starts``."""
    return flat[starts[:, None] + np.arange(length)]


class _Lines(NamedTuple):
    """The lines of a chunk's bytes framed by LF (``b"\\n" + chunk + b"\\n"``), as positions in them."""

    starts: np.ndarray  # (L,) the first byte of each line
    ends: np.ndarray  # (L,) the LF that ends it
    first: np.ndarray  # (L,) its first non-blank byte (its end for a blank line)


def _lines(codes: np.ndarray) -> _Lines:
    """The lines of ``codes``, which starts and ends with LF."""
    breaks = np.flatnonzero(codes == ord("\n"))  # (L + 1,)
    starts, ends = breaks[:-1] + 1, breaks[1:]
    solid = np.flatnonzero(~_BLANK[codes])  # (S,) non-blank bytes, then a sentinel
    first = np.append(solid, len(codes))[np.searchsorted(solid, starts)]
    return _Lines(starts, ends, np.minimum(first, ends))


def _keyword(codes: np.ndarray, lines: _Lines, word: bytes, fold: bool = False) -> np.ndarray:
    """(L,) whether each line's first word is ``word`` (any case with ``fold``: ``word`` in lower case)."""
    found = lines.first + len(word) <= lines.ends
    last = len(codes) - 1
    for i, byte in enumerate(word):
        got = codes[np.minimum(lines.first + i, last)]
        found &= (got | 0x20 if fold else got) == byte  # | 0x20: A-Z -> a-z
    return found & _BLANK[codes[np.minimum(lines.first + len(word), last)]]


def _kept(codes: np.ndarray, lines: _Lines, chosen: np.ndarray, width: int) -> np.ndarray:
    """The bytes of the ``chosen`` lines without their first ``width`` (the keyword), others made spaces:
    each chosen line a row of numbers."""
    keep = np.concatenate(([True], np.repeat(chosen, lines.ends - lines.starts + 1)))  # (B,)
    kept = np.where(keep, codes, np.uint8(ord(" ")))
    for i in range(width):
        kept[lines.first[chosen] + i] = ord(" ")
    return kept


def _joined(parts: list[np.ndarray], what: str, width: int, budget: _Reserved) -> np.ndarray:
    """The parts (chunks of one array) concatenated, the copy claimed first."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty((0, width))
    budget.claim(sum(part.nbytes for part in parts), what)
    return np.concatenate(parts)


def _triangles(vertices: np.ndarray, polygons: dict[int, list[np.ndarray]], budget: _Reserved) -> np.ndarray:
    """Triangles of the polygons of each length, the lengths in increasing order (as ``triangulate`` orders
    a mixed list); each length's chunks are joined first."""
    num_triangles = sum(max(n - 2, 0) * sum(map(len, parts)) for n, parts in polygons.items())
    check_count(num_triangles, "triangles", faces=True)  # before they are built
    parts = [triangulate(vertices, _joined(polygons[n], f"{n}-sided faces", n, budget))
             for n in sorted(polygons)]
    return _joined(parts, "the triangles", 3, budget)


# ----------------------------------------------------------------------------------------------------------
# OBJ
# ----------------------------------------------------------------------------------------------------------


class _ObjPart(NamedTuple):
    """A chunk's vertices and faces; indices as written (1-based, or negative: counted back from the vertices
    read so far) with, for those with negative ones, the vertices of the chunk before each face."""

    points: np.ndarray  # (V, 3)
    faces: dict[int, tuple[np.ndarray, np.ndarray | None]]  # polygon size L -> (F_L, L) indices, (F_L,) prior


def read_obj(source: Source) -> Parsed:
    """Vertices (``v x y z ...``) and faces (``f a b c ...``, 1-based or negative relative indices).

    A line ending in a backslash continues on the next; errors name the line where a statement starts.
    Names (``o``, ``g``, ``usemtl``, ``mtllib``) and comments may hold bytes that are not UTF-8.
    """
    data, start = text_bytes(source.data, "OBJ", strict=False)
    num_vertices, num_faces = _statement_count(data, start, b"v"), _statement_count(data, start, b"f")
    check_count(num_vertices, "vertices")  # before a single line is split
    check_count(num_faces, "faces", faces=True)
    # The chunks' arrays and their concatenation: vertices, and triangles at least.
    budget = _Reserved(2 * 3 * _INDEX_BYTES * (num_vertices + num_faces), "the OBJ vertices and faces")
    lines = _LineNumbers(data)
    points, polygons, count, faces_read = [], {}, 0, 0
    for offset, chunk in _chunks(data, start):
        _check_obj_bytes(chunk, offset, lines)
        part = _obj_fast(chunk) or _obj_lines(chunk.decode("utf-8", "surrogateescape"), lines.at(offset))
        # Claimed once built: the chunk bounds them (a few MB), as it bounds the objects made for its lines.
        budget.claim(_part_bytes(part), "the OBJ vertices and faces")
        for size, (indices, prior) in part.faces.items():
            polygons.setdefault(size, []).append(_resolved(indices, prior, count))
            faces_read += len(indices)
        points.append(part.points)
        count += len(part.points)
        check_count(count, "vertices")
        check_count(faces_read, "faces", faces=True)
    vertices = _joined(points, "the OBJ vertices", 3, budget)
    return Parsed(vertices, _triangles(vertices, polygons, budget)) if polygons else Parsed(vertices)


def _part_bytes(part: _ObjPart) -> int:
    faces = sum(rows.nbytes + (0 if prior is None else prior.nbytes) for rows, prior in part.faces.values())
    return part.points.nbytes + faces


def _check_obj_bytes(chunk: bytes, offset: int, lines: _LineNumbers) -> None:
    """Refuse a byte that is not UTF-8 outside names and comments."""
    if chunk.isascii():
        return
    try:
        chunk.decode("utf-8")
        return
    except UnicodeDecodeError:
        text = chunk.decode("utf-8", "surrogateescape")  # each such byte becomes one lone surrogate
    found = _OBJ_UNDECODABLE.search("\n" + text.replace("\r", "\n"))  # CR: lines of old Macs
    if found is not None:
        keyword = found.group().split(None, 1)[0]
        line = lines.at(offset + len(text[: found.start()].encode("utf-8", "surrogateescape")))
        raise ShapeError(f"not a text OBJ file (bytes that are not UTF-8 on line {line}, in {keyword!r})")


def _obj_fast(chunk: bytes) -> _ObjPart | None:
    """A chunk's statements picked out and parsed by numpy on its bytes, no Python object per line; None
    wherever the line-by-line reader must decide (bare statements, values numpy does not parse, index 0)."""
    codes = np.frombuffer(b"\n" + _obj_joined(chunk) + b"\n", np.uint8)
    lines = _lines(codes)
    vertex, face = _keyword(codes, lines, b"v"), _keyword(codes, lines, b"f")
    if (codes[lines.first[vertex | face] + 1] == ord("\n")).any():
        return None  # a "v" or "f" with nothing after it
    try:
        points = _obj_fast_vertices(_kept(codes, lines, vertex, 1), int(vertex.sum()))
        faces = _obj_fast_faces(_kept(codes, lines, face, 1), int(face.sum()), vertex, face)
    except ShapeError:
        raise  # a limit, not a value numpy does not parse
    except (ValueError, OverflowError):
        return None
    return None if points is None or faces is None else _ObjPart(points, faces)


def _obj_joined(chunk: bytes) -> bytes:
    """Line breaks made LF (wherever splitlines splits), continued lines joined (as the line reader does)."""
    chunk = chunk.replace(b"\r\n", b"\n")
    for other in _OBJ_BREAKS:
        if other in chunk:
            chunk = chunk.replace(other, b"\n")
    return chunk.replace(b"\\\n", b" ")


def _obj_fast_vertices(codes: np.ndarray, num_rows: int) -> np.ndarray | None:
    """Rows "x y z [w | r g b]" -> (V, 3) float64; None for a row of fewer than 3 values."""
    if num_rows == 0:
        return np.empty((0, 3))
    counts = _word_counts(codes)  # (V,)
    if len(counts) != num_rows or (counts < 3).any():
        return None
    flat = _numbers(codes, np.float64, int(counts.sum()))
    return _rows_of(flat, np.cumsum(counts) - counts, 3)


def _obj_fast_faces(
    codes: np.ndarray, num_rows: int, vertex: np.ndarray, face: np.ndarray
) -> dict[int, tuple[np.ndarray, np.ndarray | None]] | None:
    """Face rows -> {L: ((F_L, L) indices as written, (F_L,) vertices before each or None)}; None for an
    index 0 or a row without indices."""
    if num_rows == 0:
        return {}
    if (codes == ord("/")).any():
        codes = _without_slashes(codes)  # "1/2/3" -> "1    "
        if codes is None:
            return None
    counts = _word_counts(codes)  # (F,)
    if len(counts) != num_rows:
        return None
    if counts.min(initial=3) < 3:
        return None  # the line reader names the line of a face of fewer than 3 indices
    check_lengths(counts.max(initial=3)[None])  # the longest, before its values are parsed
    flat = _numbers(codes, np.int64, int(counts.sum()))
    if (flat == 0).any():
        return None
    starts = np.cumsum(counts) - counts  # (F,)
    prior = np.cumsum(vertex)[face] if len(flat) and flat.min() < 0 else None  # (F,)
    return {
        int(n): (_rows_of(flat, starts[counts == n], n), None if prior is None else prior[counts == n])
        for n in np.unique(counts)
    }


def _without_slashes(codes: np.ndarray) -> np.ndarray | None:
    """Face rows with the "/t/n" of each "i/t/n" made spaces; None for a word that starts with "/"."""
    space, slash = codes <= ord(" "), codes == ord("/")
    if slash[0] or (slash[1:] & space[:-1]).any():
        return None
    marks = np.where(space | slash, np.arange(len(codes), dtype=np.int32), np.int32(-1))  # (B,)
    last = np.maximum.accumulate(marks)  # (B,), the last space or slash at or before each byte
    blanked = codes.copy()
    blanked[slash[last] & (last >= 0)] = ord(" ")  # from a slash to the next space
    return blanked


def _resolved(indices: np.ndarray, prior: np.ndarray | None, count: int) -> np.ndarray:
    """Indices as written -> 0-based, given ``count`` vertices before the chunk."""
    if prior is None:
        indices -= 1
        return indices
    return np.where(indices > 0, indices - 1, indices + (count + prior)[:, None])


def _obj_lines(text: str, first_line: int) -> _ObjPart:
    """The line-by-line reader of a chunk whose first line is ``first_line``: exact errors for any file."""
    vertices, faces, prior = [], [], []
    for number, line in _obj_statements(text, first_line):
        words = line.split()
        if not words:
            continue
        if words[0] == "v":
            if len(words) < 4:
                raise ShapeError(f"line {number}: a vertex needs x y z, got {line.strip()[:80]!r}")
            vertices.append(" ".join(words[1:4]))
        elif words[0] == "f":
            if len(words) < 4:
                got = line.strip()[:80]
                raise ShapeError(f"line {number}: a face needs at least 3 vertex indices, got {got!r}")
            check_lengths(np.array([len(words) - 1]))
            faces.append([_obj_index(word, number) for word in words[1:]])
            prior.append(len(vertices))
    points = _float_rows(vertices, "OBJ vertices") if vertices else np.empty((0, 3))
    sizes = np.array([len(face) for face in faces], dtype=np.int64)
    prior = np.array(prior, dtype=np.int64)
    grouped = {}
    for size in np.unique(sizes):
        chosen = np.flatnonzero(sizes == size)
        rows = np.array([faces[i] for i in chosen], dtype=np.int64).reshape(len(chosen), size)
        grouped[int(size)] = (rows, prior[chosen])
    return _ObjPart(points, grouped)


def _obj_statements(text: str, first_line: int) -> Iterator[tuple[int, str]]:
    """(line number, statement) with backslash continuations joined."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), first_line):
        if line.endswith("\\"):
            pending, start = pending + line[:-1] + " ", start or number
            continue
        yield (start or number), pending + line
        pending, start = "", 0
    if pending:
        yield start, pending


def _obj_index(word: str, line: int) -> int:
    """``i``, ``i/t``, ``i//n`` or ``i/t/n`` -> the vertex index as written (1-based, or negative)."""
    number = word.split("/", 1)[0]
    if not _OBJ_INDEX.fullmatch(number) or abs(int(number)) > _MAX_INDEX:
        raise ShapeError(f"line {line}: {word!r} is not a vertex index")
    if int(number) == 0:
        raise ShapeError(f"line {line}: OBJ vertex indices start at 1, found 0")
    return int(number)


def _float_rows(rows: list[str], what: str) -> np.ndarray:
    """R >= 1 rows of three number strings -> (R, 3) float64 (numpy's parser, as the fast path's)."""
    try:
        return np.loadtxt(rows, ndmin=2, comments=None)  # (R, 3)
    except ValueError as err:
        raise ShapeError(f"{what}: a value is not a number ({str(err).split(' at row')[0]})") from err


# ----------------------------------------------------------------------------------------------------------
# OFF
# ----------------------------------------------------------------------------------------------------------


def read_off(source: Source) -> Parsed:
    """OFF, COFF, NOFF, STOFF; the counts may follow the keyword on its line, even glued (``OFF8 12 0``);
    faces whose indices run over several lines (:class:`_OffReader`); ``OFF BINARY`` (:func:`_binary_off`)."""
    binary = _OFF_BINARY.match(source.data)
    if binary is not None:
        return _binary_off(source.data, binary)
    data = unix_lines(text_bytes(source.data, "OFF")[0])
    num_vertices, num_faces, body = _off_header(data)
    check_count(num_vertices, "vertices")
    check_count(num_faces, "faces", faces=True)
    lines = max(0, data.count(b"\n", body) - 1 + (not data.endswith(b"\n")))  # at least the data lines
    if lines < num_vertices + num_faces:
        raise ShapeError(_off_truncated(num_vertices, num_faces, f"{lines:,} lines after the header"))
    if num_vertices == 0:
        return Parsed(np.empty((0, 3)))
    # The chunks' arrays and their concatenation: vertices, and triangles at least.
    budget = _Reserved(2 * 3 * _INDEX_BYTES * (num_vertices + num_faces), "the OFF vertices and faces")
    reader = _OffReader((num_vertices, num_faces), budget)
    for _, chunk in _chunks(data, body):
        if reader.complete:
            break  # lines after the promised vertices and faces are not read
        reader.feed(_OFF_COMMENT.sub(b"", chunk) if b"#" in chunk else chunk)
    reader.check_complete()
    points = _joined(reader.vertices, "the OFF vertices", 3, budget)
    return Parsed(points, _triangles(points, reader.polygons, budget)) if num_faces else Parsed(points)


def _off_header(data: bytes) -> tuple[int, int, int]:
    """(vertices, faces, offset of the first data line) from the keyword line and the counts."""
    keyword_line = _OFF_CONTENT.search(data)
    first = keyword_line.group(1).decode().strip() if keyword_line else ""
    keyword = _OFF_KEYWORD.match(first)
    if keyword is None:
        raise ShapeError("not an OFF file (the first line does not start with 'OFF')")
    counts, end = first[keyword.end() :].split(), keyword_line.end()
    if not counts and (counts_line := _OFF_CONTENT.search(data, end)) is not None:
        counts, end = counts_line.group(1).decode().split(), counts_line.end()
    if len(counts) not in (2, 3) or not all(c.isdigit() for c in counts):
        found = " ".join(counts)
        raise ShapeError(f"the OFF header should give 'vertices faces edges' counts, got {found!r}")
    return int(counts[0]), int(counts[1]), end


def _off_truncated(num_vertices: int, num_faces: int, holds: str) -> str:
    return (
        f"truncated OFF file: the header promises {num_vertices:,} vertices and {num_faces:,} faces "
        f"but the file holds only {holds}"
    )


class _OffReader:
    """The vertices and faces of an OFF body, fed a chunk of lines at a time (comments removed).

    While rows line up (a vertex a line, a face a line: ``k i_1 ... i_k [colour]``), each chunk is parsed
    at once. OFF is whitespace-separated, though, and some writers wrap a face's indices onto the following
    lines (libigl's tutorial data): from the first row that does not line up, the rest is read as a stream
    of values in which each vertex or face starts a line, takes the values it needs from the lines after
    when its own holds too few, and ignores the rest of the line where it ends (a colour), as libigl does.
    Either way the items are the header's counts, which MAX_POINTS, MAX_FACES and the read budget checked
    before the body was parsed; the stream takes one Python step an item (where one starts depends on the
    one before), about 1.5 s a million faces, and each chunk's arrays are claimed as in the row path.
    """

    def __init__(self, promised: tuple[int, int], budget: _Reserved) -> None:
        self.num_vertices, self.num_faces = promised
        self.budget = budget
        self.vertices: list[np.ndarray] = []  # chunks of (V_c, 3) float64
        self.polygons: dict[int, list[np.ndarray]] = {}  # k -> chunks of (F_c, k) int64
        self.done = 0  # items read: vertices, then faces
        self.streaming = False
        self.carry: list[np.ndarray] = []  # the values so far of an item cut by a chunk's end (streaming)
        self.carry_needs = 0  # how many values that item takes

    @property
    def complete(self) -> bool:
        return self.done == self.num_vertices + self.num_faces

    def feed(self, chunk: bytes) -> None:
        codes = np.frombuffer(chunk, np.uint8)
        counts = _word_counts(codes)  # (R,) values of each non-blank line
        if not self.streaming and self._rows(codes, counts):
            return
        self.streaming = True
        self._stream(codes, counts)

    def check_complete(self) -> None:
        if self.complete:
            return
        vertices = min(self.done, self.num_vertices)
        how = " (its rows do not line up: read as a stream of values)" if self.streaming else ""
        holds = f"{vertices:,} vertices and {self.done - vertices:,} faces{how}"
        raise ShapeError(_off_truncated(self.num_vertices, self.num_faces, holds))

    def _rows(self, codes: np.ndarray, counts: np.ndarray) -> bool:
        """Read the rows as whole vertices and faces; False, reading nothing, when they do not line up."""
        take = min(len(counts), self.num_vertices + self.num_faces - self.done)
        if take < len(counts):  # the promised lines end here: what follows is not read
            codes, counts = codes[: _rows_end(codes, take)], counts[:take]
        flat = _off_numbers(codes, int(counts.sum()))
        starts = np.cumsum(counts) - counts  # (R,)
        split = max(0, min(take, self.num_vertices - self.done))  # rows of this chunk that are vertices
        sizes = flat[starts[split:]]  # (F,) what each face row announces
        if (counts[:split] < 3).any() or not ((sizes >= 0) & (sizes < counts[split:])).all():
            return False
        self._add_vertices(flat, starts[:split])
        self._add_faces(sizes, flat, starts[split:] + 1)
        self.done += take
        return True

    def _stream(self, codes: np.ndarray, counts: np.ndarray) -> None:
        """Read the chunk as a stream of values (see the class docstring)."""
        flat, counts, error = _numeric_rows(codes, counts)
        starts = np.cumsum(counts) - counts  # (R,) each row's first value
        row = self._finish_carry(flat, starts)
        while not self.complete and row < len(starts):
            row = self._stream_section(flat, starts, row)
        if error is not None and not self.complete:
            raise error  # a value that is not a number, where the vertices and faces still go on

    def _finish_carry(self, flat: np.ndarray, starts: np.ndarray) -> int:
        """Complete the item the last chunk cut off (if any); the row where the next item starts."""
        if not self.carry:
            return 0
        missing = self.carry_needs - sum(map(len, self.carry))
        if missing > len(flat):
            self.carry.append(flat.copy())
            return len(starts)
        values = np.concatenate([*self.carry, flat[:missing]])
        self.carry = []
        if self.done < self.num_vertices:
            self._add_vertices(values, np.zeros(1, np.int64))
        else:
            self._add_faces(values[:1], values, np.ones(1, np.int64))
        self.done += 1
        return int(np.searchsorted(starts, missing))

    def _stream_section(self, flat: np.ndarray, starts: np.ndarray, row: int) -> int:
        """Read items of the current section (vertices or faces) from ``row`` on, each starting a row;
        return the row after the last one read (or the chunk's end, an item cut there carried over)."""
        vertices = self.done < self.num_vertices
        left = (self.num_vertices if vertices else self.num_vertices + self.num_faces) - self.done
        needs = np.full(len(starts), 3) if vertices else 1 + _face_sizes(flat[starts])  # (R,) values
        ends = starts + needs  # (R,) one past the item, were it to start at this row
        after = np.searchsorted(starts, ends)  # (R,) the row the next item would start at
        chain, count, cut = np.empty(min(left, len(starts) - row), np.int64), 0, None
        while count < left and row < len(starts):  # one step per item: each depends on the one before
            if ends[row] > len(flat):
                cut, row = row, len(starts)
                break
            chain[count], count, row = row, count + 1, after[row]
        chain = chain[:count]
        if vertices:
            self._add_vertices(flat, starts[chain])
        else:
            self._add_faces(flat[starts[chain]], flat, starts[chain] + 1)
        self.done += count
        if cut is not None:
            self._carry_from(flat, starts[cut], int(needs[cut]), vertices)
        return int(row)

    def _carry_from(self, flat: np.ndarray, start: int, needs: int, vertex: bool) -> None:
        """Keep the values of an item cut by the chunk's end; a face's size, which bounds them, is checked."""
        if not vertex:
            check_lengths(as_index(flat[start : start + 1], "OFF faces"))
        self.carry, self.carry_needs = [flat[start:].copy()], needs

    def _add_vertices(self, flat: np.ndarray, starts: np.ndarray) -> None:
        """Vertex values "x y z [colour ...]" from each of ``starts`` -> (V, 3) float64."""
        self.budget.claim(len(starts) * 3 * _INDEX_BYTES, "the OFF vertices")
        self.vertices.append(_rows_of(flat, starts, 3))

    def _add_faces(self, sizes: np.ndarray, flat: np.ndarray, first: np.ndarray) -> None:
        """Faces of (F,) ``sizes`` whose indices start at ``first`` -> {k: (F_k, k) int64}."""
        what = "OFF faces"
        sizes = as_index(sizes, what)
        check_lengths(sizes)
        self.budget.claim(int(sizes.sum()) * _INDEX_BYTES, "the OFF faces")
        for k in np.unique(sizes):
            rows = as_index(_rows_of(flat, first[sizes == k], int(k)), what)
            self.polygons.setdefault(int(k), []).append(rows)


def _face_sizes(values: np.ndarray) -> np.ndarray:
    """Face sizes as rows announce them -> int64, 0 where one is not a valid size (it is refused once its
    row turns out to start a face; other rows are continuations, their first value any index)."""
    valid = (values >= 0) & (values <= MAX_POLYGON_VERTICES) & (values == np.round(values))
    return np.where(valid, values, 0).astype(np.int64)


def _numeric_rows(codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, ShapeError | None]:
    """The values of the leading rows of ``codes`` that are all numbers, those rows' counts, and the error
    for the first row that is not (None if all are): text after the last face need not be numbers."""
    try:
        return _off_numbers(codes, int(counts.sum())), counts, None
    except ShapeError as err:
        error = err
    good, bad = 0, len(counts)  # rows[:good] parse, rows[:bad] do not: bisect (only on this error path)
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            _off_numbers(codes[: _rows_end(codes, middle)], int(counts[:middle].sum()))
            good = middle
        except ShapeError:
            bad = middle
    flat = _off_numbers(codes[: _rows_end(codes, good)], int(counts[:good].sum())) if good else np.empty(0)
    return flat, counts[:good], error


def _rows_end(codes: np.ndarray, rows: int) -> int:
    """The offset just after the first ``rows`` non-blank lines of the bytes ``codes``."""
    newline = codes == ord("\n")
    line = np.cumsum(newline) - newline  # (B,), the line of each byte, its LF included
    last = np.unique(line[codes > ord(" ")])[rows - 1]  # the line of the last row wanted
    breaks = np.flatnonzero(newline)
    return int(breaks[last]) + 1 if last < len(breaks) else len(codes)


def _off_numbers(codes: np.ndarray, count: int) -> np.ndarray:
    try:
        return _numbers(codes, np.float64, count)
    except ValueError as err:
        raise ShapeError(f"OFF data: a value is not a number ({str(err).split(' at row')[0]})") from err


def _binary_off(data: bytes, header: re.Match) -> Parsed:
    """``OFF BINARY``: after the keyword line, int32 counts (vertices, faces, edges); float32 vertices (x y z,
    then the normal, colour and texture coordinates the keyword's N, C and ST announce); then per face an
    int32 count n, n int32 indices and, in Geomview's layout, an int32 colour count and that many float32.

    Geomview writes big-endian; pmp-library writes its machine's byte order (little-endian) and no face
    colours. The layout taken is the first of :data:`_OFF_BINARY_LAYOUTS` whose faces end exactly at the
    file's end."""
    keyword = header.group(1).decode()
    if "4" in keyword or "n" in keyword:
        raise ShapeError(f"binary OFF of homogeneous or n-D vertices ({keyword!r}) is not supported")
    width = 3 + 3 * ("N" in keyword) + 4 * ("C" in keyword) + 2 * keyword.startswith("ST")  # float32 a vertex
    start = header.end() + 12  # after the counts
    budget = _Reserved(0, "the OFF vertices and faces")  # claims go straight to the read's budget
    for order, colours in _OFF_BINARY_LAYOUTS:
        counts = _binary_off_counts(data, start, order, width)
        if counts is None:
            continue
        num_vertices, num_faces = counts
        check_count(num_vertices, "vertices")
        check_count(num_faces, "faces", faces=True)
        faces_at = start + 4 * width * num_vertices
        polygons = _binary_off_faces(data, faces_at, num_faces, (order, colours), budget)
        if polygons is not None:
            break
    else:
        raise ShapeError(
            "binary OFF: its data fits its counts in neither Geomview's layout nor pmp-library's, in either "
            "byte order (a truncated file?)"
        )
    budget.claim(num_vertices * 3 * _INDEX_BYTES, "the OFF vertices")
    table = np.frombuffer(data, order + "f4", num_vertices * width, start).reshape(num_vertices, width)
    points = table[:, :3].astype(np.float64)  # (V, 3)
    return Parsed(points, _triangles(points, polygons, budget)) if num_faces else Parsed(points)


def _binary_off_counts(data: bytes, start: int, order: str, width: int) -> tuple[int, int] | None:
    """(vertices, faces) read in byte order ``order``; None unless they fit the file (3 indices a face)."""
    if len(data) < start:
        return None
    num_vertices, num_faces, _ = struct.unpack_from(order + "3i", data, start - 12)
    smallest = 4 * width * num_vertices + 4 * 4 * num_faces
    fits = min(num_vertices, num_faces) >= 0 and smallest <= len(data) - start
    return (num_vertices, num_faces) if fits else None


def _binary_off_faces(
    data: bytes, offset: int, count: int, layout: tuple[str, bool], budget: _Reserved
) -> dict[int, list[np.ndarray]] | None:
    """{n: [(F_n, n) int32 indices]} of ``count`` faces from ``offset``; None unless they end at the file's
    end in this ``layout`` (byte order, whether faces carry colours)."""
    order, colours = layout
    if (len(data) - offset) % 4:
        return None
    words = np.frombuffer(data, order + "i4", (len(data) - offset) // 4, offset)  # (W,), no copy
    if count == 0:
        return {} if len(words) == 0 else None
    uniform = _uniform_binary_faces(words, count, colours)
    if uniform is not None:
        budget.claim(uniform.size * 4, "the OFF faces")
        return {uniform.shape[1]: [uniform]}
    budget.claim(16 * count, f"the sizes of {count:,} OFF faces")
    walked = _walk_binary_faces(words, count, colours)
    if walked is None:
        return None
    starts, sizes = walked
    check_lengths(sizes)
    budget.claim(int(sizes.sum()) * 4, "the OFF faces")
    return {int(n): [words[starts[sizes == n, None] + np.arange(n)]] for n in np.unique(sizes)}


def _uniform_binary_faces(words: np.ndarray, count: int, colours: bool) -> np.ndarray | None:
    """(F, n) indices when every face has the first one's size (and colour count): one strided view."""
    size = int(words[0])
    colour = int(words[1 + size]) if colours and 0 <= size < len(words) - 1 else 0
    width = 1 + size + (1 + colour if colours else 0)  # int32 words a face
    if not (3 <= size <= MAX_POLYGON_VERTICES and 0 <= colour <= 4 and width * count == len(words)):
        return None
    table = words.reshape(count, width)
    if (table[:, 0] != size).any() or (colours and (table[:, 1 + size] != colour).any()):
        return None
    return table[:, 1 : 1 + size]


def _walk_binary_faces(words: np.ndarray, count: int, colours: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """(F,) word offsets of each face's indices and (F,) sizes, face by face (about 1 s a million); None
    when a size or colour count is negative or the faces do not end exactly at the file's end."""
    starts, sizes = np.empty(count, np.int64), np.empty(count, np.int64)
    position = 0
    for face in range(count):
        if position >= len(words) or words[position] < 0:
            return None
        starts[face], sizes[face] = position + 1, words[position]
        position += 1 + int(words[position])
        if colours:
            if position >= len(words) or not 0 <= words[position] <= 4:
                return None
            position += 1 + int(words[position])
    return (starts, sizes) if position == len(words) else None


# ----------------------------------------------------------------------------------------------------------
# STL: ASCII (ours), binary (trimesh)
# ----------------------------------------------------------------------------------------------------------


def read_stl(source: Source) -> Parsed:
    """Binary STL (80-byte header, uint32 count, 50 bytes a triangle) or ASCII ``solid ... vertex x y z``,
    of one or several solids, behind a byte-order mark or not."""
    data, header = source.data, _STL_HEADER_BYTES + 4
    count = struct.unpack_from("<I", data, _STL_HEADER_BYTES)[0] if len(data) >= header else None
    expected = None if count is None else header + count * _STL_TRIANGLE_BYTES
    if count is not None and len(data) == expected:
        return _binary_stl(data, count)
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    if _STL_SOLID.match(data, bom):
        return _ascii_stl(data)
    if count is not None and len(data) < expected:
        raise ShapeError(
            f"truncated binary STL file: the header promises {count:,} triangles "
            f"({expected:,} bytes) but the file has {len(data):,} bytes"
        )
    raise ShapeError("not an STL file (neither 'solid' text nor a triangle count that matches its size)")


def _binary_stl(data: bytes, count: int) -> Parsed:
    from trimesh.exchange.stl import load_stl

    if count == 0:  # trimesh then returns no vertices at all
        raise ShapeError("the binary STL file holds no triangles (its header's triangle count is 0)")
    check_count(3 * count, "vertices")
    claim(count * (9 * 4 + 3 * _INDEX_BYTES), "the STL triangles")  # float32 corners, int64 faces
    mesh = load_stl(io.BytesIO(data))
    vertices, faces = np.asarray(mesh["vertices"]), np.asarray(mesh["faces"])
    if len(faces) != count:
        raise ShapeError(f"malformed STL file: {3 * count:,} vertices read as {len(faces):,} triangles")
    return Parsed(vertices, faces)


def _ascii_stl(data: bytes) -> Parsed:
    """Every ``vertex x y z`` line of every solid, three a triangle, in file order."""
    data, start = text_bytes(data, "STL", strict=False)  # names may be in any encoding
    data = unix_lines(data)
    num_vertices = data.count(b"vertex", start)  # lines of lower-case 'vertex' (and names holding it)
    check_count(num_vertices, "vertices")  # before a single line is split
    # The chunks' vertices, their concatenation and the faces.
    budget = _Reserved((2 * 3 + 1) * _INDEX_BYTES * num_vertices, "the STL vertices and faces")
    parts, count, closed = [], 0, False
    for _, chunk in _chunks(data, start):
        codes = np.frombuffer(b"\n" + chunk + b"\n", np.uint8)
        lines = _lines(codes)
        chosen = _keyword(codes, lines, b"vertex", fold=True)  # (L,)
        count += int(chosen.sum())
        check_count(count, "vertices")
        budget.claim(int(chosen.sum()) * 3 * _INDEX_BYTES, "the STL vertices")
        parts.append(_stl_vertices(_kept(codes, lines, chosen, len(b"vertex")), int(chosen.sum())))
        closed = _stl_closed(chunk, closed)
    if count == 0 or count % 3:
        raise ShapeError(f"ASCII STL: found {count:,} 'vertex' lines; a triangle needs 3 (cut-off file?)")
    if not closed:
        raise ShapeError("truncated ASCII STL file: no 'endsolid' after the last facet")
    vertices = _joined(parts, "the STL vertices", 3, budget)
    budget.claim(count * _INDEX_BYTES, "the STL faces")
    return Parsed(vertices, np.arange(count).reshape(-1, 3))


def _stl_vertices(codes: np.ndarray, num_rows: int) -> np.ndarray:
    """Rows "x y z" -> (n, 3) float64."""
    if num_rows == 0:
        return np.empty((0, 3))
    counts = _word_counts(codes)  # (n,)
    if len(counts) != num_rows or (counts != 3).any():
        raise ShapeError("ASCII STL: a 'vertex' line holds other than the three numbers x y z")
    try:
        return _numbers(codes, np.float64, 3 * num_rows).reshape(num_rows, 3)
    except ValueError as err:
        reason = str(err).split(" at row")[0]
        raise ShapeError(f"ASCII STL: a 'vertex' line holds other than numbers ({reason})") from err


def _stl_closed(chunk: bytes, closed: bool) -> bool:
    """Whether an 'endsolid' follows the last vertex read so far (``closed``: so far, before ``chunk``)."""
    lower = chunk.lower()
    vertex, end = lower.rfind(b"vertex"), lower.rfind(b"endsolid")
    return end > vertex if vertex >= 0 or end >= 0 else closed
