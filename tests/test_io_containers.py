"""GLB / glTF, PCD and archive files that lie about their layout or imply far more memory than they take on
disk (built by tests/hostile_containers.py): each must end in a ShapeError saying what is wrong, quickly,
without allocating what it implies."""

from __future__ import annotations

import gzip
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from helpers import read_in_child
from hostile_containers import (
    CASES,
    build_bz2_bomb,
    build_glb_buffer_lie,
    build_glb_count_lie,
    build_glb_instancing,
    build_glb_node_cycle,
    build_glb_node_dag,
    build_glb_sparse,
    build_glb_stride_lie,
    build_glb_unused_accessors,
    build_glb_view_past_buffer,
    build_glb_zero_accessors,
    build_gltf_data_uri_lie,
    build_gltf_json_bomb_gz,
    build_gz_bomb,
    build_pcd_ascii_wide_gz,
    build_pcd_lzf_bomb,
    build_zip_bomb,
    build_zip_control_names,
    build_zip_many_entries,
    build_zip_traversal,
    glb_bytes,
    mesh_document,
    placed_once,
    zip_of,
)

from i2pmae import io as shape_io
from i2pmae.io import ShapeError, read_shape
from i2pmae.io.source import printable

MEMORY_LIMIT = "over the memory limit of 0.25 GiB per file"
CUBE_OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"


def refused(path: Path, expected: str, max_gib: float = 0.25) -> str:
    """The one-line ShapeError message of reading ``path``, which must match ``expected``."""
    with pytest.raises(ShapeError, match=expected) as info:
        read_shape(path, max_gib=max_gib)
    message = str(info.value)
    assert message.startswith(f"{path.name}: ") and "\n" not in message and "\x1b" not in message
    return message


def write_glb(path: Path, document: dict, binary: bytes) -> Path:
    path.write_bytes(glb_bytes(document, binary))
    return path


# ----------------------------------------------------------------------------------------------------------
# GLB / glTF: layouts that lie (trimesh asserted, or read garbage)
# ----------------------------------------------------------------------------------------------------------

LIES = {
    "buffer": (build_glb_buffer_lie, "buffer 0 declares 1,073,741,824 bytes, but the BIN chunk holds 1,152$"),
    "view": (
        build_glb_view_past_buffer,
        r"bufferView 0 \(bytes 0 to 1,073,741,824\) runs past the end of buffer 0 \(1,152 bytes\)$",
    ),
    "stride": (build_glb_stride_lie, "accessor 0 has 12-byte elements, but bufferView 0's byteStride is 4"),
    "count": (
        build_glb_count_lie,
        r"accessor 0 \(4,000,000 elements of 12 bytes, 12 apart, from byte 0\) needs 48,000,000 bytes, "
        "but bufferView 0 holds 768$",
    ),
    "data-uri": (build_gltf_data_uri_lie, "buffer 0 declares 1,073,741,824 bytes, but its embedded data"),
    "sparse": (build_glb_sparse, r"accessor 0 \(the POSITION of mesh 0\) is sparse, which is not supported"),
    "bufferless": (build_glb_zero_accessors, r"accessor 0 \(the POSITION of mesh 0\) has no bufferView"),
    "cycle": (build_glb_node_cycle, "the node graph has a cycle: node 0 is its own descendant"),
}


@pytest.mark.parametrize(("build", "expected"), LIES.values(), ids=LIES.keys())
def test_glb_layout_lies_are_named(tmp_path, build, expected):
    refused(build(tmp_path), expected, max_gib=2.0)


def damaged(document: dict, rng: np.random.Generator) -> dict:
    """``document`` with one value somewhere inside replaced by a value of another type or size."""
    document = json.loads(json.dumps(document))
    parent = document
    while True:  # down to a random value: a leaf, an empty container, or a container picked on the way
        key = list(parent)[int(rng.integers(len(parent)))] if isinstance(parent, dict) else int(
            rng.integers(len(parent))
        )
        child = parent[key]
        if not isinstance(child, (dict, list)) or not child or rng.random() < 0.3:
            break
        parent = child
    replacements = [-1, 0, 7, 2**40, 1.5, "x", None, True, [], {}, [0, 0], {"a": 1}]
    parent[key] = replacements[int(rng.integers(len(replacements)))]
    return document


