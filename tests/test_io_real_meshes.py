"""Real files other readers take, rebuilt small: binary PLY whose header lines end in CR alone (Rhino 6),
OFF faces whose indices wrap onto the following lines (libigl's tutorial data), binary OFF (Geomview's and
pmp-library's layouts), OBJ faces of fewer than 3 indices, an empty binary STL.

Each file is built here from known arrays and read back; the geometry is checked against those arrays or a
brute-force reading written here (never the code under test), and cut-off variants are refused.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from i2pmae.io import ShapeError, checks, meshes, read_shape

# The unit cube: 8 corners and its 12 triangles, outward.
CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)  # (8, 3)
CUBE_TRIANGLES = np.array([
    [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
    [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
])  # fmt: skip


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def rows(array) -> list[tuple]:
    """The rows of a 2-D array, sorted: faces compared regardless of their order."""
    return sorted(map(tuple, np.asarray(array).tolist()))


def area(points: np.ndarray, triangles: np.ndarray) -> float:
    corners = points[triangles]  # (T, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # (T, 3)
    return float(np.linalg.norm(normals, axis=1).sum() / 2)


def grid(size: int = 4) -> tuple[np.ndarray, list[list[int]]]:
    """A flat size x size grid of unit squares in z = 0: its (V, 3) corners and its quads (area size^2)."""
    u, v = np.meshgrid(np.arange(size + 1), np.arange(size + 1), indexing="ij")
    points = np.stack([u.ravel(), v.ravel(), np.zeros(u.size)], axis=1).astype(np.float64)
    at = np.arange((size + 1) ** 2).reshape(size + 1, size + 1)  # the corner at (x, y)
    cells = [(i, j) for i in range(size) for j in range(size)]
    quads = [[int(at[i, j]), int(at[i + 1, j]), int(at[i + 1, j + 1]), int(at[i, j + 1])] for i, j in cells]
    return points, quads


def triangles_of(quads: list[list[int]]) -> list[list[int]]:
    """Each quad as two triangles (a fan), for files of triangles only."""
    return [t for a, b, c, d in quads for t in ([a, b, c], [a, c, d])]


# ----------------------------------------------------------------------------------------------------------
# Binary PLY with CR-only header lines
# ----------------------------------------------------------------------------------------------------------


def rhino_ply(newline: bytes, flag: int) -> bytes:
    """A binary PLY laid out as Rhino 6 writes it (CR-only header lines with ``newline`` b"\\r"): each
    vertex a uchar ``flag`` then x y z, so the body's first byte is ``flag`` (10: an LF right after the
    CR of ``end_header``), then the cube's triangles and a trailing one-row ``material`` element."""
    header = [
        "ply", "format binary_little_endian 1.0", "comment File exported by Rhinoceros Version 6.0",
        "element vertex 8", "property uchar flag", "property float x", "property float y", "property float z",
        "element face 12", "property list uchar uint vertex_index",
        "element material 1", "property uchar ambient_red", "property double shine", "end_header",
    ]  # fmt: skip
    vertices = np.zeros(8, [("flag", "u1"), ("xyz", "<f4", (3,))])
    vertices["flag"], vertices["xyz"] = flag, CORNERS
    faces = np.zeros(12, [("n", "u1"), ("i", "<u4", (3,))])
    faces["n"], faces["i"] = 3, CUBE_TRIANGLES
    material = struct.pack("<Bd", 7, 0.5)
    head = newline.join(h.encode() for h in header) + newline
    return head + vertices.tobytes() + faces.tobytes() + material


@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"], ids=["cr", "crlf", "lf"])
@pytest.mark.parametrize("flag", [10, 13, 0], ids=["body-starts-lf", "body-starts-cr", "body-starts-nul"])
def test_binary_ply_header_lines_ending_in_cr_alone(tmp_path, newline, flag):
    shape = read_shape(write(tmp_path / "box.ply", rhino_ply(newline, flag)))
    np.testing.assert_array_equal(shape.points, CORNERS)  # the body offset is exact, to the byte
    assert rows(shape.faces) == rows(CUBE_TRIANGLES)
    assert area(shape.points, shape.faces) == pytest.approx(6.0)
    assert shape.notes == ()


