"""Tables of points as real tools write them (i2pmae.io.tables, i2pmae.io.pcd): text headers that name their
columns in any order (PDAL), PCD fields in upper case (PDAL), NPY / NPZ arrays of named fields (pyntcloud,
PDAL). Each file is built small in tmp_path; the points read must equal the array written, exactly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from i2pmae.io import ShapeError, read_shape


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def cloud(num_points: int = 40, seed: int = 0) -> np.ndarray:
    """(N, 3) float64 points whose repr() reads back exactly."""
    return np.random.default_rng(seed).normal(size=(num_points, 3)) * 100


def text_table(header: str, columns: list[np.ndarray], delimiter: str = ",") -> str:
    """A header line and one row per point of the (N,) ``columns``, values written exactly (repr)."""
    rows = zip(*(column.tolist() for column in columns), strict=True)
    return header + "\n" + "".join(delimiter.join(map(repr, row)) + "\n" for row in rows)


def refusal(path: Path, max_gib: float = 1.0) -> str:
    with pytest.raises(ShapeError) as caught:
        read_shape(path, max_gib=max_gib)
    message = str(caught.value)
    assert message.startswith(path.name + ": ") and "\n" not in message
    return message


# ----------------------------------------------------------------------------------------------------------
# Text clouds: the header row names the columns
# ----------------------------------------------------------------------------------------------------------


def test_pdal_header_picks_the_named_columns(tmp_path):
    """PDAL's autzen-point-format-3.txt: colours first; taking the first three columns gave x = y = 0."""
    points = cloud()
    colour = np.zeros(len(points))
    columns = [colour, colour, points[:, 0], points[:, 1], colour + 255, points[:, 2]]
    path = write(tmp_path / "a.txt", text_table('"Red","Green","X","Y","Blue","Z"', columns))
    shape = read_shape(path)
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == (
        'skipped the header row \'"Red","Green","X","Y","Blue","Z"\'',
        "used columns 3, 4, 6 of 6 as x y z, as the header row names them",
    )


@pytest.mark.parametrize(
    ("header", "order", "delimiter"),
    [
        ("Z Y X", [2, 1, 0], " "),  # three columns, reversed: a copy in the named order
        ("id\tx\ty\tz", [1, 2, 3], "\t"),
        ("'I';'X';'Y';'Z'", [1, 2, 3], ";"),
        (' "x" , "Y" , "z" , intensity', [0, 1, 2], ","),  # spaces around quoted names
        ("intensity, X_ignored, x, y, z", [2, 3, 4], ","),  # only the exact names x y z count
    ],
)
def test_header_names_in_any_order_case_and_quoting(tmp_path, header, order, delimiter):
    points = cloud(seed=1)
    width = len(header.split(delimiter))
    columns = [np.full(len(points), 7.0)] * width
    for axis, column in enumerate(order):
        columns = [*columns[:column], points[:, axis], *columns[column + 1 :]]
    shape = read_shape(write(tmp_path / "a.xyz", text_table(header, columns, delimiter)))
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes[0].startswith("skipped the header row")


def test_header_and_rows_may_use_different_delimiters(tmp_path):
    """PDAL's quoted2.txt: a comma-separated header over space-separated rows."""
    points = cloud(seed=2)
    text = text_table('"Y","X","Z"', [points[:, 1], points[:, 0], points[:, 2]], " ")
    np.testing.assert_array_equal(read_shape(write(tmp_path / "a.txt", text)).points, points)


def test_header_naming_x_y_z_first_keeps_the_old_notes(tmp_path):
    """x y z first: the columns no header would give; a header shorter than the rows is then fine too."""
    points = cloud(seed=3)
    extra = [np.arange(len(points), dtype=float)] * 3
    shape = read_shape(write(tmp_path / "a.xyz", text_table("X Y Z", [*points.T, *extra], " ")))
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == ("skipped the header row 'X Y Z'", "used the first 3 of 6 columns as x y z")


def test_no_header_still_takes_the_first_three_columns(tmp_path):
    points = cloud(seed=4)
    text = text_table("# x y z r g b", [*points.T, *([np.ones(len(points))] * 3)], " ")
    shape = read_shape(write(tmp_path / "a.xyz", text))
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == ("used the first 3 of 6 columns as x y z",)


def test_a_header_of_column_numbers_names_nothing(tmp_path):
    """pandas writes its default column labels as "0","1","2": no names, so the first three columns."""
    points = cloud(seed=5)
    text = text_table('"0","1","2","3"', [*points.T, np.zeros(len(points))])
    shape = read_shape(write(tmp_path / "a.txt", text))
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == (
        'skipped the header row \'"0","1","2","3"\'',
        "used the first 3 of 4 columns as x y z",
    )