def test_damaged_glb_json_gives_shape_errors_only(tmp_path):
    """Random values of the wrong type or size anywhere in the JSON: a ShapeError or a read, nothing else."""
    document, binary = placed_once()
    rng = np.random.default_rng(0)
    for i in range(300):
        path = write_glb(tmp_path / f"d{i}.glb", damaged(document, rng), binary)
        try:
            read_shape(path, max_gib=0.25)
        except ShapeError as err:
            assert "\n" not in str(err)


# ----------------------------------------------------------------------------------------------------------
# GLB / glTF: memory claimed before trimesh runs
# ----------------------------------------------------------------------------------------------------------


def test_instancing_is_refused_before_trimesh_runs(tmp_path, monkeypatch):
    path = build_glb_instancing(tmp_path)
    monkeypatch.setattr(trimesh, "load_scene", lambda *a, **k: pytest.fail("trimesh was called"))
    message = refused(path, r"placing the scene's meshes \(500,000,000 vertices in all\) would take")
    assert MEMORY_LIMIT in message
    refused(path, "over the memory limit of 2 GiB", max_gib=2.0)  # the default; 500 M vertices are 28 GiB


def test_node_paths_are_counted_not_nodes(tmp_path):
    """Two nodes per level, each a child of both above: 2^40 paths; trimesh keeps one parent per node."""
    refused(build_glb_node_dag(tmp_path), r"\(1,099,511,627,776,000 vertices in all\).*" + MEMORY_LIMIT)


def test_a_small_node_dag_is_read(tmp_path):
    document, binary = mesh_document(64, 32)
    document["nodes"] = [{"children": [2, 2]}, {"children": [2]}, {"mesh": 0, "translation": [1, 0, 0]}]
    document["scenes"][0]["nodes"] = [0, 1]
    shape = read_shape(write_glb(tmp_path / "dag.glb", document, binary), max_gib=0.25)
    assert len(shape.points) == 64  # trimesh places node 2 once


def test_hierarchy_depth_is_bounded(tmp_path):
    document, binary = mesh_document(64, 32)
    document["nodes"] = [{"children": [i + 1]} for i in range(300)] + [{"mesh": 0}]
    document["scenes"][0]["nodes"] = [0]
    refused(write_glb(tmp_path / "deep.glb", document, binary), "more than 256 levels deep")


def test_node_paths_are_bounded(tmp_path):
    document, binary = mesh_document(64, 32)
    document["nodes"] = [{"children": [1] * 1000}, {"children": [2] * 300}, {}]
    document["scenes"][0]["nodes"] = [0]
    path = write_glb(tmp_path / "wide.glb", document, binary)
    refused(path, r"places 301,001 nodes .* over the limit of 200,000", max_gib=2.0)


def test_placed_vertices_are_counted_before_trimesh_runs(tmp_path, monkeypatch):
    document, binary = mesh_document(64, 32)
    document["nodes"] = [{"mesh": 0} for _ in range(20)]
    document["scenes"][0]["nodes"] = list(range(20))
    path = write_glb(tmp_path / "many.glb", document, binary)
    monkeypatch.setattr(shape_io.checks, "MAX_POINTS", 1000)
    monkeypatch.setattr(trimesh, "load_scene", lambda *a, **k: pytest.fail("trimesh was called"))
    refused(path, r"1,280 vertices, over the limit of 1,000 \(MAX_POINTS\)")


def test_bufferless_accessors_are_counted(tmp_path):
    message = refused(build_glb_unused_accessors(tmp_path), "the glTF accessors' arrays would take")
    assert MEMORY_LIMIT in message


def test_json_is_claimed_before_it_is_parsed(tmp_path):
    refused(build_gltf_json_bomb_gz(tmp_path), "the glTF JSON once parsed would take .*" + MEMORY_LIMIT)


def test_placed_copies_match_trimesh(tmp_path):
    """Nested nodes with rotations, scales and translations place every copy where trimesh puts it."""
    document, binary = mesh_document(50, 40)
    document["nodes"] = [
        {"children": [1, 2], "rotation": [0, 0.6, 0, 0.8], "translation": [1, 2, 3]},
        {"mesh": 0, "scale": [2, 1, 0.5]},
        {"mesh": 0, "matrix": [0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1, 0, 5, 0, 0, 1]},
    ]
    document["scenes"][0]["nodes"] = [0]
    path = write_glb(tmp_path / "nested.glb", document, binary)
    shape = read_shape(path)
    expected = trimesh.load_scene(str(path)).to_mesh()
    order = np.lexsort(shape.points.T)
    np.testing.assert_allclose(shape.points[order], expected.vertices[np.lexsort(expected.vertices.T)],
                               atol=1e-12)  # fmt: skip
    first = np.arange(40) % 48  # mesh_document's triangles (i, i+1, i+2), then the second copy's
    np.testing.assert_array_equal(shape.faces[:, 0], np.concatenate([first, first + 50]))


