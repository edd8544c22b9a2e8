"""Shape files: every format round-trips, meshes are sampled by area, bad files give clear ShapeErrors."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import lzf
import numpy as np
import pytest
import trimesh

from i2pmae import io as shape_io
from i2pmae.io import SUPPORTED_EXTENSIONS, Shape, ShapeError, load_points, read_shape, sample_surface

MODELNET10_CLASSES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)  # fmt: skip
ATOL = 1e-5  # float32 output, coordinates of order 1
ASSETS = Path(__file__).resolve().parent.parent / "assets"


# ----------------------------------------------------------------------------------------------------------
# Known shapes and writers (numpy, trimesh or hand-written text; none of them uses the code under test)
# ----------------------------------------------------------------------------------------------------------


def unit_cube() -> trimesh.Trimesh:
    """The cube [0, 1]^3 as 12 triangles."""
    return trimesh.creation.box(
        extents=(1, 1, 1), transform=trimesh.transformations.translation_matrix([0.5] * 3)
    )


def corner_cloud(num_inner: int = 3000, seed: int = 0) -> np.ndarray:
    """The 8 corners of [0, 2] x [0, 3] x [0, 1] first, then points well inside it.

    Farthest point sampling from point 0 (a corner) picks all 8 corners before any inner point, so any FPS
    subset of 8 or more points spans the whole box and its normalisation can be undone from its bounding box.
    """
    corners = np.array([[x, y, z] for x in (0, 2) for y in (0, 3) for z in (0, 1)], dtype=np.float64)
    inner = np.random.default_rng(seed).uniform(0.3, 0.7, size=(num_inner, 3)) * [2, 3, 1]
    return np.concatenate([corners, inner])


def undo_normalisation(out: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map normalised points back onto a shape whose bounding box [low, high] they span (one scale)."""
    scale = (high - low) / (out.max(0) - out.min(0))  # (3,)
    np.testing.assert_allclose(scale, scale[0], rtol=1e-5)
    return (out - out.min(0)) * scale[0] + low


def nearest_distance(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Brute force: distance from each point (P, 3) to its nearest reference point (R, 3) -> (P,)."""
    return np.sqrt(((points[:, None] - reference[None]) ** 2).sum(-1)).min(1)


def triangle_keys(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each triangle as its sorted corner coordinates, rows sorted: comparable across vertex orders (F, 9)."""
    corners = np.round(points[faces], 6)  # (F, 3 corners, 3)
    order = np.lexsort(corners.transpose(2, 0, 1)[::-1], axis=-1)  # (F, 3), corners sorted by x, then y, z
    keys = np.take_along_axis(corners, order[..., None], axis=1).reshape(len(faces), 9)  # (F, 9)
    return keys[np.lexsort(keys.T[::-1])]


def rows(array) -> list[tuple]:
    """The rows of a 2-D array as a sorted list, to compare faces regardless of their order."""
    return sorted(map(tuple, np.asarray(array).tolist()))


def assert_same_mesh(shape: Shape, mesh: trimesh.Trimesh) -> None:
    assert shape.is_mesh and shape.points.dtype == np.float64 and shape.faces.dtype == np.int64
    np.testing.assert_allclose(
        triangle_keys(shape.points, shape.faces), triangle_keys(mesh.vertices, mesh.faces)
    )


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def off_text(mesh: trimesh.Trimesh, header: str = "OFF\n{v} {f} 0\n") -> str:
    vertices = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in mesh.vertices.tolist())
    faces = "".join(f"3 {a} {b} {c}\n" for a, b, c in mesh.faces.tolist())
    return header.format(v=len(mesh.vertices), f=len(mesh.faces)) + vertices + faces


def ply_ascii(points: np.ndarray, faces: list[list[int]], count: int | None = None) -> str:
    header = f"ply\nformat ascii 1.0\nelement vertex {len(points) if count is None else count}\n"
    header += "property float x\nproperty float y\nproperty float z\n"
    header += f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    body = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in points.tolist())
    return header + body + "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces)


def pcd_header(
    num_points: int, data: str, fields: str = "x y z", size: str = "4 4 4", kind: str = "F F F"
) -> str:
    return (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {size}\nTYPE {kind}\n"
        f"COUNT {' '.join('1' * len(fields.split()))}\nWIDTH {num_points}\nHEIGHT 1\n"
        f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {num_points}\nDATA {data}\n"
    )


def lzf_literals(raw: bytes) -> bytes:
    """A valid LZF stream made only of literal runs (at most 32 bytes each)."""
    return b"".join(bytes([len(raw[i : i + 32]) - 1]) + raw[i : i + 32] for i in range(0, len(raw), 32))


@pytest.fixture
def cloud() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(500, 3)) * [1.0, 2.0, 0.5] + [10.0, -3.0, 7.0]


# ----------------------------------------------------------------------------------------------------------
# Round trips: read_shape returns exactly what was written
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "binary"])
def test_ply_mesh_round_trip(tmp_path, encoding):
    mesh = unit_cube()
    path = write(tmp_path / "cube.ply", trimesh.exchange.ply.export_ply(mesh, encoding=encoding))
    assert_same_mesh(read_shape(path), mesh)


def test_ply_big_endian_with_extra_properties(tmp_path):
    mesh = unit_cube()
    header = (
        "ply\nformat binary_big_endian 1.0\ncomment made by hand\nelement vertex 8\nproperty double x\n"
        "property double y\nproperty double z\nproperty uchar red\nelement face 12\n"
        "property list uchar uint vertex_indices\nproperty float quality\nend_header\n"
    )
    vertex = np.zeros(8, dtype=[("xyz", ">f8", 3), ("red", "u1")])
    vertex["xyz"] = mesh.vertices
    face = np.zeros(12, dtype=[("n", "u1"), ("idx", ">u4", 3), ("quality", ">f4")])
    face["n"], face["idx"] = 3, mesh.faces
    path = write(tmp_path / "big.PLY", header.encode() + vertex.tobytes() + face.tobytes())
    assert_same_mesh(read_shape(path), mesh)


def test_ply_polygons_are_fan_triangulated(tmp_path):
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float64)
    path = write(tmp_path / "quad.ply", ply_ascii(square, [[0, 1, 2, 3], [1, 4, 2]]))
    assert rows(read_shape(path).faces) == rows([[0, 1, 2], [0, 2, 3], [1, 4, 2]])


