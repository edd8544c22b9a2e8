"""Tables of points: XYZ / TXT text files (numpy ``loadtxt``) and NPY / NPZ arrays (numpy, never unpickled).

A table of C >= 3 columns gives x y z from its first three (CloudCompare writes x y z r g b and scalar
fields, LiDAR exports x y z intensity); a note says how many columns were ignored. Text files may start
with one header row and hold comment lines starting with ``#`` or ``//``. A header that names its columns
must name x, y and z (any case; quotes, ``//`` or ``#`` around a name ignored), and those columns are
used: PDAL writes ``"Red","Green","X","Y","Blue","Z"``, where the first three would be colours. A header
of column numbers only (pandas' ``"0","1","2"``) names nothing and is skipped. An array of named fields
(a numpy structured array, as pyntcloud and PDAL save clouds) gives x y z from its fields x, y and z.

Text is bounded while it is read, not after: the rows are counted on the bytes (``bytes.count``) and refused
past MAX_POINTS, and the table is claimed from the read budget, before numpy parses a line; ``loadtxt``
streams the lines from the bytes, so no Python object is kept per line and the text is not copied (but to
convert UTF-16, or CR line breaks, each copy claimed).
:func:`text_bytes` and :func:`unix_lines` prepare the text of every text format (``meshes`` uses them too).
"""

from __future__ import annotations

import codecs
import io
import math
import re
import tokenize
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .checks import Parsed, ShapeError, check_count, check_size, claim, format_size
from .source import Source

NPZ_POINT_KEYS = ("points", "xyz", "data")  # array names tried in order inside an NPZ
XYZ_COLUMNS = 3
_COMMENTS = ("#", "//")
_DELIMITERS = (",", ";", "\t")  # tried on the first data row, in this order; otherwise any whitespace
_HEADER_SHOWN = 60  # characters of a skipped header row quoted in the note
_NAMES_SHOWN = 5  # field names listed in a message
_NAME_SHOWN = 16  # characters of each
_SPLIT_BYTES_PER_CHAR = 24  # splitting a row into words: a str and a pointer per word (measured: about 20)
_FLOAT_BYTES = 8
_UTF8_SLICE = 1 << 20  # bytes checked for UTF-8 at a time: the text is never decoded whole
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# A line that is neither blank nor a comment: the first data (or header) row. A byte-order mark counts as a
# space (``^`` matches at line starts only, not where a search starts), and is never taken back.
_DATA_ROW = re.compile(rb"^(?:\xef\xbb\xbf)?+[ \t\r\f\v]*(?!#|//)([^\s][^\n]*)", re.MULTILINE)
# Lines that are certainly not data rows, to count rows without splitting lines (each a distinct line).
_NOT_ROWS = (b"\n\n", b"\n\r\n", b"\n#", b"\n//")
Header = tuple[str, list[str]]  # a header row's text as shown in notes, and its column names


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
    """One point per line, columns separated by commas, semicolons or whitespace; x y z are the first three
    columns, or those a header row names (see the module docstring)."""
    data = unix_lines(text_bytes(source.data, "point")[0])  # _DATA_ROW skips a byte-order mark
    layout = _layout(data)
    table = _load_table(data, layout.start, layout.delimiter, layout.columns, layout.picked is not None)
    if layout.picked is not None:
        return Parsed(table[:, layout.picked], None, layout.notes)  # (N, 3)
    points, column_note = xyz_columns(table, "the point list")
    return Parsed(points, None, (*layout.notes, *column_note))


class _Layout(NamedTuple):
    """How a text cloud's rows are read: where the first data row starts, its delimiter and columns, the
    columns of x y z (None: the first three), and the notes about a header row."""

    start: int
    delimiter: str | None
    columns: int
    picked: list[int] | None
    notes: tuple[str, ...]