@pytest.mark.parametrize(
    ("header", "width", "message"),
    [
        ("X,Y,X", 3, r"the header row 'X,Y,X' names 2 x columns; name the"),  # PDAL's badheader.txt
        ("lon,lat,X,Y", 4, r"names no z column"),
        ("id,Y,X,Z", 3, r"the header row 'id,Y,X,Z' names 4 columns but the rows hold 3"),
    ],
)
def test_a_header_that_names_columns_but_not_x_y_z_is_refused(tmp_path, header, width, message):
    text = text_table(header, list(cloud(seed=6)[:, [0, 1, 2, 0][:width]].T))
    assert re.search(message, refusal(write(tmp_path / "a.txt", text)))


@pytest.mark.parametrize("header", ["lon lat alt", "Point cloud exported by a scanner", '"Red","Green"'])
def test_a_header_naming_none_of_x_y_z_is_skipped_and_the_first_three_columns_used(tmp_path, header):
    points = cloud(seed=7)
    shape = read_shape(write(tmp_path / "a.txt", text_table(header, list(points.T))))
    np.testing.assert_array_equal(shape.points, points.astype(shape.points.dtype))
    assert any(note.startswith("skipped the header row") for note in shape.notes)


def test_a_huge_first_row_is_claimed_before_it_is_split(tmp_path):
    """One row of 2 MiB would split into 700,000 strings (about 20 bytes a character): refused unsplit."""
    text = "ab " * 700_000 + "\n" + "1 2 3\n" * 20
    message = refusal(write(tmp_path / "a.xyz", text), max_gib=0.01)
    assert "splitting a row of 2.0 MiB would take" in message and "memory limit of 0.01 GiB" in message


# ----------------------------------------------------------------------------------------------------------
# PCD: x y z fields in any case
# ----------------------------------------------------------------------------------------------------------


def pcd_header(num_points: int, data: str, fields: str, sizes: str, types: str) -> str:
    return (
        f"VERSION 0.7\nFIELDS {fields}\nSIZE {sizes}\nTYPE {types}\n"
        f"COUNT {' '.join(['1'] * len(fields.split()))}\n"
        f"WIDTH {num_points}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {num_points}\nDATA {data}\n"
    )


def test_pcd_with_upper_case_fields_ascii(tmp_path):
    """PDAL writes FIELDS X Y Z (utm17_space.pcd)."""
    points = cloud(seed=7)
    body = "".join(" ".join(map(repr, row)) + " 5\n" for row in points.tolist())
    header = pcd_header(len(points), "ascii", "X Y Z Intensity", "8 8 8 2", "F F F U")
    np.testing.assert_array_equal(read_shape(write(tmp_path / "a.pcd", header + body)).points, points)


def test_pcd_ascii_separated_by_commas(tmp_path):
    """PDAL's utm17_comma.pcd: the same header, rows like ``289814.15,4320978.61,170.76``."""
    points = cloud(seed=9)
    body = "".join(",".join(map(repr, row)) + ", 5\n" for row in points.tolist())
    header = pcd_header(len(points), "ascii", "X Y Z Intensity", "8 8 8 2", "F F F U")
    np.testing.assert_array_equal(read_shape(write(tmp_path / "a.pcd", header + body)).points, points)
    short = pcd_header(2, "ascii", "x y z", "4 4 4", "F F F") + "1,2,3\n4,5\n"
    assert "a row has the wrong length" in refusal(write(tmp_path / "b.pcd", short))
    wide = pcd_header(1, "ascii", "x y z", "4 4 4", "F F F") + "1,2,3,4\n"
    assert "rows hold 4 values; the header's fields need 3" in refusal(write(tmp_path / "c.pcd", wide))


def test_pcd_with_upper_case_fields_binary_in_any_order(tmp_path):
    """PDAL's autzen-utm.pcd: binary, float64 X Y Z among 16 fields (here fewer, and shuffled)."""
    points = cloud(seed=8)
    record = np.zeros(
        len(points), dtype=[("i", "<u2"), ("Z", "<f8"), ("X", "<f8"), ("g", "<f8"), ("Y", "<f8")]
    )
    record["X"], record["Y"], record["Z"] = points.T
    header = pcd_header(len(points), "binary", "Intensity Z X GpsTime Y", "2 8 8 8 8", "U F F F F")
    shape = read_shape(write(tmp_path / "a.pcd", header.encode() + record.tobytes()))
    np.testing.assert_array_equal(shape.points, points)


