"""Tables of points: XYZ / TXT text files (numpy ``loadtxt``) and NPY / NPZ arrays (numpy, never unpickled).

A table of C >= 3 columns gives x y z from its first three (CloudCompare writes x y z r g b and scalar
fields, LiDAR exports x y z intensity); a note says how many columns were ignored. Text files may start
with one header row (``x y z``, ``X,Y,Z,R,G,B``) and hold comment lines starting with ``#`` or ``//``.
"""

from __future__ import annotations

import io
import tokenize
import zipfile

import numpy as np

from .checks import Parsed, ShapeError, check_count, check_size
from .source import Source, decode_text

NPZ_POINT_KEYS = ("points", "xyz", "data")  # array names tried in order inside an NPZ
XYZ_COLUMNS = 3
_COMMENTS = ("#", "//")
_DELIMITERS = (",", ";", "\t")  # tried on the first data row, in this order; otherwise any whitespace
_HEADER_SHOWN = 60  # characters of a skipped header row quoted in the note


def read_text_cloud(source: Source) -> Parsed:
    """One point per line, columns separated by commas, semicolons or whitespace."""
    text = decode_text(source.data, "point")
    lines = text.splitlines()
    data_rows = (
        i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith(_COMMENTS)
    )
    first = next(data_rows, None)
    if first is None:
        raise ShapeError("the file holds no points (only blank or comment lines)")
    notes = []
    delimiter = _delimiter(lines[first])
    if not _is_number_row(lines[first], delimiter):
        notes.append(f"skipped the header row {lines[first].strip()[:_HEADER_SHOWN]!r}")
        first = next(data_rows, None)
        if first is None:
            raise ShapeError("the file holds a header row but no points")
        delimiter = _delimiter(lines[first])
    try:
        comments = _COMMENTS if _COMMENTS[1] in text else _COMMENTS[0]  # one marker parses a third faster
        table = np.loadtxt(lines[first:], delimiter=delimiter, comments=comments, ndmin=2, dtype=np.float64)
    except ValueError as err:
        reason = str(err).split(";")[0]  # drop numpy's advice about its own arguments
        raise ShapeError(f"malformed point list ({reason})") from err
    points, column_note = xyz_columns(table, "the point list")
    return Parsed(points, None, (*notes, *column_note))


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
