"""PLY files that imply far more than they hold: refused before the allocation, within the memory limit;
variable-length lists read fast and exactly as plyfile reads them; CRLF headers."""

import gzip

import numpy as np
import plyfile
import pytest
from helpers import read_in_child
from hostile_ply import (
    build_ascii_faces_gz,
    build_ascii_variable_lists,
    build_crlf_binary,
    build_huge_polygon,
    build_variable_lists,
)

from i2pmae.io import ShapeError, read_shape
from i2pmae.io.checks import MAX_FACES
from i2pmae.io.polygons import MAX_POLYGON_VERTICES, triangulate

GIB = 2**30
SLACK = 150 * 2**20  # the interpreter's own churn while reading (buffers, imports of trimesh / plyfile)


def plyfile_triangles(path) -> np.ndarray:
    """The reference: plyfile's row-by-row reader (no list lengths given), each polygon triangulated."""
    data = plyfile.PlyData.read(str(path))
    vertex = data["vertex"]
    points = np.stack([vertex[axis] for axis in "xyz"], axis=1).astype(np.float64)
    faces = data["face"]["vertex_indices"]
    return np.concatenate([triangulate(points, [np.asarray(face, np.int64)]) for face in faces])


def as_set(triangles: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(row) for row in triangles.tolist()}


def test_more_faces_than_max_faces_are_refused_before_reading(tmp_path):
    path = build_ascii_faces_gz(tmp_path, faces=MAX_FACES + 1)
    result = read_in_child(path, max_gib=4.0)
    assert "10,000,001 face rows, over the limit of 10,000,000 (MAX_FACES)" in result["outcome"]


def test_ascii_faces_beyond_the_memory_limit_are_refused_within_it(tmp_path):
    path = build_ascii_faces_gz(tmp_path, faces=8_000_000)  # 64 MB of text, 8 M x 4 values of float64
    result = read_in_child(path, max_gib=0.25)
    assert "memory limit of 0.25 GiB" in result["outcome"]
    assert result["growth"] < 0.25 * GIB + SLACK


def test_one_polygon_of_millions_of_indices_is_refused_before_any_copy(tmp_path):
    path = build_huge_polygon(tmp_path, indices=MAX_POLYGON_VERTICES + 1)
    result = read_in_child(path, max_gib=0.25)
    assert f"a face has {MAX_POLYGON_VERTICES + 1:,} vertex indices" in result["outcome"]
    assert "MAX_POLYGON_VERTICES" in result["outcome"]
    assert result["growth"] < 0.25 * GIB + SLACK


@pytest.mark.parametrize("build", [build_variable_lists, build_ascii_variable_lists], ids=["binary", "ascii"])
def test_variable_length_lists_read_as_plyfile_reads_them(tmp_path, build):
    path = build(tmp_path, 3000)
    shape = read_shape(path)
    reference = plyfile_triangles(path)
    assert len(shape.faces) == len(reference)
    assert as_set(shape.faces) == as_set(reference)


def test_large_variable_length_lists_stay_within_the_memory_limit(tmp_path):
    path = build_variable_lists(tmp_path, 1_100_000)  # 28 MB: plyfile's own reader took 36 s and 2.2 GB
    result = read_in_child(path, max_gib=1.0)
    assert result["outcome"] == "read: 1,000,000 points, 1,650,000 faces"
    assert result["growth"] < 1.0 * GIB


def test_ascii_variable_lists_with_float_or_signed_values(tmp_path):
    header = ("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
              "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n")
    vertices = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
    floats = tmp_path / "floats.ply"
    floats.write_text(header + vertices + "3 0 1 2.0\n4 0 1 2 3\n")
    assert len(read_shape(floats).faces) == 3
    negative = tmp_path / "negative.ply"
    negative.write_text(header + vertices + "3 0 1 -2\n4 0 1 2 3\n")
    with pytest.raises(ShapeError, match="a face refers to vertex -2"):
        read_shape(negative)
    glued = tmp_path / "glued.ply"
    glued.write_text(header + vertices + "3 0 1-2\n4 0 1 2 3\n")
    with pytest.raises(ShapeError, match="glued.ply: .*PLY"):
        read_shape(glued)


def test_binary_list_rows_cut_off_say_where(tmp_path):
    path = build_variable_lists(tmp_path, 1000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(ShapeError, match="truncated PLY file: the header promises 1,000 face elements"):
        read_shape(path)


@pytest.mark.parametrize("first_line", [b"ply\r\n", b"ply\n"])
def test_binary_ply_with_crlf_header_lines(tmp_path, first_line):
    path = build_crlf_binary(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"ply\r\n", first_line, 1))
    shape = read_shape(path)
    corners = shape.points[shape.faces]  # (12, 3, 3)
    areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1) / 2
    assert len(shape.faces) == 12 and areas.sum() == pytest.approx(6.0)


def test_the_memory_limit_applies_to_small_files_too(tmp_path):
    path = build_variable_lists(tmp_path, 2000)
    with pytest.raises(ShapeError, match=r"over the memory limit of 1e-05 GiB per file \(max_gib"):
        read_shape(path, max_gib=1e-5)
    assert len(read_shape(path, max_gib=1.0).faces) == 3000


def test_gzip_of_an_ascii_ply_reads_like_the_plain_file(tmp_path):
    plain = build_ascii_variable_lists(tmp_path, 50)
    packed = tmp_path / "packed.ply.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert np.array_equal(read_shape(plain).faces, read_shape(packed).faces)
