"""Text shape files (XYZ / TXT, OBJ, OFF, ASCII STL) are bounded while they are read, not after.

Hostile files (tests/hostile_text.py: small on disk, huge in what they imply) end in a clear ShapeError
within the memory limit, measured in a child process; files are refused from counts on their bytes before a
line is parsed; what real exporters write (Latin-1 names, a byte-order mark, several STL solids) reads; and
the chunked, vectorised readers read exactly what the line-by-line reader and independent references read.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import hostile_text
import numpy as np
import pytest
import trimesh
from helpers import reads_in_child

from i2pmae.io import ShapeError, checks, meshes, read_shape, tables

ASSETS = Path(__file__).resolve().parent.parent / "assets"
GIB, MIB = 2**30, 2**20
LIMIT_GIB = 0.25  # the budget the hostile files are read with
SLACK = 150 * MIB  # allocator and interpreter noise on top of the budget

# What each hostile file ends in, read with max_gib=0.25.
HOSTILE = {
    "xyz.gz, 40 M lines": r"40,000,000 points, over the limit of 5,000,000 \(MAX_POINTS\)",
    "xyz.gz, 3 M rows of 40 columns": r"a table of 3,000,000 rows and 40 columns would take .* limit of 0.25",
    "obj.gz, 30 M faces": r"30,000,000 faces, over the limit of [\d,]+ \(MAX_FACES\)",
    "obj.gz, 26 M triangles and quads": r"26,000,000 faces, over the limit of [\d,]+ \(MAX_FACES\)",
    "obj.gz, 30 M vertices": r"30,000,000 vertices, over the limit of 5,000,000 \(MAX_POINTS\)",
    "obj.gz, one 10 M-index face": r"parsing a line of 19.1 MiB would take .* memory limit of 0.25",
    "off.gz, 4 M vertices and 28 M faces": r"28,000,000 faces, over the limit of [\d,]+ \(MAX_FACES\)",
    "off.gz, 2 G faces declared": r"2,000,000,000 faces, over the limit of [\d,]+ \(MAX_FACES\)",
    "stl.gz, 20 M vertex lines": r"20,100,000 vertices, over the limit of 5,000,000 \(MAX_POINTS\)",
    "stl.gz, 1.6 M facets": r"the STL vertices and faces would take .* memory limit of 0.25",
}
# Read with the default budget too: refused for its size, before its 10 M indices are parsed.
POLYGON_AT_DEFAULT = (
    "obj.gz, one 10 M-index face",
    r"a face has 10,000,000 vertex indices, over the limit of [\d,]+ per face \(MAX_POLYGON_VERTICES\)",
)

def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def outcome(path: Path):
    """What read_shape makes of a file: (points, faces, notes) as lists, or the error message."""
    try:
        shape = read_shape(path)
    except ShapeError as err:
        return str(err)
    return shape.points.tolist(), None if shape.faces is None else shape.faces.tolist(), shape.notes


def rows(array) -> list[tuple]:
    return sorted(map(tuple, np.asarray(array).tolist()))


def triangle_keys(points: np.ndarray, faces: np.ndarray) -> list[tuple]:
    """Each triangle as its sorted corners (rounded): comparable across vertex orders and numbering."""
    corners = np.round(points[faces], 6).tolist()  # (F, 3 corners, 3)
    return sorted(tuple(sorted(map(tuple, triangle))) for triangle in corners)


# ----------------------------------------------------------------------------------------------------------
# Hostile files: a ShapeError within the memory limit and a few seconds (in a child process)
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_reads(tmp_path_factory) -> dict[tuple[str, float], dict]:
    """(case, max_gib) -> {"outcome", "seconds", "growth"}, the hostile files read in child processes."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak resident memory is measured with Linux's /proc/self/clear_refs")
    folder = tmp_path_factory.mktemp("hostile_text")
    paths = {name: hostile_text.CASES[name][0](folder) for name in [*HOSTILE, POLYGON_AT_DEFAULT[0]]}
    limited = reads_in_child([paths[name] for name in HOSTILE], LIMIT_GIB)
    (default,) = reads_in_child([paths[POLYGON_AT_DEFAULT[0]]], checks.MAX_GIB)
    return {**{(name, LIMIT_GIB): read for name, read in zip(HOSTILE, limited, strict=True)},
            (POLYGON_AT_DEFAULT[0], checks.MAX_GIB): default}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_text_is_refused_within_the_memory_limit(hostile_reads, name):
    read = hostile_reads[name, LIMIT_GIB]
    assert re.search(HOSTILE[name], read["outcome"]), read["outcome"]
    assert read["outcome"].startswith(f"ShapeError: {Path(read['path']).name}: ")
    assert read["growth"] < LIMIT_GIB * GIB + SLACK, f"peak grew by {read['growth'] / MIB:.0f} MiB"


