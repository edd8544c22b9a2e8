"""Tables of points: XYZ / TXT text files (numpy ``loadtxt``) and NPY / NPZ arrays (numpy, never unpickled).

A table of C >= 3 columns gives x y z from its first three (CloudCompare writes x y z r g b and scalar
fields, LiDAR exports x y z intensity); a note says how many columns were ignored. Text files may start
with one header row (``x y z``, ``X,Y,Z,R,G,B``) and hold comment lines starting with ``#`` or ``//``.

Text is bounded while it is read, not after: the rows are counted on the bytes (``bytes.count``) and refused
past MAX_POINTS, and the table is claimed from the read budget, before numpy parses a line; ``loadtxt``
streams the lines from the bytes, so no Python object is kept per line and the text is not copied (but to
convert UTF-16, or CR line breaks, each copy claimed).
:func:`text_bytes` and :func:`unix_lines` prepare the text of every text format (``meshes`` uses them too).
"""

from __future__ import annotations

import codecs
import io
import re
import tokenize
import zipfile

import numpy as np

from .checks import Parsed, ShapeError, check_count, check_size, claim
from .source import Source

NPZ_POINT_KEYS = ("points", "xyz", "data")  # array names tried in order inside an NPZ
XYZ_COLUMNS = 3
_COMMENTS = ("#", "//")
_DELIMITERS = (",", ";", "\t")  # tried on the first data row, in this order; otherwise any whitespace
_HEADER_SHOWN = 60  # characters of a skipped header row quoted in the note
_FLOAT_BYTES = 8
_UTF8_SLICE = 1 << 20  # bytes checked for UTF-8 at a time: the text is never decoded whole
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# A line that is neither blank nor a comment: the first data (or header) row. A byte-order mark counts as a
# space (``^`` matches at line starts only, not where a search starts), and is never taken back.
_DATA_ROW = re.compile(rb"^(?:\xef\xbb\xbf)?+[ \t\r\f\v]*(?!#|//)([^\s][^\n]*)", re.MULTILINE)
# Lines that are certainly not data rows, to count rows without splitting lines (each a distinct line).
_NOT_ROWS = (b"\n\n", b"\n\r\n", b"\n#", b"\n//")


# ----------------------------------------------------------------------------------------------------------
# Text, for every text format
# ----------------------------------------------------------------------------------------------------------


def text_bytes(data: bytes, kind: str, strict: bool = True) -> tuple[bytes, int]:
    """UTF-8 bytes of a text file and the offset of its first character (after a byte-order mark).

    UTF-16 (with its byte-order mark, as Windows tools write it) is converted to UTF-8, the copy claimed
    from the read budget (the file's own bytes were claimed when it was read). With ``strict``, bytes that
    are not UTF-8 are refused, checked a slice at a time (decoding 256 MiB at once would take up to 1 GiB);
    without, the reader decides where they may be.
    """
    if data.startswith(_UTF16_BOMS):
        claim(2 * len(data), "the text converted from UTF-16")  # the decoded str, then its UTF-8 bytes
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as err:
            raise ShapeError(f"not a text {kind} file (undecodable bytes at offset {err.start})") from err
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if strict and not data.isascii():
        _check_utf8(data, start, kind)
    return data, start