def _layout(data: bytes) -> _Layout:
    """The layout from the first one or two rows (a header row, then the first data row). Their words are
    dropped on return: a row can hold millions, which should not stay while numpy parses the table."""
    row = _DATA_ROW.search(data)
    if row is None:
        raise ShapeError("the file holds no points (only blank or comment lines)")
    line, delimiter, words = _split_row(row)
    header = None
    if not _is_number_row(words):
        claim(_SPLIT_BYTES_PER_CHAR * len(line), "the header row's names")  # a second list of words
        header = (line.strip()[:_HEADER_SHOWN], [_column_name(word) for word in words])
        row = _DATA_ROW.search(data, row.end())
        if row is None:
            raise ShapeError("the file holds a header row but no points")
        line, delimiter, words = _split_row(row)
    return _Layout(row.start(1), delimiter, len(words), *_header_columns(header, len(words)))


def _split_row(row: re.Match) -> tuple[str, str | None, list[str]]:
    """A row's text, delimiter and words; their memory is claimed first, as one row can hold millions."""
    text = row.group(1)
    claim(_SPLIT_BYTES_PER_CHAR * len(text), f"splitting a row of {format_size(len(text))}")
    line = text.decode()
    delimiter = _delimiter(line)
    return line, delimiter, line.split(delimiter)


def _header_columns(header: Header | None, columns: int) -> tuple[list[int] | None, tuple[str, ...]]:
    """The columns a header row names x y z (None: the first three) and the notes. A header naming none of
    x, y, z (a title, ``lon lat alt``, column numbers) is skipped and the first three columns are used, as
    without one; a ShapeError when it names some of them but not each once, rather than a guess (a wrong
    guess gives a wrong but valid cloud)."""
    if header is None:
        return None, ()
    shown, names = header
    notes = (f"skipped the header row {shown!r}",)
    if not {name.lower() for name in names} & set("xyz"):
        return None, notes
    picked, problem = xyz_positions(names, "column")
    if problem:
        raise ShapeError(
            f"the header row {shown!r} names {problem}; name the columns x, y and z (any case), "
            "or remove the header row to use the first three columns"
        )
    if picked == [0, 1, 2]:
        return None, notes  # what no header gives; xyz_columns notes extra columns
    if len(names) != columns:
        raise ShapeError(
            f"the header row {shown!r} names {len(names)} columns but the rows hold {columns}, "
            "so the columns it names x, y and z cannot be found"
        )
    used = ", ".join(str(i + 1) for i in picked)
    return picked, (*notes, f"used columns {used} of {columns} as x y z, as the header row names them")


def _column_name(word: str) -> str:
    """A header word as a name: the spaces, quotes and comment markers around it dropped, in lower case."""
    name = word.strip().strip("\"'").strip()
    return name.removeprefix("//").removeprefix("#").strip().lower()


def xyz_positions(names: Sequence[str], noun: str) -> tuple[list[int], str]:
    """Where ``names`` (compared in lower case) hold x, y and z, each once; else [] and what is wrong, such
    as "no z column" or "2 x columns" for ``noun`` "column"."""
    lowered = [name.lower() for name in names]
    positions = []
    for axis in "xyz":
        found = [i for i, name in enumerate(lowered) if name == axis]
        if len(found) != 1:
            return [], f"{len(found) or 'no'} {axis} {noun}{'s' * (len(found) > 1)}"
        positions.append(found[0])
    return positions, ""