def test_a_face_of_10_m_indices_is_refused_before_it_is_parsed(hostile_reads):
    name, expected = POLYGON_AT_DEFAULT
    read = hostile_reads[name, checks.MAX_GIB]
    assert re.search(f"^ShapeError: .*{expected}", read["outcome"]), read["outcome"]
    assert read["growth"] < 0.5 * GIB


def test_every_case_is_described_and_built_small(tmp_path):
    assert set(HOSTILE) <= set(hostile_text.CASES)
    for name, (build, description) in hostile_text.CASES.items():
        if name not in HOSTILE:  # the large ones are built by the fixture
            assert build(tmp_path).stat().st_size < MIB and description, name


# ----------------------------------------------------------------------------------------------------------
# Refused from counts on the bytes, before numpy parses a line
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_parsing(monkeypatch):
    """numpy's text parser fails the test if it is called: the file must be refused from its counts."""

    def parse(*args, **kwargs):
        raise AssertionError("a line was parsed before the file's counts were checked")

    monkeypatch.setattr(np, "loadtxt", parse)


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setattr(checks, "MAX_POINTS", 100)
    monkeypatch.setattr(checks, "MAX_FACES", 100)


COUNTED = {
    "xyz-rows": ("a.xyz", "x y z\n" + "1 2 3\n" * 101, r"101 points, over the limit of 100 \(MAX_POINTS\)"),
    "obj-vertices": ("a.obj", "v 1 2 3\n" * 101, r"101 vertices, over the limit of 100 \(MAX_POINTS\)"),
    "obj-faces": ("a.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n" + "f 1 2 3\n" * 101, r"101 faces, .*\(MAX_FACES\)"),
    "off-vertices": ("a.off", "OFF\n101 0 0\n", r"101 vertices, over the limit of 100 \(MAX_POINTS\)"),
    "off-faces": ("a.off", "OFF\n3 101 0\n", r"101 faces, over the limit of 100 \(MAX_FACES\)"),
    "off-cut": ("a.off", "OFF\n3 50 0\n0 0 0\n", r"truncated OFF file: .* only 1 lines after the header"),
    "stl-vertices": ("a.stl", "solid s\n" + " vertex 0 0 0\n" * 102, r"102 vertices, .*\(MAX_POINTS\)"),
}


@pytest.mark.usefixtures("no_parsing", "small_limits")
@pytest.mark.parametrize(("name", "text", "expected"), COUNTED.values(), ids=COUNTED.keys())
def test_counts_are_checked_before_any_line_is_parsed(tmp_path, name, text, expected):
    with pytest.raises(ShapeError, match=expected):
        read_shape(write(tmp_path / name, text))


CLAIMED = {
    "xyz-table": ("a.xyz", "1 " * 40 + "\n", 20_000, "a table of 20,000 rows and 40 columns"),
    "obj-faces": ("a.obj", "f 1 2 3\n", 100_000, "the OBJ vertices and faces"),
    "off-faces": ("a.off", "3 0 1 2\n", 100_000, "the OFF vertices and faces"),
    "stl-vertices": ("a.stl", " vertex 0 0 0\n", 81_000, "the STL vertices and faces"),
}