def test_binary_ply_with_cr_header_cut_off_is_refused(tmp_path):
    data = rhino_ply(b"\r", 10)
    body = data.index(b"end_header\r") + len(b"end_header\r")
    with pytest.raises(ShapeError, match=r"cut\.ply: truncated PLY file: the header promises 12 face"):
        read_shape(write(tmp_path / "cut.ply", data[: body + 8 * 13 + 40]))  # inside the faces
    with pytest.raises(ShapeError, match=r"cut\.ply: .*material"):
        read_shape(write(tmp_path / "cut.ply", data[:-3]))  # inside the last element
    with pytest.raises(ShapeError, match=r"cut\.ply: not a PLY file, or its header is cut off"):
        read_shape(write(tmp_path / "cut.ply", data[: data.index(b"end_header")]))


def test_ascii_ply_with_cr_only_lines(tmp_path):
    header = ["ply", "format ascii 1.0", "element vertex 8", "property float x", "property float y",
              "property float z", "element face 12", "property list uchar int vertex_indices", "end_header"]
    body = [" ".join(map(str, p)) for p in CORNERS.astype(int).tolist()]
    body += [f"3 {a} {b} {c}" for a, b, c in CUBE_TRIANGLES.tolist()]
    shape = read_shape(write(tmp_path / "mac.ply", "\r".join(header + body) + "\r"))
    np.testing.assert_array_equal(shape.points, CORNERS)
    assert rows(shape.faces) == rows(CUBE_TRIANGLES)
    with pytest.raises(ShapeError, match="truncated PLY file"):
        read_shape(write(tmp_path / "mac.ply", "\r".join(header + body[:-2]) + "\r"))


# ----------------------------------------------------------------------------------------------------------
# OFF faces wrapped onto the following lines
# ----------------------------------------------------------------------------------------------------------


def reference_off(text: str) -> tuple[np.ndarray, list[list[int]]]:
    """Brute force, as libigl reads OFF: each vertex or face starts a line and takes the values it needs
    from the lines after when its own holds too few; the rest of the line where it ends is ignored."""
    lines = [words for line in text.splitlines() if (words := line.split("#")[0].split())]
    num_vertices, num_faces = int(lines[1][0]), int(lines[1][1])
    items, at = [], 2
    for item in range(num_vertices + num_faces):
        words = list(lines[at])
        at += 1
        needs = 3 if item < num_vertices else 1 + int(words[0])
        while len(words) < needs:
            words += lines[at]
            at += 1
        items.append(words[:needs])
    vertices = np.array([[float(w) for w in item] for item in items[:num_vertices]])
    return vertices, [[int(w) for w in item[1:]] for item in items[num_vertices:]]


def wrapped_off(points: np.ndarray, faces: list[list[int]], every: int = 1) -> str:
    """OFF text as libigl's tutorial files hold it: each ``every``-th face has one index a line (a space
    before each break, a blank line after the face); the others are one row with a colour after them."""
    lines = ["OFF", f"{len(points)} {len(faces)} 0", *(f"{x!r} {y!r} {z!r}" for x, y, z in points.tolist())]
    for number, face in enumerate(faces):
        if number % every == 0:
            lines += [f"{len(face)} {face[0]} ", *(f"{i} " for i in face[1:]), ""]
        else:
            lines.append(f"{len(face)} {' '.join(map(str, face))} 255 0 0")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("every", [1, 2, 5], ids=["all-wrapped", "every-other", "some"])
def test_off_faces_wrapped_over_lines(tmp_path, every):
    points, quads = grid()
    text = wrapped_off(points, quads, every)
    shape = read_shape(write(tmp_path / "wrapped.off", text))
    vertices, faces = reference_off(text)
    assert faces == quads  # the reference reads what was written
    np.testing.assert_array_equal(shape.points, vertices)
    assert len(shape.faces) == 2 * len(quads)
    assert area(shape.points, shape.faces) == pytest.approx(16.0)
    corner_sets = {frozenset(q) for q in quads}
    assert all(any(set(t) <= q for q in corner_sets) for t in shape.faces.tolist())  # each inside one quad