def test_external_buffers_of_a_glb_are_refused(tmp_path):
    document, binary = placed_once()
    document["buffers"][0]["uri"] = "../../etc/passwd"
    refused(write_glb(tmp_path / "ext.glb", document, binary), r"the GLB file refers to other files \(\.\./")


# ----------------------------------------------------------------------------------------------------------
# PCD
# ----------------------------------------------------------------------------------------------------------


def test_lzf_size_is_claimed_before_decompressing(tmp_path, monkeypatch):
    path = build_pcd_lzf_bomb(tmp_path)
    monkeypatch.setattr(shape_io.pcd, "_lzf_decompress", lambda *a: pytest.fail("decompressed"))
    refused(path, r"decompressing the PCD data would take 1.9 GiB.*" + MEMORY_LIMIT)
    refused(path, "over the memory limit of 2 GiB", max_gib=2.0)


def test_ascii_table_is_claimed_before_parsing(tmp_path, monkeypatch):
    path = build_pcd_ascii_wide_gz(tmp_path)
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("parsed"))
    refused(path, "the PCD table would take 256.3 MiB.*" + MEMORY_LIMIT)


def test_ascii_rows_wider_than_the_fields_are_refused_before_parsing(tmp_path, monkeypatch):
    header = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\n"
    path = tmp_path / "wide.pcd"
    path.write_text(header + "# a comment\n\n1 2 3 4 5\n6 7 8 9 10\n")
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("parsed"))
    refused(path, "PCD data rows hold 5 values; the header's fields need 3$")


def test_one_endless_ascii_row_is_claimed_by_its_bytes(tmp_path, monkeypatch):
    """A first row too long to count: the table is bounded by one value per two bytes."""
    header = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n"
    path = tmp_path / "row.pcd.gz"
    path.write_bytes(gzip.compress(header.encode() + b"0 " * 10_000_000 + b"\n"))
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("parsed"))
    refused(path, r"the PCD table would take 76\.3 MiB", max_gib=0.05)


def test_binary_points_are_claimed(tmp_path):
    points = 100_000
    header = f"FIELDS x y z\nSIZE 1 1 1\nTYPE I I I\nWIDTH {points}\nPOINTS {points}\nDATA binary\n"
    path = tmp_path / "bytes.pcd"
    path.write_bytes(header.encode() + (np.arange(3 * points) % 251).astype(np.uint8).tobytes())
    refused(path, r"the PCD points would take 4\.6 MiB", max_gib=4 / 1024)


# ----------------------------------------------------------------------------------------------------------
# Archives
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "stream"), [(build_gz_bomb, "gzip"), (build_bz2_bomb, "bzip2")])
def test_decompressed_bytes_are_claimed_as_they_come(tmp_path, build, stream):
    path = build(tmp_path)
    expected = rf"decompressing the {stream} data would take 1.0 MiB, which brings this file to "
    refused(path, expected + r"5\d.\d MiB, over the memory limit of 0.05 GiB", max_gib=0.05)


def test_zip_member_bytes_are_claimed_as_they_come(tmp_path):
    expected = r"decompressing 'bomb.ply' in the zip archive would take 1.0 MiB, which brings this file to "
    refused(build_zip_bomb(tmp_path), expected + r"10\d.\d MiB, over the memory limit of 0.1 GiB", 0.1)


def test_file_bytes_are_claimed(tmp_path):
    path = tmp_path / "big.xyz"
    path.write_bytes(b"0 0 0\n" * 400_000)
    refused(path, r"the file would take 2.3 MiB, which brings this file to 2.3 MiB, over the memory limit",
            max_gib=2 / 1024)  # fmt: skip


def test_zip_directory_size_is_bounded(tmp_path):
    path = build_zip_many_entries(tmp_path, 20_000)
    refused(path, "the zip archive lists 20,000 entries, over the limit of 10,000$")


@pytest.mark.parametrize(
    "name", ["../evil.ply", "/abs/evil.ply", "a/../../evil.ply", "..\\evil.ply", "a\\..\\..\\evil.ply",
             "\\evil.ply", "C:\\evil.ply", "C:evil.ply", "..", "../a/.hidden.ply"],
)  # fmt: skip
def test_unsafe_zip_member_names(tmp_path, name):
    path = zip_of(tmp_path, "unsafe.zip", {name: b"ply\n", "cube.obj": CUBE_OBJ})
    shown = printable(name).replace("\\", r"\\")  # as a regular expression
    refused(path, r"the zip archive holds a member with an unsafe name \('" + shown)