def _check_utf8(data: bytes, start: int, kind: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for offset in range(start, len(data), _UTF8_SLICE):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous slice
        try:
            decoder.decode(view[offset : offset + _UTF8_SLICE], final=offset + _UTF8_SLICE >= len(data))
        except UnicodeDecodeError as err:
            at = offset - pending + err.start
            raise ShapeError(f"not a text {kind} file (undecodable bytes at offset {at})") from err


def unix_lines(data: bytes) -> bytes:
    """``data`` with old-Mac line breaks (a CR alone) made LF: numpy and the line regexes split at LF."""
    returns = data.count(b"\r")
    if not returns or returns == data.count(b"\r\n"):
        return data
    claim(2 * len(data), "the text with its line breaks converted")  # two copies, one at a time
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


# ----------------------------------------------------------------------------------------------------------
# XYZ / TXT
# ----------------------------------------------------------------------------------------------------------


def read_text_cloud(source: Source) -> Parsed:
    """One point per line, columns separated by commas, semicolons or whitespace."""
    data = unix_lines(text_bytes(source.data, "point")[0])  # _DATA_ROW skips a byte-order mark
    first = _DATA_ROW.search(data)
    if first is None:
        raise ShapeError("the file holds no points (only blank or comment lines)")
    notes = []
    line = first.group(1).decode()
    delimiter = _delimiter(line)
    if not _is_number_row(line, delimiter):
        notes.append(f"skipped the header row {line.strip()[:_HEADER_SHOWN]!r}")
        first = _DATA_ROW.search(data, first.end())
        if first is None:
            raise ShapeError("the file holds a header row but no points")
        line = first.group(1).decode()
        delimiter = _delimiter(line)
    table = _load_table(data, first.start(1), delimiter, len(line.split(delimiter)))
    points, column_note = xyz_columns(table, "the point list")
    return Parsed(points, None, (*notes, *column_note))


def _row_bound(data: bytes, start: int) -> int:
    """At least as many lines as ``data[start:]`` has data rows (blank and comment lines left out)."""
    lines = data.count(b"\n", start) + (not data.endswith(b"\n"))
    return lines - sum(data.count(marker, start) for marker in _NOT_ROWS)


def _load_table(data: bytes, start: int, delimiter: str | None, columns: int) -> np.ndarray:
    """(N, C) float64 of the rows from ``start``, counted and claimed before loadtxt streams them from the
    bytes. ``columns`` (the fields of the first row) bounds C: loadtxt refuses a row of any other length.
    """
    rows = _row_bound(data, start)
    check_count(rows, "points")  # before a single line is split
    copy = rows * XYZ_COLUMNS if columns > XYZ_COLUMNS else 0  # the (N, 3) points taken out of a wider table
    claim((rows * columns + copy) * _FLOAT_BYTES, f"a table of {rows:,} rows and {columns} columns")
    stream = io.BytesIO(data)  # shares the bytes: no copy
    stream.seek(start)
    comments = _COMMENTS if b"//" in data else _COMMENTS[0]  # one marker parses a third faster
    try:
        return np.loadtxt(
            stream, delimiter=delimiter, comments=comments, ndmin=2, dtype=np.float64, encoding="utf-8"
        )
    except ValueError as err:
        reason = str(err).split(";")[0]  # drop numpy's advice about its own arguments
        raise ShapeError(f"malformed point list ({reason})") from err


def _delimiter(line: str) -> str | None:
    return next((d for d in _DELIMITERS if d in line), None)


def _is_number_row(line: str, delimiter: str | None) -> bool:
    for word in line.split(delimiter):
        try:
            float(word)
        except ValueError:
            return False
    return True


def xyz_columns(table: np.ndarray, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, C) with C >= 3 -> (N, 3), the first three columns, and a note when columns were ignored."""
    if table.ndim != 2 or table.shape[1] < XYZ_COLUMNS:
        raise ShapeError(
            f"{what} has shape {tuple(table.shape)}; expected (N, 3) for x y z, "
            "or more columns with x y z first"
        )
    check_count(len(table), "points")
    columns = table.shape[1]
    note = (f"used the first 3 of {columns} columns as x y z",) if columns > XYZ_COLUMNS else ()
    return table[:, :XYZ_COLUMNS], note  # (N, 3)


def read_npy(source: Source) -> Parsed:
    data = source.data
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise ShapeError("this is an NPZ (zip) archive, not an NPY file; give it the extension .npz")
    if not data.startswith(b"\x93NUMPY"):
        raise ShapeError("not an NPY file (no NPY header); expected a single array saved with numpy.save")
    return _array_points(_load_npy(io.BytesIO(data), "the array"), "the array")


def read_npz(source: Source) -> Parsed:
    stream = io.BytesIO(source.data)
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
        info, what = members[key], f"array {key!r}"
        check_size(info.file_size, what, "uncompressed")
        return _array_points(_load_npy(io.BytesIO(archive.read(info)), what), what)


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
            check_count(shape[-2] if len(shape) >= 2 else shape[0], "points")
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


def _array_points(array: np.ndarray, what: str) -> Parsed:
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
    points, note = xyz_columns(array, what)
    return Parsed(points, None, note)