def test_off_wrapped_triangles_read_exactly(tmp_path):
    points, quads = grid(3)
    triangles = triangles_of(quads)
    text = wrapped_off(points, triangles, every=3)
    assert "\n1.0 0.0 0.0\n" in text and "\n2 \n" in text
    # a vertex wrapped too, and a comment between a face's lines
    text = text.replace("\n1.0 0.0 0.0\n", "\n1.0 0.0\n0.0\n", 1).replace("\n2 \n", "\n# a comment\n2 \n", 1)
    shape = read_shape(write(tmp_path / "wrapped.off", text))
    vertices, faces = reference_off(text)
    assert faces == triangles
    np.testing.assert_array_equal(shape.points, vertices)
    np.testing.assert_array_equal(shape.points, points)
    assert rows(shape.faces) == rows(triangles)


def test_off_wrapped_faces_across_chunks_read_as_one_chunk(tmp_path, monkeypatch):
    """Items cut by a chunk's end are carried over: tiny chunks give what one chunk gives."""
    points, quads = grid(6)
    text = wrapped_off(points, quads, every=3)
    path = write(tmp_path / "wrapped.off", text)
    whole = read_shape(path)
    monkeypatch.setattr(meshes, "_CHUNK_BYTES", 16)
    pieces = read_shape(path)
    np.testing.assert_array_equal(pieces.points, whole.points)
    np.testing.assert_array_equal(pieces.faces, whole.faces)
    vertices, faces = reference_off(text)
    assert faces == quads and np.array_equal(whole.points, vertices)


def test_off_one_long_face_wrapped_across_chunks(tmp_path, monkeypatch):
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    points = np.stack([np.cos(angles), np.sin(angles), np.zeros(40)], axis=1)
    text = wrapped_off(points, [list(range(40))])
    monkeypatch.setattr(meshes, "_CHUNK_BYTES", 16)
    shape = read_shape(write(tmp_path / "disc.off", text))
    assert len(shape.faces) == 38
    assert area(shape.points, shape.faces) == pytest.approx(20 * np.sin(2 * np.pi / 40))  # the polygon's


def test_off_text_after_the_last_wrapped_face_is_not_read(tmp_path):
    points, quads = grid(2)
    text = wrapped_off(points, quads) + "these words are not numbers\n"
    shape = read_shape(write(tmp_path / "tail.off", text))
    assert len(shape.faces) == 8 and area(shape.points, shape.faces) == pytest.approx(4.0)
    needed = text.replace("\n5 \n", "\nfive \n", 1)  # an index of a wrapped face
    with pytest.raises(ShapeError, match=r"tail\.off: OFF data: a value is not a number"):
        read_shape(write(tmp_path / "tail.off", needed))


def test_off_wrapped_faces_cut_off_or_malformed_are_refused(tmp_path):
    points, quads = grid(2)
    text = wrapped_off(points, quads)
    cut = text[: text.rindex("\n", 0, len(text) - 3)] + "\n"  # the last index gone, the lines still enough
    message = ("cut.off: truncated OFF file: the header promises 9 vertices and 4 faces but the file holds "
               "only 9 vertices and 3 faces (its rows do not line up")
    with pytest.raises(ShapeError, match=re.escape(message)):
        read_shape(write(tmp_path / "cut.off", cut))
    with pytest.raises(ShapeError, match="faces need at least 3"):
        read_shape(write(tmp_path / "two.off", text.replace("\n4 ", "\n2 ", 1)))
    with pytest.raises(ShapeError, match="must be integers"):
        read_shape(write(tmp_path / "frac.off", text.replace("\n4 ", "\n4.5 ", 1)))
    with pytest.raises(ShapeError, match=r"vertex 99, but the file has 9"):
        read_shape(write(tmp_path / "range.off", text.replace("\n4 \n", "\n99 \n", 1)))