@pytest.mark.parametrize("quad_first", [True, False])
def test_ply_binary_lists_of_mixed_lengths(tmp_path, quad_first):
    """A quad and a triangle: the reader cannot assume every row is as long as the first."""
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype="<f4")
    quad = bytes([4]) + np.array([0, 1, 2, 3], "<i4").tobytes()
    triangle = bytes([3]) + np.array([1, 4, 2], "<i4").tobytes()
    faces = quad + triangle if quad_first else triangle + quad
    shape = read_shape(write(tmp_path / "mixed.ply", header.encode() + vertices.tobytes() + faces))
    assert rows(shape.faces) == rows([[0, 1, 2], [0, 2, 3], [1, 4, 2]])


def test_ply_without_faces_is_a_cloud(tmp_path, cloud):
    path = write(tmp_path / "cloud.ply", trimesh.exchange.ply.export_ply(trimesh.PointCloud(cloud)))
    shape = read_shape(path)
    assert not shape.is_mesh
    np.testing.assert_allclose(shape.points, cloud.astype(np.float32), rtol=1e-6)


def test_obj_round_trip(tmp_path):
    mesh = unit_cube()
    assert_same_mesh(read_shape(write(tmp_path / "cube.obj", trimesh.exchange.obj.export_obj(mesh))), mesh)


