"""PCD (the Point Cloud Library's format): our header parser, numpy for the data, python-lzf for LZF.

No PCD reader is strict enough to use as is (measured on the cases of tests/test_io.py): open3d returns an
empty cloud with a printed warning for every bad file, and reads 3 points where an ASCII file holds 1;
pypcd4 reads 50 points of a binary file whose header promises 100, accepts a file without x y z fields,
stops reading a header after 10 lines and splits ASCII rows on single spaces only. Reading the header
ourselves lets each of those become a ShapeError that says what the header promised; the data is then
one numpy call (ASCII ``loadtxt``, binary ``frombuffer``), or an LZF decompression and a ``frombuffer`` per
field. Each array is claimed from the read's budget before it is built: the LZF header's uncompressed size
(23 MB of LZF can announce 2 GB), and the ASCII table bounded by the data's lines.

The x, y and z fields are found in any case: PCL writes ``FIELDS x y z``, PDAL ``FIELDS X Y Z``.

Organised clouds (HEIGHT > 1, from depth cameras) mark pixels without a depth with NaN; those points are
dropped by the common checks, with a note.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

import numpy as np

from .checks import Parsed, ShapeError, check_count, claim
from .source import Source, header_lines
from .tables import shown_names, xyz_positions

_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_DTYPES = ("f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")
_SIZES = struct.Struct("<II")  # compressed size, uncompressed size
_POINT_BYTES = 2 * 3 * 8  # per point: the (N, 3) x y z columns, then their float64 copy for the checks
_ROW_PROBE = 4096  # bytes of the first data row looked at before parsing
# The first line that is neither blank nor a comment, up to _ROW_PROBE bytes of it.
_FIRST_ROW = re.compile(rb"^[ \t\r]*([^#\s][^\n]{0,%d})" % (_ROW_PROBE - 1), re.MULTILINE)


@dataclass
class _Header:
    fields: list[str]
    dtypes: list[str]  # numpy type code per field
    counts: list[int]  # values per field
    points: int
    data: str  # ascii | binary | binary_compressed
    axes: list[int]  # the fields x, y and z, by index

    def layout(self) -> list[tuple[str, int]]:
        """(numpy type code, values per point) of each field."""
        return list(zip(self.dtypes, self.counts, strict=True))

    def column(self, field: int) -> int:
        """Index of the first value of field number ``field`` in a row of all values."""
        return sum(self.counts[:field])


def read_pcd(source: Source) -> Parsed:
    lines, offset = header_lines(source.data, lambda line: line.startswith("DATA"), "PCD")
    header = _parse_header(lines)
    check_count(header.points, "points")
    readers = {"ascii": _ascii, "binary": _binary, "binary_compressed": _compressed}
    if header.data not in readers:
        raise ShapeError(f"unknown PCD data encoding {header.data!r}; expected one of {', '.join(readers)}")
    return Parsed(readers[header.data](source.data, offset, header))


def _parse_header(lines: list[str]) -> _Header:
    entries = {}
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] not in _KEYS:
            raise ShapeError(f"not a PCD file (unexpected header line {line[:80]!r})")
        entries[words[0]] = words[1:]
    fields = entries.get("FIELDS", [])
    axes, problem = xyz_positions(fields, "field")
    if problem:
        raise ShapeError(f"the PCD file has no x, y and z fields ({problem}; FIELDS {shown_names(fields)})")
    sizes, types = entries.get("SIZE", []), entries.get("TYPE", [])
    counts = [int(c) for c in entries.get("COUNT", ["1"] * len(fields))]
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise ShapeError("the PCD header's FIELDS, SIZE, TYPE and COUNT lines have different lengths")
    dtypes = [_dtype(kind, size) for kind, size in zip(types, sizes, strict=True)]
    width, height = int(entries.get("WIDTH", ["0"])[0]), int(entries.get("HEIGHT", ["1"])[0])
    points = int(entries.get("POINTS", [str(width * height)])[0])
    return _Header(fields, dtypes, counts, points, entries["DATA"][0] if entries.get("DATA") else "", axes)


def _dtype(kind: str, size: str) -> str:
    code = {"F": "f", "I": "i", "U": "u"}.get(kind, "?") + size
    if code not in _DTYPES:
        raise ShapeError(f"unsupported PCD field type {kind} of size {size}")
    return "<" + code


def _ascii(data: bytes, offset: int, header: _Header) -> np.ndarray:
    width = sum(header.counts)
    row, whole = _first_row(data, offset)
    delimiter = "," if b"," in row else None  # PDAL writes commas; PCL splits on white space alone
    found = len(row.split(b",") if delimiter else row.split()) if whole else None
    if found is not None and found != width:
        raise ShapeError(f"PCD data rows hold {found} values; the header's fields need {width}")
    # loadtxt's table is (rows, first row's width) float64, or it fails; rows are at most the lines, values
    # at most every other byte.
    lines = data.count(b"\n", offset) + 1
    values = lines * width if found is not None else (len(data) - offset) // 2 + 1
    claim(values * 8 + lines * _POINT_BYTES, "the PCD table")
    stream = io.BytesIO(data)  # shares ``data``: loadtxt decodes it piece by piece, never all of it at once
    stream.seek(offset)
    try:
        table = np.loadtxt(  # (N, width)
            stream, dtype=np.float64, ndmin=2, encoding="utf-8", delimiter=delimiter
        )
    except UnicodeDecodeError as err:
        raise ShapeError(f"not a text PCD file (undecodable bytes: {err.reason})") from err
    except ValueError as err:
        raise ShapeError(f"PCD data: a value is not a number or a row has the wrong length ({err})") from err
    if len(table) != header.points:
        raise ShapeError(
            f"the PCD header promises {header.points:,} points but the data holds {len(table):,} rows"
        )
    if table.size and table.shape[1] != width:
        raise ShapeError(f"PCD data rows hold {table.shape[1]} values; the header's fields need {width}")
    return table[:, [header.column(i) for i in header.axes]] if table.size else np.empty((0, 3))  # (N, 3)


def _first_row(data: bytes, offset: int) -> tuple[bytes, bool]:
    """The first data row without its comment (b"" when there is none), and whether the probe holds all of it:
    a longer row is not counted."""
    first = _FIRST_ROW.search(data, offset)
    if first is None:
        return b"", False
    whole = first.end(1) == len(data) or data[first.end(1)] == ord("\n")
    return first[1].split(b"#")[0], whole


def _binary(data: bytes, offset: int, header: _Header) -> np.ndarray:
    """Row-major records: all fields of point 0, then of point 1, ..."""
    row = np.dtype([(f"f{i}", dt, (c,)) for i, (dt, c) in enumerate(header.layout())])
    body = memoryview(data)[offset:]
    if header.points * row.itemsize > len(body):
        raise ShapeError(
            f"truncated binary PCD file: the header promises {header.points:,} points "
            f"({header.points * row.itemsize:,} bytes) but only {len(body):,} bytes follow"
        )
    table = np.frombuffer(body, row, header.points)  # (N,) structured, a view of ``data``
    claim(header.points * _POINT_BYTES, "the PCD points")
    return np.stack([table[f"f{axis}"][:, 0] for axis in header.axes], axis=1)  # (N, 3)


def _compressed(data: bytes, offset: int, header: _Header) -> np.ndarray:
    """LZF-compressed, column-major: all values of field 0, then of field 1, ..."""
    body = memoryview(data)[offset:]
    if len(body) < _SIZES.size:
        raise ShapeError("truncated compressed PCD file (no size fields after the header)")
    compressed_size, raw_size = _SIZES.unpack_from(body)
    sizes = [np.dtype(dt).itemsize * c * header.points for dt, c in header.layout()]
    if raw_size != sum(sizes) or _SIZES.size + compressed_size > len(body):
        raise ShapeError(
            f"corrupt or truncated compressed PCD file: {header.points:,} points need {sum(sizes):,} bytes, "
            f"the file announces {raw_size:,} bytes from {compressed_size:,} compressed bytes "
            f"and holds {len(body) - _SIZES.size:,}"
        )
    # python-lzf takes bytes (a copy of the stream) and allocates the whole output at once.
    claim(compressed_size + raw_size, "decompressing the PCD data")
    claim(header.points * _POINT_BYTES, "the PCD points")
    raw = _lzf_decompress(body[_SIZES.size : _SIZES.size + compressed_size], raw_size)
    starts = np.concatenate([[0], np.cumsum(sizes)])  # (fields + 1,)
    columns = []
    for i in header.axes:
        column = np.frombuffer(raw, header.dtypes[i], header.points * header.counts[i], int(starts[i]))
        columns.append(column.reshape(header.points, header.counts[i])[:, 0])  # (N,)
    return np.stack(columns, axis=1)  # (N, 3)


def _lzf_decompress(stream: memoryview | bytes, size: int) -> bytes:
    """Decompress an LZF stream (liblzf format, as PCL writes it) into exactly ``size`` bytes."""
    import lzf

    if size == 0:
        return b""
    try:
        raw = lzf.decompress(bytes(stream), size)
    except ValueError as err:  # python-lzf: "error in compressed data"
        raise ShapeError(f"corrupt compressed PCD data ({err})") from err
    if raw is None or len(raw) != size:  # None: the data decompresses to more than ``size`` bytes
        found = "more" if raw is None else f"{len(raw):,}"
        raise ShapeError(f"corrupt compressed PCD data (decompressed {found} bytes, expected {size:,})")
    return raw