def test_off_wrapped_faces_keep_the_limits(tmp_path, monkeypatch):
    points, quads = grid(2)
    path = write(tmp_path / "wrapped.off", wrapped_off(points, quads))
    with pytest.raises(ShapeError, match=r"over the memory limit of 1e-06 GiB"):
        read_shape(path, max_gib=1e-6)
    monkeypatch.setattr(checks, "MAX_FACES", 3)
    with pytest.raises(ShapeError, match=r"4 faces, over the limit of 3 \(MAX_FACES\)"):
        read_shape(path)


# ----------------------------------------------------------------------------------------------------------
# Binary OFF
# ----------------------------------------------------------------------------------------------------------


def binary_off(points: np.ndarray, faces: list[list[int]], order: str, colours: bool, keyword: str = "OFF",
               extra: int = 0) -> bytes:
    """``OFF BINARY`` as Geomview (``order`` ">", a colour count and that many floats after each face: here
    0 to 4 of them) or pmp-library (``order`` "<", no colours) writes it; ``extra`` float32 after each
    vertex's x y z (a normal, ...)."""
    out = [f"{keyword} BINARY\n".encode(), struct.pack(order + "3i", len(points), len(faces), 0)]
    out += [struct.pack(f"{order}{3 + extra}f", *p, *range(extra)) for p in points.tolist()]
    for number, face in enumerate(faces):
        out.append(struct.pack(f"{order}{1 + len(face)}i", len(face), *face))
        if colours:
            colour = [0.25] * (number % 5)
            out.append(struct.pack(f"{order}i{len(colour)}f", len(colour), *colour))
    return b"".join(out)


def reference_binary_off(data: bytes, order: str, colours: bool, extra: int = 0):
    """Brute force: the vertices and faces of :func:`binary_off`'s layout, read value by value."""
    at = data.index(b"\n") + 1
    num_vertices, num_faces, _ = struct.unpack_from(order + "3i", data, at)
    at += 12
    width = 3 + extra
    values = struct.unpack_from(f"{order}{width * num_vertices}f", data, at)
    points = np.array(values).reshape(-1, width)[:, :3]
    at += 4 * width * num_vertices
    faces = []
    for _ in range(num_faces):
        (size,) = struct.unpack_from(order + "i", data, at)
        faces.append(list(struct.unpack_from(f"{order}{size}i", data, at + 4)))
        at += 4 + 4 * size
        if colours:
            at += 4 + 4 * struct.unpack_from(order + "i", data, at)[0]
    assert at == len(data)
    return points, faces


LAYOUTS = {"geomview": (">", True), "pmp": ("<", False), "le-colours": ("<", True), "be-plain": (">", False)}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("mixed", [False, True], ids=["triangles", "triangles-and-quads"])
def test_binary_off_layouts(tmp_path, layout, mixed):
    points, quads = grid()
    triangles = triangles_of(quads)
    faces = quads[:5] + triangles[10:] if mixed else triangles
    data = binary_off(points, faces, *layout)
    shape = read_shape(write(tmp_path / "b.off", data))
    vertices, expected = reference_binary_off(data, *layout)
    assert expected == faces
    np.testing.assert_array_equal(shape.points, vertices)
    np.testing.assert_array_equal(shape.points, points)
    assert len(shape.faces) == sum(len(f) - 2 for f in faces)
    assert area(shape.points, shape.faces) == pytest.approx(16.0)
    if not mixed:
        assert rows(shape.faces) == rows(faces)