def test_obj_slashes_negative_indices_and_quads(tmp_path):
    text = (
        "# comment\nmtllib x.mtl\no square\nv 0 0 0\nv 1 0 0 1.0\nv 1 1 0 0.5 0.5 0.5\nv 0 1 0\n"
        "vt 0 0\nvn 0 0 1\nusemtl m\nf 1/1/1 2/1/1 3//1 4\nf -4 -3 -2\n"
    )
    shape = read_shape(write(tmp_path / "square.obj", text))
    np.testing.assert_array_equal(shape.points, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    assert rows(shape.faces) == rows([[0, 1, 2], [0, 2, 3], [0, 1, 2]])


def test_obj_without_faces_is_a_cloud(tmp_path, cloud):
    text = "".join(f"v {x!r} {y!r} {z!r}\n" for x, y, z in cloud.tolist())
    shape = read_shape(write(tmp_path / "cloud.obj", text))
    assert not shape.is_mesh
    np.testing.assert_array_equal(shape.points, cloud)


@pytest.mark.parametrize(
    "header",
    [
        "OFF\n{v} {f} 0\n",
        "OFF{v} {f} 0\n",
        "OFF {v} {f} 0\n",
        "# comment\nOFF\n\n{v} {f}\n",
        "COFF\n{v} {f} 0\n",
    ],
    ids=["standard", "modelnet-glued", "same-line", "comment-blank-two-counts", "coff"],
)
def test_off_headers(tmp_path, header):
    mesh = unit_cube()
    assert_same_mesh(read_shape(write(tmp_path / "cube.off", off_text(mesh, header))), mesh)


def test_off_modelnet_header_is_literally_off8_12_0(tmp_path):
    text = off_text(unit_cube(), "OFF{v} {f} 0\n")
    assert text.startswith("OFF8 12 0\n")
    assert read_shape(write(tmp_path / "cube.off", text)).faces.shape == (12, 3)


def test_off_with_polygons_and_colours(tmp_path):
    text = "OFF\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n2 0 0\n4 0 1 2 3 255 0 0\n3 1 4 2\n"
    assert rows(read_shape(write(tmp_path / "poly.off", text)).faces) == rows(
        [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_stl_round_trip(tmp_path, binary):
    mesh = unit_cube()
    data = trimesh.exchange.stl.export_stl(mesh) if binary else trimesh.exchange.stl.export_stl_ascii(mesh)
    assert_same_mesh(read_shape(write(tmp_path / "cube.stl", data)), mesh)


def test_pcd_ascii_with_extra_fields(tmp_path, cloud):
    header = pcd_header(len(cloud), "ascii", "x y z rgb", "4 4 4 4", "F F F F")
    body = "".join(f"{x!r} {y!r} {z!r} 4.2108e+06\n" for x, y, z in cloud.tolist())
    np.testing.assert_array_equal(read_shape(write(tmp_path / "c.pcd", header + body)).points, cloud)


def test_pcd_binary_with_fields_in_any_order(tmp_path, cloud):
    record = np.zeros(len(cloud), dtype=[("intensity", "<u2"), ("z", "<f8"), ("y", "<f4"), ("x", "<f4")])
    record["x"], record["y"], record["z"] = cloud[:, 0], cloud[:, 1], cloud[:, 2]
    header = pcd_header(len(cloud), "binary", "intensity z y x", "2 8 4 4", "U F F F")
    shape = read_shape(write(tmp_path / "c.pcd", header.encode() + record.tobytes()))
    np.testing.assert_allclose(shape.points, cloud, rtol=1e-6)


def test_pcd_binary_compressed(tmp_path, cloud):
    raw = b"".join(cloud[:, i].astype("<f4").tobytes() for i in range(3))  # column-major
    body = struct.pack("<II", len(lzf_literals(raw)), len(raw)) + lzf_literals(raw)
    path = write(tmp_path / "c.pcd", pcd_header(len(cloud), "binary_compressed").encode() + body)
    np.testing.assert_allclose(read_shape(path).points, cloud, rtol=1e-6)


def test_lzf_back_references():
    """Literal 'abc', a 3-byte match at distance 1, then an 11-byte match at distance 5 (both overlap)."""
    stream = bytes([2]) + b"abc" + bytes([1 << 5, 0]) + bytes([7 << 5, 2, 4])
    assert shape_io.pcd._lzf_decompress(stream, 17) == b"abc" + b"ccc" + b"bccccbccccb"
    with pytest.raises(ShapeError, match="corrupt"):
        shape_io.pcd._lzf_decompress(bytes([1 << 5, 5]), 3)  # a reference before the start


@pytest.mark.parametrize(
    ("name", "delimiter", "columns"),
    [("c.xyz", " ", 3), ("c.txt", ",", 3), ("c.txt", ",", 6), ("c.xyz", "\t", 6)],
)
def test_text_clouds(tmp_path, cloud, name, delimiter, columns):
    table = np.concatenate([cloud, np.ones((len(cloud), columns - 3))], axis=1)
    text = "# x y z\n" + "".join(delimiter.join(map(repr, row)) + "\n" for row in table.tolist())
    np.testing.assert_array_equal(read_shape(write(tmp_path / name, text)).points, cloud)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_npy(tmp_path, cloud, dtype):
    array = (cloud * 100).astype(dtype)
    np.save(tmp_path / "c.npy", array)
    np.testing.assert_array_equal(read_shape(tmp_path / "c.npy").points, array.astype(np.float64))


@pytest.mark.parametrize("key", ["points", "xyz", "data", "anything"])
def test_npz_picks_the_points(tmp_path, cloud, key):
    others = {"labels": np.arange(3), "normals": np.zeros_like(cloud)} if key != "anything" else {}
    np.savez_compressed(tmp_path / "c.npz", **{key: cloud[None]}, **others)  # (1, N, 3) is one shape
    np.testing.assert_array_equal(read_shape(tmp_path / "c.npz").points, cloud)


# ----------------------------------------------------------------------------------------------------------
# load_points: sampling and normalisation
# ----------------------------------------------------------------------------------------------------------


def assert_normalised(points: np.ndarray, num_points: int) -> None:
    assert points.dtype == np.float32 and points.shape == (num_points, 3)
    np.testing.assert_allclose(points.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1).max(), 1, atol=1e-6)


def test_mesh_samples_lie_on_the_cube_faces(tmp_path):
    path = write(tmp_path / "cube.off", off_text(unit_cube(), "OFF{v} {f} 0\n"))
    out = load_points(path, 2048, seed=3)
    assert_normalised(out, 2048)
    cube = undo_normalisation(out, np.zeros(3), np.ones(3))
    assert (cube > -ATOL).all() and (cube < 1 + ATOL).all()
    distance_to_surface = np.minimum(cube, 1 - cube).min(1)  # (N,), 0 on a face
    assert distance_to_surface.max() < ATOL
    on_face = np.stack([np.abs(cube) < ATOL, np.abs(cube - 1) < ATOL], axis=1).reshape(len(cube), 6)  # (N, 6)
    counts = on_face.sum(0)
    assert counts.min() > 2048 / 6 * 0.75  # six faces of equal area share the samples


def test_area_weighting_big_and_small_triangle(tmp_path):
    """Triangle areas 3 (plane z=0) and 1 (plane z=1): 3/4 of the samples belong on the big one."""
    vertices = np.array([[0, 0, 0], [3, 0, 0], [0, 2, 0], [0, 0, 1], [1, 0, 1], [0, 2, 1]], dtype=np.float64)
    mesh = trimesh.Trimesh(vertices, [[0, 1, 2], [3, 4, 5]], process=False)
    path = write(tmp_path / "two.ply", trimesh.exchange.ply.export_ply(mesh, encoding="ascii"))
    num = 4000
    out = load_points(path, num, seed=0)
    big = out[:, 2] < (out[:, 2].min() + out[:, 2].max()) / 2
    assert abs(big.mean() - 0.75) < 4.5 * np.sqrt(0.75 * 0.25 / num)  # binomial, 4.5 sigma


def test_surface_samples_are_uniform_inside_a_triangle():
    """The sub-triangle of the corner (0, 0) and the two edge midpoints covers 1/4 of the area."""
    samples = sample_surface(np.eye(3), np.array([[0, 1, 2]]), 8000, rng=np.random.default_rng(0))
    np.testing.assert_allclose(samples.sum(1), 1, atol=1e-12)  # on the plane x + y + z = 1
    assert (samples >= 0).all()
    near_corner = samples[:, 0] >= 0.5
    assert abs(near_corner.mean() - 0.25) < 4.5 * np.sqrt(0.25 * 0.75 / 8000)


def test_large_cloud_is_farthest_point_sampled(tmp_path):
    points = corner_cloud()
    np.save(tmp_path / "c.npy", points)
    out = load_points(tmp_path / "c.npy", 64, seed=0)
    assert_normalised(out, 64)
    raw = undo_normalisation(out, points.min(0), points.max(0))
    assert nearest_distance(raw, points).max() < ATOL  # every sample is an input point
    assert len(np.unique(out, axis=0)) == 64  # FPS never repeats a point
    np.testing.assert_array_equal(out, load_points(tmp_path / "c.npy", 64, seed=5))  # seed-independent


def test_small_cloud_keeps_every_point_and_repeats_some(tmp_path):
    points = corner_cloud(num_inner=92)
    np.savetxt(tmp_path / "c.xyz", points)
    out = load_points(tmp_path / "c.xyz", 256, seed=0)
    assert_normalised(out, 256)
    raw = undo_normalisation(out, points.min(0), points.max(0))
    assert nearest_distance(raw, points).max() < ATOL
    assert nearest_distance(points, raw).max() < ATOL  # all 100 input points are there
    assert len(np.unique(out, axis=0)) == 100


def test_deterministic_for_a_seed(tmp_path):
    path = write(tmp_path / "cube.stl", trimesh.exchange.stl.export_stl(unit_cube()))
    np.testing.assert_array_equal(load_points(path, 512, seed=7), load_points(path, 512, seed=7))
    assert not np.array_equal(load_points(path, 512, seed=7), load_points(path, 512, seed=8))


@pytest.mark.parametrize("num_points", [0, -5, 2.5, True])
def test_num_points_must_be_a_positive_int(tmp_path, cloud, num_points):
    np.save(tmp_path / "c.npy", cloud)
    with pytest.raises(ValueError, match="num_points"):
        load_points(tmp_path / "c.npy", num_points)


# ----------------------------------------------------------------------------------------------------------
# Bad input: one ShapeError each, naming the file and the problem
# ----------------------------------------------------------------------------------------------------------


def pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, points=np.array([{"a": 1}], dtype=object))
    return buffer.getvalue()


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a shape " * 50)
    return buffer.getvalue()


def junk() -> bytes:
    return np.random.default_rng(0).bytes(4096)


CUBE_PLY = trimesh.exchange.ply.export_ply(unit_cube(), encoding="binary")
CUBE_STL = trimesh.exchange.stl.export_stl(unit_cube())
CUBE = unit_cube()
STL_ASCII = trimesh.exchange.stl.export_stl_ascii(CUBE)
REPEATED = "".join("0 0 0\n1 0 0\n0 1 0\n0 0 1\n" for _ in range(50))

BAD_FILES = {
    "empty": ("a.ply", b"", "empty"),
    "unknown-extension": ("a.step", "solid", r"unsupported file type \('.step'\); supported: .ply, .obj"),
    "no-extension": ("README", "x", "no extension"),
    "ply-no-vertices": ("a.ply", ply_ascii(np.zeros((0, 3)), []), "no points"),
    "npy-no-points": ("a.npy", npy_bytes(np.zeros((0, 3))), "no points"),
    "few-distinct": ("a.xyz", REPEATED, "only 4 distinct point"),
    "nan": ("a.xyz", "nan 0 0\n" + REPEATED, "only 4 distinct.*1 of 201 points have NaN"),
    "inf": ("a.npy", npy_bytes(np.array([[np.inf, 0, 0]] + [[i, 0, 0] for i in range(10)])), "infinite"),
    "ply-promises-more-vertices": (
        "a.ply",
        ply_ascii(CUBE.vertices, CUBE.faces.tolist(), count=20),
        "vertex",
    ),
    "ply-ascii-truncated": ("a.ply", ply_ascii(CUBE.vertices, CUBE.faces.tolist())[:-30], "truncated PLY"),
    "ply-binary-truncated": ("a.ply", CUBE_PLY[:-40], "truncated PLY file: the header promises 12 face"),
    "ply-binary-more-vertices": (
        "a.ply",
        CUBE_PLY.replace(b"element vertex 8", b"element vertex 90"),
        "truncated PLY",
    ),
    "ply-junk": ("a.ply", junk(), "not a PLY file"),
    "ply-zip": ("a.ply", zip_bytes(), "not a PLY file"),
    "ply-no-end-header": ("a.ply", "ply\nformat ascii 1.0\n", "no end of header"),
    "ply-bad-format": ("a.ply", "ply\nformat weird 1.0\nend_header\n", "unexpected PLY header line"),
    "ply-out-of-range": ("a.ply", ply_ascii(CUBE.vertices, [[0, 1, 99]]), "vertex 99, but the file has 8"),
    "ply-text-value": ("a.ply", ply_ascii(CUBE.vertices, []).replace("0.0", "zero", 1), "not a number"),
    "obj-index-zero": ("a.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "start at 1"),
    "obj-out-of-range": ("a.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "vertex 8, but the file has 3"),
    "obj-negative-out-of-range": ("a.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -7\n", "vertex -4"),
    "obj-junk": ("a.obj", junk(), "not a text OBJ"),
    "obj-short-vertex": ("a.obj", "v 1 2\n", "line 1: a vertex needs x y z"),
    "off-truncated": ("a.off", off_text(CUBE)[:-40], "truncated OFF file: the header promises 8 vertices"),
    "off-out-of-range": (
        "a.off",
        "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n",
        "vertex 3, but the file has 3",
    ),
    "off-not-off": ("a.off", "PLY\n3 1 0\n", "not an OFF file"),
    "off-two-vertex-face": ("a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "faces need at least 3"),
    "off-fractional-index": ("a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 1.5\n", "must be integers"),
    "off-zero-area": (
        "a.off",
        "OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n",
        "zero area: there is no surface",
    ),
    "stl-truncated": ("a.stl", CUBE_STL[:-30], "truncated binary STL file: the header promises 12 triangles"),
    "stl-junk": ("a.stl", b"\x00" * 10, "not an STL file"),
    "stl-ascii-cut": ("a.stl", STL_ASCII[: STL_ASCII.rindex("vertex")], "'vertex' lines"),
    "pcd-truncated": ("a.pcd", pcd_header(100, "binary").encode() + bytes(600), "truncated binary PCD"),
    "pcd-no-xyz": ("a.pcd", pcd_header(2, "ascii", "a b c") + "1 2 3\n4 5 6\n", "no x, y and z fields"),
    "pcd-wrong-count": (
        "a.pcd",
        pcd_header(3, "ascii") + "1 2 3\n",
        "promises 3 points but the data holds 1",
    ),
    "pcd-junk": ("a.pcd", junk(), "not a PCD file"),
    "pcd-bad-compressed": (
        "a.pcd",
        pcd_header(20, "binary_compressed").encode() + struct.pack("<II", 3, 240) + b"\x05ab",
        "corrupt",
    ),
    "txt-not-numbers": ("a.txt", "1,2,3\nx,y,z\n", "malformed point list"),
    "txt-ragged": ("a.txt", "1 2 3\n4 5\n", "malformed point list"),
    "txt-two-columns": ("a.txt", "1 2\n" * 20, r"shape \(20, 2\); expected \(N, 3\)"),
    "txt-only-comments": ("a.xyz", "# nothing\n\n", "no points"),
    "npy-pickle": ("a.npy", npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True), "pickled"),
    "npy-pickle-protocol": ("a.npy", pickle.dumps(np.zeros((20, 3))), "not an NPY file"),
    "npz-pickle": ("a.npz", pickled_npz(), "pickled"),
    "npy-wrong-shape": ("a.npy", npy_bytes(np.zeros((20, 2))), r"shape \(20, 2\)"),
    "npy-strings": ("a.npy", npy_bytes(np.array([["a", "b", "c"]])), "data type <U1"),
    "npy-is-a-zip": (
        "a.npy",
        zip_bytes(),
        "NPZ \\(zip\\) archive, not an NPY file; give it the extension .npz",
    ),
    "npy-truncated": ("a.npy", npy_bytes(np.zeros((100, 3)))[:-50], "malformed NPY"),
    "npz-batch": ("a.npz", None, "batch of 5 shapes"),
    "npz-ambiguous": ("a.npz", None, "cannot tell which array.*found: a, b"),
    "npz-not-zip": ("a.npz", npy_bytes(np.zeros((20, 3))), "not a zip archive"),
    "npz-zip-of-text": ("a.npz", zip_bytes(), "not a numpy array"),
}


@pytest.mark.parametrize(("name", "content", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_files_raise_shape_error(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        write(path, content)
    elif "batch" in expected:
        np.savez(path, points=np.zeros((5, 20, 3)))
    else:
        np.savez(path, a=np.zeros((20, 3)), b=np.ones((20, 3)))
    with pytest.raises(ShapeError, match=expected) as info:
        read_shape(path)
    assert str(info.value).startswith(f"{name}: ")
    with pytest.raises(ShapeError, match=expected):
        load_points(path)


def test_library_errors_are_chained(tmp_path):
    with pytest.raises(ShapeError) as info:
        read_shape(write(tmp_path / "a.txt", "1 2 3\n4 5\n"))
    assert isinstance(info.value.__cause__, ValueError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ShapeError, match="no such file"):
        read_shape(tmp_path / "missing.ply")
    (tmp_path / "folder.ply").mkdir()
    with pytest.raises(ShapeError, match="not a file"):
        read_shape(tmp_path / "folder.ply")


def test_file_size_limit_is_checked_before_reading(tmp_path, monkeypatch):
    path = write(tmp_path / "big.xyz", "0 0 0\n" * 2000)
    monkeypatch.setattr(shape_io.checks, "MAX_FILE_BYTES", 2**20 // 100)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(
        ShapeError, match=r"big.xyz: the file is 12,000 bytes, over the limit of 10,485 bytes"
    ):
        read_shape(path)


def test_file_size_limit_message_in_mib(tmp_path, monkeypatch):
    path = write(tmp_path / "big.npy", bytes(3 * 2**20 + 1))
    monkeypatch.setattr(shape_io.checks, "MAX_FILE_BYTES", 2 * 2**20)
    with pytest.raises(
        ShapeError, match=r"the file is 3.0 MiB, over the limit of 2.0 MiB \(MAX_FILE_BYTES\)"
    ):
        read_shape(path)


def test_point_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(shape_io.checks, "MAX_POINTS", 100)
    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(150, 3)))
    with pytest.raises(ShapeError, match=r"150 points, over the limit of 100 \(MAX_POINTS\)"):
        read_shape(tmp_path / "c.npy")
    np.savetxt(tmp_path / "c.xyz", np.random.default_rng(0).normal(size=(150, 3)))
    with pytest.raises(ShapeError, match="MAX_POINTS"):
        read_shape(tmp_path / "c.xyz")


def test_point_limit_is_checked_from_the_header(tmp_path):
    """A header promising 10^9 vertices is refused before anything that size is allocated."""
    text = f"ply\nformat binary_little_endian 1.0\nelement vertex {10**9}\nproperty float x\nend_header\n"
    with pytest.raises(ShapeError, match="1,000,000,000 vertices, over the limit of 5,000,000"):
        read_shape(write(tmp_path / "huge.ply", text))
    with pytest.raises(ShapeError, match="MAX_POINTS"):
        read_shape(write(tmp_path / "huge.off", f"OFF\n{10**9} 0 0\n1 2 3\n"))


def test_npz_member_size_is_checked_before_decompressing(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "c.npz", points=np.zeros((100_000, 3)))  # 2.4 MB of zeros, tiny on disk
    monkeypatch.setattr(shape_io.checks, "MAX_FILE_BYTES", 2**20)
    with pytest.raises(
        ShapeError, match=r"array 'points' is 2.3 MiB uncompressed, over the limit of 1.0 MiB"
    ):
        read_shape(tmp_path / "c.npz")


# ----------------------------------------------------------------------------------------------------------
# Files users have: what real exporters write (issue 11) and the rules for odd tables and units (issue 14)
# ----------------------------------------------------------------------------------------------------------


def organised_cloud(width: int = 64, height: int = 48, nan_fraction: float = 0.25) -> np.ndarray:
    """A depth-camera frame as PCL stores it: (H * W, 3) float32, NaN where a pixel has no depth."""
    rng = np.random.default_rng(3)
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    depth = 1.0 + 0.2 * rng.random((height, width))
    points = np.stack([(u - width / 2) * depth / 50, (v - height / 2) * depth / 50, depth], axis=-1)
    points[rng.random((height, width)) < nan_fraction] = np.nan
    return points.reshape(-1, 3).astype(np.float32)


def organised_pcd(points: np.ndarray, data: str, width: int, height: int) -> bytes:
    """x y z plus an rgb field, in PCL's ascii, binary or binary_compressed encoding."""
    header = pcd_header(len(points), data, "x y z rgb", "4 4 4 4", "F F F F")
    header = header.replace(f"WIDTH {len(points)}\nHEIGHT 1", f"WIDTH {width}\nHEIGHT {height}").encode()
    rgb = np.full(len(points), 4.2108e06, dtype="<f4")
    if data == "ascii":
        return (
            header
            + "".join(
                f"{x} {y} {z} {c}\n" for (x, y, z), c in zip(points.tolist(), rgb, strict=True)
            ).encode()
        )
    if data == "binary":
        record = np.zeros(len(points), dtype=[("xyz", "<f4", 3), ("rgb", "<f4")])
        record["xyz"], record["rgb"] = points, rgb
        return header + record.tobytes()
    raw = b"".join(points[:, i].astype("<f4").tobytes() for i in range(3)) + rgb.tobytes()  # column-major
    compressed = lzf.compress(raw, 2 * len(raw))  # None when the stream would grow beyond the limit
    return header + struct.pack("<II", len(compressed), len(raw)) + compressed


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_organised_pcd_drops_nan_points_and_says_so(tmp_path, data):
    points = organised_cloud()
    finite = np.isfinite(points).all(axis=1)
    path = write(tmp_path / "frame.pcd", organised_pcd(points, data, 64, 48))
    shape = read_shape(path)
    np.testing.assert_array_equal(shape.points, points[finite].astype(np.float64))
    assert shape.notes == (
        f"{(~finite).sum():,} of 3,072 points have NaN or infinite coordinates and were dropped",
    )
    assert_normalised(load_points(path, 512), 512)


def test_cloud_of_nan_with_too_few_finite_points_is_refused(tmp_path):
    points = np.full((3072, 3), np.nan, dtype=np.float32)
    points[:10] = np.arange(30).reshape(10, 3)
    with pytest.raises(ShapeError, match=r"only 10 distinct point.*3,062 of 3,072 points have NaN"):
        read_shape(write(tmp_path / "frame.pcd", organised_pcd(points, "binary", 64, 48)))
    points[:] = np.nan
    with pytest.raises(ShapeError, match="no points with finite coordinates"):
        read_shape(write(tmp_path / "frame.pcd", organised_pcd(points, "binary", 64, 48)))


def test_mesh_vertices_with_nan_are_dropped_with_their_faces(tmp_path):
    mesh = unit_cube()
    text = off_text(mesh).replace("OFF\n8 12 0\n", "OFF\n9 13 0\n", 1)
    lines = text.splitlines()
    lines.insert(2 + 8, "nan 0 0")  # a ninth vertex, used by one extra face
    text = "\n".join(lines) + "\n3 0 1 8\n"
    shape = read_shape(write(tmp_path / "cube.off", text))
    assert_same_mesh(shape, mesh)
    assert shape.notes == (
        "1 of 9 vertices have NaN or infinite coordinates; they and the 1 face(s) using them were dropped",
    )


def test_blender_ply_header_lines_are_ignored_with_a_note(tmp_path):
    mesh = unit_cube()
    for encoding in ("ascii", "binary"):
        data = trimesh.exchange.ply.export_ply(mesh, encoding=encoding)
        data = data.replace(b"ply\n", b"ply\nCreated by Blender 2.79 (sub 0) - www.blender.org\n", 1)
        data = data.replace(b"end_header", b"obj_info exported by hand\nend_header", 1)
        shape = read_shape(write(tmp_path / f"{encoding}.ply", data))
        assert_same_mesh(shape, mesh)
        assert shape.notes == (
            "ignored 1 non-standard PLY header line(s), e.g. 'Created by Blender 2.79 (sub "
            "0) - www.blender.org'",
        )


def test_ply_faces_with_texcoord_lists(tmp_path):
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float64)
    header = (
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 2\nproperty list uchar int vertex_indices\nproperty list uchar float texcoord\n"
        "property uchar flags\nend_header\n"
    )
    body = "".join(f"{x} {y} {z}\n" for x, y, z in square.tolist())
    body += "4 0 1 2 3 8 0 0 1 0 1 1 0 1 7\n3 1 4 2 6 0 0 1 0 1 1 7\n"
    assert rows(read_shape(write(tmp_path / "tex.ply", header + body)).faces) == rows(
        [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    )
    vertex = square.astype("<f4").tobytes()
    quad = bytes([4]) + np.array([0, 1, 2, 3], "<i4").tobytes() + bytes([8]) + bytes(32) + bytes([7])
    triangle = bytes([3]) + np.array([1, 4, 2], "<i4").tobytes() + bytes([6]) + bytes(24) + bytes([7])
    binary = header.replace("ascii", "binary_little_endian").encode() + vertex + triangle + quad
    assert rows(read_shape(write(tmp_path / "tex_bin.ply", binary)).faces) == rows(
        [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    )


def test_obj_line_continuations_and_utf16(tmp_path):
    text = "# made on Windows\nv 0 0 \\\n  0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 \\\n3\nf 1 3 4\n"
    for encoding in ("utf-8", "utf-16", "utf-8-sig"):
        shape = read_shape(write(tmp_path / "tet.obj", text.encode(encoding)))
        np.testing.assert_array_equal(shape.points, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
        assert rows(shape.faces) == rows([[0, 1, 2], [0, 2, 3]])
    with pytest.raises(ShapeError, match="line 9: 'x' is not a vertex index"):
        read_shape(write(tmp_path / "bad.obj", text.replace("f 1 3 4", "f 1 \\\n x 4")))


PLY_HEADER = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
PLY_VERTICES = "0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
PLY_VARIANTS = {
    "triangles": PLY_HEADER
    + "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
    + PLY_VERTICES
    + "3 0 1 2\n3 0 2 3\n",
    "colours-crlf": (
        PLY_HEADER.replace("z\n", "z\nproperty uchar red\n")
        + "end_header\n"
        + PLY_VERTICES.replace("\n", " 255\r\n")
    ),
    "no-faces": PLY_HEADER
    + "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
    + PLY_VERTICES,
    "mixed-lists": PLY_HEADER
    + "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
    + PLY_VERTICES
    + "3 0 1 2\n4 0 1 2 3\n",
    "float-items-and-edges": PLY_HEADER + "element face 1\nproperty list uint8 float vertex_index\n"
    "element edge 1\nproperty int vertex1\nproperty int vertex2\nend_header\n"
    + PLY_VERTICES
    + "3 0 1 2\n0 1\n",
    "fractional-int": PLY_HEADER.replace("float z", "int z")
    + "end_header\n"
    + PLY_VERTICES.replace("1\n", "1.5\n"),
    "uchar-out-of-range": PLY_HEADER.replace("z\n", "z\nproperty uchar red\n")
    + "end_header\n"
    + PLY_VERTICES.replace("\n", " 300\n"),
    "extra-value": PLY_HEADER + "end_header\n" + PLY_VERTICES.replace("1 0 0", "1 0 0 7"),
    "nan-and-blank-line": PLY_HEADER + "end_header\n" + PLY_VERTICES.replace("0 0 1\n", "nan 0 1\n\n"),
    "duplicate-property": PLY_HEADER.replace("float z", "float z\nproperty float z")
    + "end_header\n"
    + PLY_VERTICES.replace("\n", " 0\n"),
}


@pytest.mark.parametrize("text", PLY_VARIANTS.values(), ids=PLY_VARIANTS.keys())
def test_ply_ascii_fast_path_agrees_with_plyfile(tmp_path, monkeypatch, text):
    """ASCII PLY bodies are read with one loadtxt per element; the result (or error) is plyfile's."""
    path = write(tmp_path / "a.ply", text)
    fast = outcome(path)
    monkeypatch.setattr(shape_io.ply, "_ascii_columns", lambda body, elements: None)
    assert fast == outcome(path)


def outcome(path: Path):
    """What read_shape makes of a file: (points, faces) as lists, or the error message."""
    try:
        shape = read_shape(path)
    except ShapeError as err:
        return str(err)
    return shape.points.tolist(), None if shape.faces is None else shape.faces.tolist()


OBJ_VARIANTS = {
    "crlf-tabs-comments": "# c\r\nv\t0 0 0\r\n  v 1 0 0 # x\r\nv 0 1 0\r\nv 0 0 1\r\nf 1 2 3\r\nf\t1 3 4\r\n",
    "w-colours-slashes": (
        "v 0 0 0 1\nv 1 0 0 1 0.5 0.5 0.5\nv 0 1 0\nv 0 0 1\nvt 0 0\nf 1/1 2/1 3/1\nf 1//1 3//1 4//1\n"
    ),
    "quads-and-triangles": "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nf 1 2 3 4\nf 2 5 3\n",
    "negative": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 0 0 1\nf -4 -2 -1\n",
    "interleaved": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nv 0 0 1\nf 1 3 4\n",
    "bare-v": "v 0 0 0\nv\nf 1 1 1\n",
    "face-comment": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3 # tri\n",
    "old-mac-lines": "v 0 0 0\rv 1 0 0\rv 0 1 0\rf 1 2 3\r",
    "float-index": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3.0\n",
    "huge-index": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999999\n",
}


@pytest.mark.parametrize("text", OBJ_VARIANTS.values(), ids=OBJ_VARIANTS.keys())
def test_obj_fast_path_agrees_with_the_line_by_line_reader(tmp_path, monkeypatch, text):
    """Most OBJ files go through one regex and loadtxt; the result (or error) is the line reader's."""
    path = write(tmp_path / "a.obj", text)
    fast = outcome(path)
    monkeypatch.setattr(shape_io.meshes, "_obj_fast", lambda text: None)
    assert fast == outcome(path)


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        ("{rows}", ()),
        ("x y z\n{rows}", ("skipped the header row 'x y z'",)),
        ("//X,Y,Z,R,G,B\n# exported\n{rows}", ()),
        ("X,Y,Z,Intensity\n// scan 3\n{rows}", ("skipped the header row 'X,Y,Z,Intensity'",)),
    ],
    ids=["plain", "header-row", "comments", "header-and-comment"],
)
@pytest.mark.parametrize("columns", [3, 4, 7])
def test_text_tables_with_header_rows_comments_and_more_columns(tmp_path, cloud, text, notes, columns):
    """CloudCompare writes x y z r g b and scalar fields; LiDAR exports x y z intensity."""
    delimiter = "," if "," in text else " "
    table = np.concatenate([cloud, np.arange(len(cloud) * (columns - 3)).reshape(len(cloud), -1)], axis=1)
    lines = "".join(delimiter.join(map(repr, row)) + "\n" for row in table.tolist())
    shape = read_shape(write(tmp_path / "scan.txt", text.format(rows=lines)))
    np.testing.assert_array_equal(shape.points, cloud)
    columns_note = (f"used the first 3 of {columns} columns as x y z",) if columns > 3 else ()
    assert shape.notes == (*notes, *columns_note)


def test_text_with_a_header_row_only(tmp_path):
    with pytest.raises(ShapeError, match="a header row but no points"):
        read_shape(write(tmp_path / "a.xyz", "x y z\n# nothing else\n"))


@pytest.mark.parametrize("magnitude", [1e200, 1e-200, 1e300])
@pytest.mark.parametrize("num_points", [100, 3000])
def test_huge_and_tiny_coordinates_load_like_metres(tmp_path, magnitude, num_points):
    """Float64 holds them, float32 does not: the loader rescales exactly before any float32 cast."""
    points = corner_cloud(num_inner=num_points - 8)
    np.save(tmp_path / "c.npy", points * magnitude)
    out = load_points(tmp_path / "c.npy", 256, seed=0)
    assert_normalised(out, 256)
    np.testing.assert_allclose(out, load_points(write(tmp_path / "m.npy", npy_bytes(points)), 256), atol=1e-6)
    assert len(np.unique(out, axis=0)) == min(num_points, 256)


def test_huge_mesh_coordinates(tmp_path):
    mesh = unit_cube()
    huge = trimesh.Trimesh(mesh.vertices * 1e200, mesh.faces, process=False)
    out = load_points(write(tmp_path / "huge.off", off_text(huge)), 512, seed=1)
    reference = load_points(write(tmp_path / "unit.off", off_text(mesh)), 512, seed=1)
    np.testing.assert_allclose(out, reference, atol=1e-6)


def scene_glb(*geometry_and_shift) -> bytes:
    scene = trimesh.Scene()
    for i, (geometry, shift) in enumerate(geometry_and_shift):
        scene.add_geometry(
            geometry, node_name=f"n{i}", transform=trimesh.transformations.translation_matrix(shift)
        )
    return scene.export(file_type="glb")


def test_glb_meshes_with_node_transforms(tmp_path):
    mesh = unit_cube()
    shape = read_shape(write(tmp_path / "two.glb", scene_glb((mesh, [0, 0, 0]), (mesh, [5, 0, 0]))))
    both = trimesh.util.concatenate([mesh, trimesh.Trimesh(mesh.vertices + [5, 0, 0], mesh.faces)])
    assert_same_mesh(shape, both)
    assert_normalised(load_points(tmp_path / "two.glb", 256), 256)


def test_glb_point_cloud_and_gltf(tmp_path, cloud):
    shape = read_shape(write(tmp_path / "c.glb", scene_glb((trimesh.PointCloud(cloud), [0, 0, 0]))))
    assert not shape.is_mesh
    np.testing.assert_allclose(shape.points, cloud.astype(np.float32))
    scene = trimesh.Scene(unit_cube())
    embedded = trimesh.exchange.gltf.export_gltf(scene, embed_buffers=True)["model.gltf"]
    assert_same_mesh(read_shape(write(tmp_path / "cube.gltf", embedded)), unit_cube())
    separate = trimesh.exchange.gltf.export_gltf(scene)  # model.gltf and the buffer it names
    folder = tmp_path / "separate"
    folder.mkdir()
    for name, data in separate.items():
        write(folder / name, data)
    assert_same_mesh(read_shape(folder / "model.gltf"), unit_cube())
    with pytest.raises(ShapeError, match=r"model.gltf: the glTF file refers to other files \(gltf_buffer"):
        read_shape(folder / "model.gltf", siblings=False)


def test_damaged_glb(tmp_path):
    data = scene_glb((unit_cube(), [0, 0, 0]))
    with pytest.raises(ShapeError, match="truncated or damaged GLB file"):
        read_shape(write(tmp_path / "a.glb", data[:-20]))
    with pytest.raises(ShapeError, match="not a GLB file"):
        read_shape(write(tmp_path / "a.glb", b"PK\x03\x04" + data))


def zipped(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_zipped_obj_with_its_material_file(tmp_path):
    mesh = unit_cube()
    archive = zipped(
        {
            "cube/cube.obj": trimesh.exchange.obj.export_obj(mesh),
            "cube/cube.mtl": "newmtl m\n",
            "__MACOSX/cube/._cube.obj": "junk",
        }
    )
    shape = read_shape(write(tmp_path / "cube.zip", archive))
    assert_same_mesh(shape, mesh)
    assert shape.notes == (
        "read cube/cube.obj from the zip archive (ignored 1 other file(s): cube/cube.mtl)",
    )


@pytest.mark.parametrize(("suffix", "compress"), [(".gz", gzip.compress), (".bz2", bz2.compress)])
def test_compressed_single_files(tmp_path, cloud, suffix, compress):
    mesh = unit_cube()
    path = write(tmp_path / f"cube.ply{suffix}", compress(trimesh.exchange.ply.export_ply(mesh)))
    assert_same_mesh(read_shape(path), mesh)
    text = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in cloud.tolist())
    np.testing.assert_array_equal(
        read_shape(write(tmp_path / f"c.XYZ{suffix}", compress(text.encode()))).points, cloud
    )


def test_zip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    monkeypatch.setattr(shape_io.checks, "MAX_FILE_BYTES", 2**20)
    bomb = zipped({"bomb.xyz": bytes(8 * 2**20)})  # 8 MiB of zeros, 8 KiB on disk
    with pytest.raises(
        ShapeError,
        match=r"'bomb.xyz' in the zip archive is 8.0 MiB uncompressed, over the "
        r"limit of 1.0 MiB \(MAX_FILE_BYTES\)",
    ):
        read_shape(write(tmp_path / "bomb.zip", bomb))
    lying = bomb.replace(struct.pack("<I", 8 * 2**20), struct.pack("<I", 1000))  # sizes in both headers
    with pytest.raises(ShapeError, match="bomb.zip: 'bomb.xyz' in the zip archive cannot be decompressed"):
        read_shape(write(tmp_path / "bomb.zip", lying))
    with pytest.raises(ShapeError, match=r"bomb.xyz.gz: the gzip data is over 1.0 MiB once decompressed"):
        read_shape(write(tmp_path / "bomb.xyz.gz", gzip.compress(bytes(8 * 2**20))))


COMPRESSED_BAD_FILES = {
    "zip-two-shapes": (
        "a.zip",
        zipped({"a.obj": "v 0 0 0\n", "b.ply": "ply\n"}),
        "2 shape files \\(a.obj, b.ply",
    ),
    "zip-no-shape": ("a.zip", zipped({"readme.md": "hello"}), r"no shape file \(readme.md\)"),
    "zip-junk": ("a.zip", junk(), "not a zip archive"),
    "gz-junk": ("a.ply.gz", junk(), "the gzip data cannot be decompressed"),
    "bz2-truncated": (
        "a.obj.bz2",
        bz2.compress(b"v 0 0 0\n" * 500)[:-10],
        "bzip2 data cannot be decompressed",
    ),
    "gz-unknown-inner": ("a.tar.gz", gzip.compress(b"x"), "named after it, like model.ply.gz"),
    "gz-empty": ("a.obj.gz", gzip.compress(b""), "the gzip data is empty"),
    "gz-bad-inner": ("a.obj.gz", gzip.compress(b"v 0 0 0\nf 0 1 2\n"), "start at 1"),
}


@pytest.mark.parametrize(
    ("name", "content", "expected"), COMPRESSED_BAD_FILES.values(), ids=COMPRESSED_BAD_FILES.keys()
)
def test_bad_compressed_files(tmp_path, name, content, expected):
    with pytest.raises(ShapeError, match=expected) as info:
        read_shape(write(tmp_path / name, content))
    assert str(info.value).startswith(f"{name}: ") and "\n" not in str(info.value)


def test_compressed_suffixes_are_supported_extensions():
    assert {".glb", ".gltf", ".zip", ".gz", ".bz2"} <= set(SUPPORTED_EXTENSIONS)


def test_load_points_takes_a_shape_read_before(tmp_path):
    path = write(tmp_path / "scan.xyz", "x y z\n" + "".join(f"{i} {i % 7} {i % 5}\n" for i in range(300)))
    shape = read_shape(path)
    assert shape.notes == ("skipped the header row 'x y z'",)
    np.testing.assert_array_equal(load_points(shape, 128, seed=2), load_points(path, 128, seed=2))


def test_binary_ply_fast_path_and_a_late_quad(tmp_path):
    """plyfile memory-maps binary lists of one length; a quad in the last row sends it back to row by row."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex {v}\nproperty float x\nproperty float y\n"
        "property float z\nelement face {f}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face = np.zeros(len(sphere.faces), dtype=[("n", "u1"), ("idx", "<i4", 3)])
    face["n"], face["idx"] = 3, sphere.faces
    vertices = sphere.vertices.astype("<f4").tobytes()
    triangles = header.format(v=len(sphere.vertices), f=len(face)).encode() + vertices + face.tobytes()
    assert_same_mesh(read_shape(write(tmp_path / "tri.ply", triangles)), sphere)
    quad = bytes([4]) + np.array([0, 1, 2, 3], "<i4").tobytes()
    mixed = header.format(v=len(sphere.vertices), f=len(face) + 1).encode() + vertices + face.tobytes() + quad
    faces = read_shape(write(tmp_path / "mixed.ply", mixed)).faces
    np.testing.assert_array_equal(faces[: len(sphere.faces)], sphere.faces)
    assert rows(faces[len(sphere.faces) :]) == rows([[0, 1, 2], [0, 2, 3]])


# ----------------------------------------------------------------------------------------------------------
# Bundled assets
# ----------------------------------------------------------------------------------------------------------


def manifest(assets_dir: str) -> list[dict]:
    return json.loads(Path(assets_dir, "manifest.json").read_text())


def test_manifest_lists_every_asset(assets_dir):
    entries = manifest(assets_dir)
    shape_files = {e["file"] for e in entries}
    assert len(shape_files) == len(entries) and 8 <= len(entries) <= 12
    readme = Path(assets_dir, "README.md").read_text()
    for entry in entries:
        assert set(entry) == {"file", "name", "label", "kind"} and entry["name"]
        assert entry["label"] is None or entry["label"] in MODELNET10_CLASSES
        assert entry["kind"] in ("mesh", "cloud") and f"`{entry['file']}`" in readme
        assert Path(entry["file"]).suffix in SUPPORTED_EXTENSIONS
    assert sum(f.stat().st_size for f in Path(assets_dir).iterdir()) < 15 * 2**20


@pytest.mark.parametrize("entry", manifest(ASSETS), ids=lambda entry: entry["file"])
def test_each_asset_loads(assets_dir, entry):
    path = Path(assets_dir, entry["file"])
    assert read_shape(path).is_mesh == (entry["kind"] == "mesh")
    assert_normalised(load_points(path, 1024), 1024)


def damage(data: bytes, kind: int, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(len(data)))
    if kind == 0:
        return data[:start]  # cut off
    if kind == 1:
        return data[:start] + rng.bytes(4) + data[start + 4 :]  # overwritten
    if kind == 2:
        return data[:start] + data[start + 40 :]  # bytes lost
    return data[: start % 300] + b"7 -1.\n" + data[start % 300 :]  # text inserted, often into the header


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("entry", manifest(ASSETS), ids=lambda entry: entry["file"])
def test_damaged_assets_give_shape_errors_only(tmp_path, assets_dir, entry):
    """Each damaged file either reads or raises ShapeError: no other exception, no warning."""
    data = Path(assets_dir, entry["file"]).read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / entry["file"]
    for trial in range(40):
        path.write_bytes(damage(data, trial % 4, rng))
        try:
            read_shape(path)
        except ShapeError:
            pass