@pytest.mark.usefixtures("no_parsing")
@pytest.mark.parametrize(("name", "row", "count", "what"), CLAIMED.values(), ids=CLAIMED.keys())
def test_arrays_are_claimed_before_any_line_is_parsed(tmp_path, name, row, count, what):
    """A few MB of text whose arrays pass a 4 MiB budget is refused before it is parsed."""
    head = {"a.obj": "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "a.off": f"OFF\n3 {count} 0\n0 0 0\n1 0 0\n0 1 0\n"}
    text = head.get(name, "solid s\n" if name == "a.stl" else "") + row * count
    path = write(tmp_path / name, text + ("endsolid s\n" if name == "a.stl" else ""))
    with pytest.raises(ShapeError, match=f"{what} would take .* memory limit of 0.0039"):
        read_shape(path, max_gib=4 / 1024)


# ----------------------------------------------------------------------------------------------------------
# What real exporters write
# ----------------------------------------------------------------------------------------------------------


def test_obj_with_latin1_names_reads_without_a_note(tmp_path):
    shape = read_shape(hostile_text.build_obj_latin1(tmp_path))
    np.testing.assert_array_equal(shape.points, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert rows(shape.faces) == rows([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    assert shape.notes == ()


@pytest.mark.parametrize("line", [b"v 0 0 \xe9", b"f 1 2 \xe9", b"vt 0 \xe9", b"x\xe9 1", b"v 0 0 1 # \xe9"])
def test_obj_bytes_that_are_not_utf8_outside_names_are_refused(tmp_path, line):
    data = b"usemtl caf\xe9\nv 0 0 0\nv 1 0 0\nv 0 1 0\n" + line + b"\nf 1 2 3\n"
    with pytest.raises(ShapeError, match=r"not a text OBJ file \(bytes that are not UTF-8 on line 5"):
        read_shape(write(tmp_path / "a.obj", data))


def stl_reference(data: bytes) -> np.ndarray:
    """The vertices trimesh reads from each 'solid ... endsolid' block of an ASCII STL, one after another."""
    blocks = re.findall(rb"solid.*?endsolid[^\n]*\n", data, re.DOTALL | re.IGNORECASE)
    meshes_read = [trimesh.exchange.stl.load_stl_ascii(io.BytesIO(block)) for block in blocks]
    return np.concatenate([m["vertices"] for m in meshes_read])


def test_ascii_stl_behind_a_byte_order_mark(tmp_path):
    path = hostile_text.build_stl_bom(tmp_path)
    shape = read_shape(path)
    np.testing.assert_array_equal(shape.points, stl_reference(path.read_bytes()[3:]))
    np.testing.assert_array_equal(shape.faces, np.arange(36).reshape(12, 3))


def test_ascii_stl_of_several_solids_reads_them_all(tmp_path):
    path = hostile_text.build_stl_solids(tmp_path)
    shape = read_shape(path)
    np.testing.assert_array_equal(shape.points, stl_reference(path.read_bytes()))
    assert shape.faces.shape == (36, 3) and np.ptp(shape.points[:, 0]) == 5  # three cubes along x


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (lambda d: d[: d.rindex(b"vertex")], "found 107 'vertex' lines; a triangle needs 3"),
        (lambda d: d.replace(b"      vertex 1 0 0\n", b"", 1), "found 107 'vertex' lines"),  # first solid
        (lambda d: d[: d.rindex(b"endsolid")], "no 'endsolid' after the last facet"),
    ],
    ids=["inside-a-triangle", "a-vertex-lost", "no-endsolid"],
)
def test_cut_ascii_stl_is_refused(tmp_path, cut, expected):
    data = cut(hostile_text.build_stl_solids(tmp_path).read_bytes())
    with pytest.raises(ShapeError, match=expected):
        read_shape(write(tmp_path / "cut.stl", data))


@pytest.mark.parametrize("style", ["plain", "upper-crlf-tabs"])
def test_ascii_stl_reads_what_trimesh_reads(tmp_path, style):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    data = trimesh.exchange.stl.export_stl_ascii(mesh).encode()
    if style != "plain":
        data = data.upper().replace(b"\n", b"\r\n").replace(b"  ", b"\t")
    shape = read_shape(write(tmp_path / "a.stl", data))
    np.testing.assert_array_equal(shape.points, stl_reference(data))


# ----------------------------------------------------------------------------------------------------------
# Chunked, vectorised reading reads what the line-by-line reader and the references read
# ----------------------------------------------------------------------------------------------------------


def random_obj(rng: random.Random) -> str:
    """An OBJ of interleaved statements: 1-based and negative indices, i/t/n forms, polygons of 3 to 5
    corners, comments, names, indentation, tabs, continuations and any line break; now and then a bad line."""
    lines, count = [], 0
    for _ in range(rng.randint(5, 60)):
        gap, lead, kind = rng.choice([" ", "\t", "  "]), rng.choice(["", "", " ", "\t"]), rng.random()
        if kind < 0.35:
            values = [f"{rng.uniform(-5, 5):.3f}" for _ in range(rng.choice([3, 3, 4, 6]))]
            line, count = lead + "v" + gap + gap.join(values), count + 1
        elif kind < 0.7 and count >= 3:
            picks = [rng.randint(1, count) for _ in range(rng.choice([3, 3, 4, 5]))]
            picks = [i if rng.random() < 0.7 else i - count - 1 for i in picks]  # some counted back
            words = (rng.choice(["{}", "{}/1", "{}//2", "{}/3/4"]).format(i) for i in picks)
            line = lead + "f" + gap + gap.join(words)
        else:
            line = rng.choice(["# a comment", "vt 0.5 0.5", "vn 0 0 1", "g part", "usemtl red", "s off", ""])
        if rng.random() < 0.05 and " " in line:
            line = line.replace(" ", " \\\n", 1)  # continued on the next line
        lines.append(line)
    if rng.random() < 0.1:
        bad = ["v", "f", "f 0 1 2", "v 1 2", "f 1 x 2", "v 1 2 abc", "f 1 2 3 # c", "f /2 1 2"]
        lines.insert(rng.randrange(len(lines)), rng.choice(bad))
    eol = rng.choice(["\n", "\n", "\r\n", "\r"])
    return eol.join(lines) + rng.choice([eol, ""])


def test_obj_chunks_and_fast_path_agree_with_the_line_by_line_reader(tmp_path, monkeypatch):
    """Random OBJ files read the same (result or error, line numbers included) in one chunk or in chunks of
    a few bytes, and with the vectorised path or the line-by-line reader alone."""
    rng, path, fast = random.Random(0), tmp_path / "a.obj", meshes._obj_fast
    for _ in range(60):
        write(path, random_obj(rng))
        expected = outcome(path)
        for chunk_bytes, reader in ((1 << 20, None), (13, fast), (13, None)):
            monkeypatch.setattr(meshes, "_CHUNK_BYTES", chunk_bytes)
            monkeypatch.setattr(meshes, "_obj_fast", reader or (lambda chunk: None))
            assert outcome(path) == expected, path.read_text()
        monkeypatch.setattr(meshes, "_CHUNK_BYTES", 1 << 20)
        monkeypatch.setattr(meshes, "_obj_fast", fast)


def test_obj_line_numbers_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(meshes, "_CHUNK_BYTES", 16)
    text = "v 0 0 0\r\n" * 30 + "# \\\r\ng \\\r\n a\r\n" + "f 1 2 3\r\n" * 20 + "v 1 2\r\n"
    with pytest.raises(ShapeError, match="line 54: a vertex needs x y z"):
        read_shape(write(tmp_path / "a.obj", text))


TEXT_ASSETS = (
    "bunny.obj", "chair_0001.off", "chair_0002.off", "chair_0003.off", "bed_0001.xyz", "table_0003.txt",
)


@pytest.mark.parametrize("name", TEXT_ASSETS)
def test_assets_read_the_same_in_tiny_chunks_and_as_the_references(monkeypatch, name):
    path = ASSETS / name
    expected = outcome(path)
    monkeypatch.setattr(meshes, "_CHUNK_BYTES", 4096)
    assert outcome(path) == expected
    shape = read_shape(path)
    if path.suffix in (".xyz", ".txt"):
        delimiter = "," if b"," in path.read_bytes() else None
        np.testing.assert_array_equal(shape.points, np.loadtxt(path, delimiter=delimiter, ndmin=2)[:, :3])
        return
    mesh = trimesh.load(path, process=False, force="mesh")
    assert triangle_keys(shape.points, shape.faces) == triangle_keys(mesh.vertices, mesh.faces)


def test_bunny_reads_the_same_with_the_line_by_line_reader(monkeypatch):
    path = ASSETS / "bunny.obj"
    expected = outcome(path)
    monkeypatch.setattr(meshes, "_obj_fast", lambda chunk: None)
    assert outcome(path) == expected


def test_off_reads_mixed_polygons_and_ignores_what_follows_its_promise(tmp_path, monkeypatch):
    text = (
        "# made by hand\nOFF\n# counts\n5 3 0\n\n0 0 0 # a corner\n1 0 0\n1 1 0\n0 1 0 255 0 0\n2 0 0\n"
        "4 0 1 2 3 0.5 0.5 0.5\n\n3 1 4 2\n3 0 1 4\nnot part of the mesh\n"
    )
    for chunk_bytes in (1 << 20, 7):
        monkeypatch.setattr(meshes, "_CHUNK_BYTES", chunk_bytes)
        shape = read_shape(write(tmp_path / "a.off", text))
        assert rows(shape.faces) == rows([[0, 1, 4], [1, 4, 2], [0, 1, 2], [0, 2, 3]])
        assert shape.points[:, 0].tolist() == [0, 1, 1, 0, 2]


@pytest.mark.parametrize(
    ("encode", "body"),
    [
        (lambda t: t.replace("\n", "\r").encode(), "old-mac"),
        (lambda t: t.replace("\n", "\r\n").encode(), "crlf"),
        (lambda t: b"\xef\xbb\xbf" + t.encode(), "utf-8-bom"),
        (lambda t: t.encode("utf-16"), "utf-16"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_text_clouds_in_any_line_break_and_encoding(tmp_path, encode, body):
    points = np.random.default_rng(1).normal(size=(200, 3))
    text = "// scan\nX;Y;Z\n" + "".join(f"{x!r};{y!r};{z!r}\n" for x, y, z in points.tolist())
    shape = read_shape(write(tmp_path / "a.txt", encode(text)))
    np.testing.assert_array_equal(shape.points, points)
    assert shape.notes == ("skipped the header row 'X;Y;Z'",)


def test_text_cloud_utf8_is_checked_a_slice_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "_UTF8_SLICE", 5)
    rows_text = "".join(f"{i} {i % 7} {i % 5}\n" for i in range(40))
    assert len(read_shape(write(tmp_path / "a.xyz", "# café\n" + rows_text)).points) == 40  # é cut by a slice
    with pytest.raises(ShapeError, match=r"not a text point file \(undecodable bytes at offset 5\)"):
        read_shape(write(tmp_path / "b.xyz", b"# caf\xe9\n" + rows_text.encode()))