def test_pcd_with_two_x_fields_or_none_is_refused_briefly(tmp_path):
    both = pcd_header(2, "ascii", "x X y z", "4 4 4 4", "F F F F") + "1 2 3 4\n5 6 7 8\n"
    assert "no x, y and z fields (2 x fields;" in refusal(write(tmp_path / "a.pcd", both))
    names = " ".join(f"field_{i}" for i in range(16))
    many = pcd_header(1, "ascii", names, " ".join(["4"] * 16), " ".join(["F"] * 16)) + "1 " * 16 + "\n"
    message = refusal(write(tmp_path / "b.pcd", many))
    assert "no x field" in message and "'field_4', ... (16 in all)" in message and "field_5" not in message


# ----------------------------------------------------------------------------------------------------------
# NPY / NPZ: arrays of named fields
# ----------------------------------------------------------------------------------------------------------


def records(points: np.ndarray, fields: list[tuple[str, str]]) -> np.ndarray:
    """(N,) structured array of ``fields``; x y z (any case) hold ``points``, the others their row number."""
    array = np.zeros(len(points), dtype=fields)
    for name, _ in fields:
        axis = "xyz".find(name.lower())
        array[name] = points[:, axis] if axis >= 0 else np.arange(len(points))
    return array


def test_npy_of_named_fields_gives_x_y_z(tmp_path):
    """pyntcloud's clouds: x y z float32 among normals and colours."""
    points = cloud(seed=9).astype(np.float32)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")]
    np.save(tmp_path / "a.npy", records(points, fields))
    shape = read_shape(tmp_path / "a.npy")
    np.testing.assert_array_equal(shape.points, points.astype(np.float64))
    assert shape.notes == ("used the fields x, y, z as x y z and ignored 1 other field(s)",)


def test_npy_of_upper_case_integer_fields_in_any_order(tmp_path):
    """PDAL's 1.2-with-color.npy: int32 X Y Z among 13 fields; here shuffled, big-endian, and (1, N)."""
    points = np.round(cloud(seed=10) * 1000)
    fields = [("gps_time", "<f8"), ("Z", ">i4"), ("red", "<u2"), ("X", ">i4"), ("Y", "<i4")]
    np.save(tmp_path / "a.npy", records(points, fields)[None])
    shape = read_shape(tmp_path / "a.npy")
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == ("used the fields X, Y, Z as x y z and ignored 2 other field(s)",)


def test_npz_of_named_fields_without_other_fields_needs_no_note(tmp_path):
    """pyntcloud's plane.npz: the points under "points", beside the mesh's faces."""
    points = cloud(seed=11)
    faces = np.zeros(2, dtype=[("v1", "<i4"), ("v2", "<i4"), ("v3", "<i4")])
    np.savez(
        tmp_path / "a.npz", points=records(points, [("z", "<f8"), ("y", "<f8"), ("x", "<f8")]), mesh=faces
    )
    shape = read_shape(tmp_path / "a.npz")
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == ()


def test_named_fields_without_x_y_z_are_refused_with_a_short_message(tmp_path):
    """The message names a few fields, not numpy's description of the dtype (330 characters for PDAL's)."""
    fields = [(f"a_rather_long_field_name_{i}", "<f8") for i in range(12)]
    np.save(tmp_path / "a.npy", np.zeros(20, dtype=fields))
    message = refusal(tmp_path / "a.npy")
    assert "has named fields ('a_rather_long_fi...', 'a_rather" in message and "(12 in all)" in message
    assert message.count("a_rather") == 5 and "but no x field" in message and len(message) < 260


@pytest.mark.parametrize(
    ("fields", "shape", "message"),
    [
        ([("x", "<f4"), ("y", "<f4"), ("Y", "<f4"), ("z", "<f4")], (20,), "but 2 y fields"),
        (
            [("x", "<f4", (2,)), ("y", "<f4"), ("z", "<f4")],
            (20,),
            re.escape("a field 'x' of type ('<f4', (2,))"),
        ),
        ([("x", "<U3"), ("y", "<f4"), ("z", "<f4")], (20,), "a field 'x' of type <U3"),
        ([("x", "<f4"), ("y", "<f4"), ("z", "<f4")], (2, 20), r"named fields in shape \(2, 20\)"),
    ],
)
def test_named_fields_that_are_not_points_are_refused(tmp_path, fields, shape, message):
    np.save(tmp_path / "a.npy", np.zeros(shape, dtype=fields))
    assert re.search(message, refusal(tmp_path / "a.npy"))


def test_array_memory_is_claimed_before_it_is_read(tmp_path):
    """The array numpy builds from the file (3 MiB of records here) is claimed from the header."""
    np.save(
        tmp_path / "a.npy", np.zeros(100_000, dtype=[("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("t", "<f8")])
    )
    assert "reading the array would take 3.1 MiB" in refusal(tmp_path / "a.npy", max_gib=0.004)