def test_traversal_member_alone(tmp_path):
    refused(build_zip_traversal(tmp_path), r"unsafe name \('\.\./evil\.ply': it points outside the folder")


def test_zip_member_names_are_escaped_in_messages(tmp_path):
    message = refused(build_zip_control_names(tmp_path), "2 shape files")
    assert r"(a\n\x1b[31mred.ply, b\x1b[2J.obj)" in message


def test_zip_member_names_are_escaped_in_notes(tmp_path):
    path = zip_of(tmp_path, "notes.zip", {"c\x1b]0;pwned\x07ube.obj": CUBE_OBJ, "read\nme.md": b"hi"})
    shape = read_shape(path)
    assert shape.notes == (r"read c\x1b]0;pwned\x07ube.obj from the zip archive (ignored 1 other file(s): "
                           r"read\nme.md)",)  # fmt: skip


def test_zip_member_errors_name_the_member_escaped(tmp_path):
    path = zip_of(tmp_path, "bad.zip", {"e\x1b[0mmpty.obj": b""})
    refused(path, r"'e\\x1b\[0mmpty.obj' in the zip archive is empty")


def test_printable():
    assert printable("a\n\x1b[1m\u202e\t.ply") == r"a\n\x1b[1m\u202e\t.ply"
    assert printable("chaise longue é.ply") == "chaise longue é.ply"


def test_small_archives_still_read(tmp_path):
    """The pieces and claims do not change what a valid archive gives."""
    path = tmp_path / "cube.obj.gz"
    path.write_bytes(gzip.compress(CUBE_OBJ))
    assert len(read_shape(path, max_gib=0.01).faces) == 4
    with zipfile.ZipFile(tmp_path / "cube.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("models/cube.obj", CUBE_OBJ)
    shape = read_shape(tmp_path / "cube.zip", max_gib=0.01)
    assert shape.notes == ("read models/cube.obj from the zip archive",)


# ----------------------------------------------------------------------------------------------------------
# Peak memory of the worst cases, each read in a fresh interpreter
# ----------------------------------------------------------------------------------------------------------

WORST = {
    "glb, 5000 instances": "placing the scene's meshes",
    "gltf.gz, JSON bomb": "the glTF JSON once parsed",
    "pcd, LZF bomb": "decompressing the PCD data",
    "pcd.gz, wide ASCII rows": "the PCD table",
    "ply.gz, 1 GiB of zeros": "decompressing the gzip data",
    "zip, 1 M entries": "lists 1,000,000 entries",
}


@pytest.mark.slow
@pytest.mark.parametrize(("case", "expected"), WORST.items(), ids=WORST.keys())
def test_peak_memory_of_the_worst_cases(tmp_path, case, expected):
    path = CASES[case][0](tmp_path)
    result = read_in_child(path, max_gib=0.25)
    assert result["outcome"].startswith(f"ShapeError: {path.name}: ") and expected in result["outcome"]
    assert result["growth"] < 0.25 * 2**30 + 150 * 2**20, f"{case}: {result['growth'] / 2**20:.0f} MiB"


def test_every_case_is_built_quickly(tmp_path):
    """The benchmark imports CASES: every builder runs, writes one file and says what it implies."""
    for i, (build, implies) in enumerate(CASES.values()):
        folder = tmp_path / str(i)
        folder.mkdir()
        path = build(folder)
        assert path.is_file() and path.parent == folder and implies
        path.unlink()


def test_glb_chunk_layout_damage(tmp_path):
    document, binary = placed_once()
    data = glb_bytes(document, binary)
    length = struct.unpack_from("<I", data, 12)[0]
    cut = data[: 20 + length + 4]  # the BIN chunk's header cut in half
    refused(write_bytes(tmp_path / "cut.glb", cut[:8] + struct.pack("<I", len(cut)) + cut[12:]),
            "a chunk header is cut off")  # fmt: skip
    two = data + struct.pack("<I4s", 4, b"BIN\0") + bytes(4)
    refused(write_bytes(tmp_path / "two.glb", two[:8] + struct.pack("<I", len(two)) + two[12:]),
            "the GLB file has 2 BIN chunks")  # fmt: skip


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