def shown_names(names: Sequence[str]) -> str:
    """The first few of ``names``, each quoted and cut short, and how many there are in all when more."""
    cut = (name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..." for name in names[:_NAMES_SHOWN])
    listed = ", ".join(map(repr, cut))
    return listed + (f", ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else "")


def _row_bound(data: bytes, start: int) -> int:
    """At least as many lines as ``data[start:]`` has data rows (blank and comment lines left out)."""
    lines = data.count(b"\n", start) + (not data.endswith(b"\n"))
    return lines - sum(data.count(marker, start) for marker in _NOT_ROWS)


def _load_table(data: bytes, start: int, delimiter: str | None, columns: int, picked: bool) -> np.ndarray:
    """(N, C) float64 of the rows from ``start``, counted and claimed before loadtxt streams them from the
    bytes. ``columns`` (the fields of the first row) bounds C: loadtxt refuses a row of any other length.
    ``picked``: x y z will be copied out of the table in another order.
    """
    rows = _row_bound(data, start)
    check_count(rows, "points")  # before a single line is split
    copies = picked or columns > XYZ_COLUMNS
    copy = rows * XYZ_COLUMNS if copies else 0  # the (N, 3) points taken out of the table
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


def _is_number_row(words: list[str]) -> bool:
    for word in words:
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
        claim(info.file_size, f"decompressing {what}")
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
        _check_dtype(dtype, what)
        if len(shape) >= 1:  # a record of named fields is one point; a plain array has a row per point
            check_count(shape[-1] if dtype.names else shape[-2] if len(shape) >= 2 else shape[0], "points")
        claim(math.prod(shape) * dtype.itemsize, f"reading {what}")
    stream.seek(0)
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except _NPY_HEADER_ERRORS[1:] as err:
        raise ShapeError(f"{what} has a damaged NPY header") from err


def _check_dtype(dtype: np.dtype, what: str) -> None:
    """Refuse what cannot hold points: pickled objects, strings, named fields without x, y and z."""
    if dtype.hasobject:
        raise ShapeError(f"{what} holds Python objects (pickled data), which are never loaded for safety")
    if dtype.names:
        _xyz_fields(dtype, what)
    elif dtype.kind not in "fiu":
        raise ShapeError(f"{what} has data type {dtype}; expected floats or integers")


def _xyz_fields(dtype: np.dtype, what: str) -> list[str]:
    """The names of the fields x, y and z (any case) of a structured dtype, each one number per point.

    A refusal lists a few field names, not the dtype (330 characters for PDAL's point records).
    """
    names = list(dtype.names)
    picked, problem = xyz_positions(names, "field")
    if problem:
        raise ShapeError(
            f"{what} has named fields ({shown_names(names)}) but {problem}; "
            "expected fields x, y and z (any case), or an (N, 3) array of numbers"
        )
    for name in (names[i] for i in picked):
        field = dtype.fields[name][0]
        if field.kind not in "fiu" or field.shape:
            raise ShapeError(f"{what} has a field {name!r} of type {field}; expected one number per point")
    return [names[i] for i in picked]


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
    """(N, C), or (1, N, C), or (N,) named fields -> (N, 3); a batch of several shapes is refused."""
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    elif array.ndim == 3:
        raise ShapeError(
            f"{what} holds a batch of {array.shape[0]:,} shapes {tuple(array.shape)}; "
            "save one shape as (N, 3)"
        )
    if array.dtype.names:
        return _field_points(array, what)
    if array.dtype.kind not in "fiu":
        raise ShapeError(f"{what} has data type {array.dtype}; expected floats or integers")
    points, note = xyz_columns(array, what)
    return Parsed(points, None, note)


def _field_points(array: np.ndarray, what: str) -> Parsed:
    """(N,) or (1, N) array of named fields -> (N, 3) float64 from its fields x, y and z."""
    names = _xyz_fields(array.dtype, what)  # checked again: NPY headers of version 3 are not read ahead
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise ShapeError(f"{what} holds named fields in shape {array.shape}; expected one record per point")
    check_count(len(array), "points")
    claim(len(array) * XYZ_COLUMNS * _FLOAT_BYTES, "the x y z fields")
    points = np.empty((len(array), XYZ_COLUMNS))  # (N, 3)
    for column, name in enumerate(names):
        points[:, column] = array[name]
    others = len(array.dtype.names) - XYZ_COLUMNS
    note = f"used the fields {', '.join(names)} as x y z and ignored {others} other field(s)"
    return Parsed(points, None, (note,) if others else ())