def test_binary_off_vertices_with_normals_and_a_cloud(tmp_path):
    points, quads = grid(2)
    data = binary_off(points, triangles_of(quads), ">", True, keyword="NOFF", extra=3)
    shape = read_shape(write(tmp_path / "n.off", data))
    np.testing.assert_array_equal(shape.points, reference_binary_off(data, ">", True, extra=3)[0])
    assert rows(shape.faces) == rows(triangles_of(quads))
    cloud = np.random.default_rng(0).random((20, 3)).astype(np.float32).astype(np.float64)
    shape = read_shape(write(tmp_path / "cloud.off", binary_off(cloud, [], "<", False)))
    assert shape.faces is None and np.array_equal(shape.points, cloud)


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_binary_off_cut_off_or_lying_is_refused(tmp_path, layout):
    points, quads = grid(2)
    data = binary_off(points, quads[:1] + triangles_of(quads[1:]), *layout)
    for end in (len(data) - 1, len(data) - 4, len(data) // 2, 30):
        with pytest.raises(ShapeError, match=r"b\.off: binary OFF: its data fits its counts in neither"):
            read_shape(write(tmp_path / "b.off", data[:end]))
    order = layout[0]
    lying = data.replace(struct.pack(order + "3i", 9, 7, 0), struct.pack(order + "3i", 10**9, 10**9, 0), 1)
    with pytest.raises(ShapeError, match=r"b\.off: binary OFF"):
        read_shape(write(tmp_path / "b.off", lying))


def test_binary_off_keeps_the_limits(tmp_path, monkeypatch):
    points, quads = grid(2)
    path = write(tmp_path / "b.off", binary_off(points, quads, ">", True))
    with pytest.raises(ShapeError, match=r"b\.off: .*over the memory limit of 1e-06 GiB"):
        read_shape(path, max_gib=1e-6)
    with pytest.raises(ShapeError, match=r"c\.off: a face has 2 vertex indices"):
        read_shape(write(tmp_path / "c.off", binary_off(points, [[0, 1], [0, 1, 2]], ">", True)))
    with pytest.raises(ShapeError, match=r"c\.off: .*vertex 9, but the file has 9"):
        read_shape(write(tmp_path / "c.off", binary_off(points, [[0, 1, 9]], "<", False)))
    with pytest.raises(ShapeError, match=r"c\.off: binary OFF of homogeneous .*\('4OFF'\) is not supported"):
        read_shape(write(tmp_path / "c.off", binary_off(points, [], ">", True, keyword="4OFF", extra=1)))
    monkeypatch.setattr(checks, "MAX_FACES", 3)
    with pytest.raises(ShapeError, match=r"4 faces, over the limit of 3 \(MAX_FACES\)"):
        read_shape(path)


# ----------------------------------------------------------------------------------------------------------
# OBJ faces of fewer than 3 indices, an empty binary STL
# ----------------------------------------------------------------------------------------------------------


OBJ = "mtllib surface.mtl\n\no surface\nv -5 0 5\nv 5 0 5\nv 5 5 5\nusemtl m\ns 1\n{face}\nf 1// 2// 3//\n"


@pytest.mark.parametrize("face", ["f 1// 2//", "f", "f 1 2", "f\t2/1/1 3/1/1 "])
def test_obj_face_of_fewer_than_3_indices_names_its_line(tmp_path, face):
    message = f"a.obj: line 9: a face needs at least 3 vertex indices, got {face.strip()!r}"
    with pytest.raises(ShapeError, match=re.escape(message)):
        read_shape(write(tmp_path / "a.obj", OBJ.format(face=face)))


def test_obj_short_face_in_a_later_chunk_names_its_line(tmp_path, monkeypatch):
    good = "v 0 0 0\nv 1 0 0\nv 0 1 0\n" + "f 1 2 3\n" * 200
    monkeypatch.setattr(meshes, "_CHUNK_BYTES", 64)
    assert len(read_shape(write(tmp_path / "a.obj", good)).faces) == 200
    with pytest.raises(ShapeError, match=r"line 204: a face needs at least 3 vertex indices, got 'f 3 1'"):
        read_shape(write(tmp_path / "a.obj", good + "f 3 1\n" + "f 1 2 3\n" * 10))


def test_empty_binary_stl_says_it_holds_no_triangles(tmp_path):
    path = write(tmp_path / "empty.stl", b"\0" * 80 + struct.pack("<I", 0))
    with pytest.raises(ShapeError, match=r"empty\.stl: the binary STL file holds no triangles"):
        read_shape(path)
    with pytest.raises(ShapeError, match=r"empty\.stl: truncated binary STL file: the header promises 1 tri"):
        read_shape(write(path, b"\0" * 80 + struct.pack("<I", 1) + b"\0" * 20))
