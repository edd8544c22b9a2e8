"""glTF / GLB files as real tools and test suites write them (a sweep of public files found each case): valid
files without a mesh, a byte-order mark, an empty version, glTF 1.0, GLB containers of other versions,
compressed geometry, and fields of the wrong type. Each is built small here, in tmp_path; each refusal must be
one line naming the file and the problem, never an exception's text from inside the parser.
"""

from __future__ import annotations

import base64
import codecs
import copy
import json
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hostile_containers import glb_bytes, placed_once

from i2pmae.io import ShapeError, read_shape

NO_MESH = "the scene holds no mesh with faces and no points"
GLTF1 = "glTF 1.0 is not supported ({why}); convert the file to glTF 2.0"
BOM_NOTE = "ignored the byte-order mark before the glTF JSON (glTF files should not have one)"
VERSION_NOTE = "the file gives no glTF version (asset.version); read it as glTF 2.0"
VERTICES, TRIANGLES = 64, 32  # of placed_once()


# ----------------------------------------------------------------------------------------------------------
# Writing and reading
# ----------------------------------------------------------------------------------------------------------


def glb(document: dict, binary: bytes = b"", *, prefix: bytes = b"", version: int = 2) -> bytes:
    """A GLB container whose JSON chunk starts with ``prefix`` (a byte-order mark), of header ``version``."""
    text = prefix + json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text
    if binary:
        body += struct.pack("<I4s", len(binary), b"BIN\0") + binary + bytes(-len(binary) % 4)
    return struct.pack("<4sII", b"glTF", version, 12 + len(body)) + body


def embedded(document: dict, binary: bytes) -> dict:
    """``document`` as a .gltf holds it: buffer 0 as a base64 data: URI."""
    document = copy.deepcopy(document)
    if binary:
        uri = "data:application/octet-stream;base64," + base64.b64encode(binary).decode()
        document["buffers"][0]["uri"] = uri
    return document


def write(path: Path, document: dict, binary: bytes = b"", prefix: bytes = b"") -> Path:
    """``document`` (and its BIN data) as ``path``, a .glb or a .gltf with embedded buffers."""
    if path.suffix == ".glb":
        path.write_bytes(glb(document, binary, prefix=prefix))
    else:
        path.write_bytes(prefix + json.dumps(embedded(document, binary)).encode())
    return path


def refusal(path: Path) -> str:
    """The message of reading ``path``, after checking it is one line that names the file."""
    with pytest.raises(ShapeError) as info:
        read_shape(path, max_gib=0.25)
    message = str(info.value)
    assert message.startswith(f"{path.name}: ") and "\n" not in message
    return message.removeprefix(f"{path.name}: ")


def assert_mesh(path: Path, vertices: int, triangles: int, notes: tuple[str, ...] = ()) -> None:
    shape = read_shape(path, max_gib=0.25)
    assert shape.points.shape == (vertices, 3) and shape.faces.shape == (triangles, 3)
    assert shape.notes == notes


def valid() -> tuple[dict, bytes]:
    """A mesh of 64 vertices and 32 triangles placed by one node, with the names and node properties real
    exporters write (identity transforms, so the placed vertices are the stored ones)."""
    document, binary = placed_once(VERTICES, TRIANGLES)
    document["meshes"][0]["name"] = "part"
    document["nodes"] = [
        {"name": "root", "children": [1], "translation": [0, 0, 0], "rotation": [0, 0, 0, 1],
         "scale": [1, 1, 1]},
        {"name": "leaf", "mesh": 0, "matrix": np.eye(4).ravel().tolist()},
        {"name": "eye", "camera": 0},
    ]  # fmt: skip
    document["scenes"][0]["nodes"] = [0, 2]
    perspective = {"yfov": 0.7, "znear": 0.1, "aspectRatio": 1.5}
    document["cameras"] = [{"type": "perspective", "perspective": perspective}]
    return document, binary


CONTAINERS = pytest.mark.parametrize("suffix", [".glb", ".gltf"])


# ----------------------------------------------------------------------------------------------------------
# Valid files still read
# ----------------------------------------------------------------------------------------------------------


@CONTAINERS
def test_valid_files_read_with_their_counts(tmp_path, suffix):
    document, binary = valid()
    assert_mesh(write(tmp_path / f"ok{suffix}", document, binary), VERTICES, TRIANGLES)
    twice = copy.deepcopy(document)
    twice["nodes"].append({"mesh": 0, "translation": [5, 0, 0]})
    twice["scenes"][0]["nodes"].append(3)
    assert_mesh(write(tmp_path / f"twice{suffix}", twice, binary), 2 * VERTICES, 2 * TRIANGLES)


@CONTAINERS
@pytest.mark.parametrize(
    "nodes",
    [[{"mesh": 0, "camera": 0}], [{"camera": 0, "children": [1]}, {"mesh": 0}]],
    ids=["camera and mesh", "camera with a child"],
)
def test_meshes_on_camera_nodes_are_placed(tmp_path, suffix, nodes):
    """trimesh skips the first camera node it meets, with its mesh (silently) and its children ("No path
    from world->1!"); the reader hands it the document without the cameras, which place no geometry."""
    document, binary = valid()
    document["nodes"], document["scenes"][0]["nodes"] = nodes, [0]
    assert_mesh(write(tmp_path / f"camera{suffix}", document, binary), VERTICES, TRIANGLES)


def test_point_primitives_still_read_as_a_cloud(tmp_path):
    document, binary = valid()
    primitive = document["meshes"][0]["primitives"][0]
    primitive["mode"] = 0
    del primitive["indices"]
    shape = read_shape(write(tmp_path / "cloud.glb", document, binary), max_gib=0.25)
    assert shape.points.shape == (VERTICES, 3) and shape.faces is None and shape.notes == ()


# ----------------------------------------------------------------------------------------------------------
# Valid files without a mesh (glTF-Validator's buffer_view/valid.gltf, image/valid.glb, ...)
# ----------------------------------------------------------------------------------------------------------


@CONTAINERS
def test_buffers_without_accessors_say_there_is_no_mesh(tmp_path, suffix):
    """trimesh fails on a bufferView with no accessors (KeyError: 'accessors'); the file is valid glTF."""
    document = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 4}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 4, "byteStride": 4, "target": 34962}],
    }
    assert refusal(write(tmp_path / f"views{suffix}", document, bytes(4))) == NO_MESH


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("scenes"),  # a library of meshes: trimesh places none
        lambda d: d.update(scenes=[]),
        lambda d: d["scenes"][0].update(nodes=[]),
        lambda d: d["meshes"][0]["primitives"][0].update(mode=6),  # a fan: trimesh skips it
        lambda d: [d.pop(key) for key in ("meshes", "accessors", "nodes", "scenes")],
    ],
    ids=["no scenes", "empty scenes", "empty scene", "fans only", "images only"],
)
def test_scenes_placing_nothing_say_there_is_no_mesh(tmp_path, change):
    document, binary = valid()
    change(document)
    assert refusal(write(tmp_path / "empty.glb", document, binary)) == NO_MESH


@CONTAINERS
def test_gpu_instancing_is_noted_as_ignored(tmp_path, suffix):
    """EXT_mesh_gpu_instancing places one mesh many times; trimesh reads it once, so the reader says so."""
    document, binary = valid()
    document["nodes"][1]["extensions"] = {"EXT_mesh_gpu_instancing": {"attributes": {}}}
    note = ("ignored the EXT_mesh_gpu_instancing extension of 1 node(s): each of their meshes is read once, "
            "not once per instance")
    assert_mesh(write(tmp_path / f"instanced{suffix}", document, binary), VERTICES, TRIANGLES, (note,))


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(("folder", "bin_name", "uri"), [("", "scene.bin", "scene.bin"),
                                                         ("model/", "my scene.bin", "my%20scene.bin"),
                                                         ("model/", "data/scene.bin", "./data/scene.bin")])
def test_a_zipped_gltf_reads_its_buffers_from_the_archive(tmp_path, folder, bin_name, uri):
    """Sketchfab's downloads: scene.gltf with scene.bin (and textures) beside it in one zip."""
    document, binary = valid()
    document["buffers"][0]["uri"] = uri
    members = {f"{folder}scene.gltf": json.dumps(document).encode(), f"{folder}{bin_name}": binary,
               f"{folder}textures/base.png": b"not read"}
    shape = read_shape(zipped(tmp_path / "download.zip", members), max_gib=0.25)
    assert shape.points.shape == (VERTICES, 3) and shape.faces.shape == (TRIANGLES, 3)
    expected = read_shape(write(tmp_path / "same.glb", valid()[0], binary))
    np.testing.assert_array_equal(shape.points, expected.points)
    assert shape.notes == (f"read {folder}scene.gltf from the zip archive",
                           f"read the glTF file's buffer(s) '{uri}' from the zip archive")


@pytest.mark.parametrize(("uri", "message"), [
    ("missing.bin", "the glTF file refers to 'missing.bin', which the zip archive lacks"),
    ("../../scene.bin", "the glTF file refers to '../../scene.bin', outside the zip archive"),
    ("/etc/passwd", "the glTF file refers to '/etc/passwd', outside the zip archive"),
])
def test_a_zipped_gltf_only_reads_members_of_its_archive(tmp_path, uri, message):
    """model/scene.gltf may refer to ../scene.bin (the archive's root), never to a file beyond it."""
    document, binary = valid()
    document["buffers"][0]["uri"] = uri
    members = {"model/scene.gltf": json.dumps(document).encode(), "scene.bin": binary}
    assert refusal(zipped(tmp_path / "download.zip", members)) == message


def test_a_zipped_buffer_refused_by_the_bounded_reader_keeps_its_own_message(tmp_path):
    """Not wrapped in "cannot be read (...)": an empty member, or one over the memory budget, says so once."""
    document, binary = valid()
    document["buffers"][0]["uri"] = "empty.bin"
    members = {"scene.gltf": json.dumps(document).encode(), "empty.bin": b""}
    assert refusal(zipped(tmp_path / "download.zip", members)) == "'empty.bin' in the zip archive is empty"


def test_a_zipped_buffer_shorter_than_declared_is_refused(tmp_path):
    document, binary = valid()
    document["buffers"][0]["uri"] = "scene.bin"
    members = {"scene.gltf": json.dumps(document).encode(), "scene.bin": binary[:-8]}
    assert "buffer 0 declares" in refusal(zipped(tmp_path / "download.zip", members))


def beside(folder: Path, uri: str, files: dict[str, bytes]) -> Path:
    """scene.gltf naming its buffer by ``uri``, in ``folder`` with ``files`` (relative paths) around it."""
    document, _ = valid()
    document["buffers"][0]["uri"] = uri
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    path = folder / "scene.gltf"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(("bin_name", "uri"), [("scene.bin", "scene.bin"), ("my scene.bin", "my%20scene.bin"),
                                               ("data/scene.bin", "./data/scene.bin")])
def test_a_gltf_reads_its_buffers_from_its_folder(tmp_path, bin_name, uri):
    """The Khronos samples' glTF/ folders, Blender's "glTF Separate": scene.gltf with scene.bin beside it."""
    binary = valid()[1]
    (tmp_path / "model").mkdir()
    shape = read_shape(beside(tmp_path / "model", uri, {bin_name: binary}), max_gib=0.25)
    expected = read_shape(write(tmp_path / "same.glb", valid()[0], binary))
    np.testing.assert_array_equal(shape.points, expected.points)
    np.testing.assert_array_equal(shape.faces, expected.faces)
    assert shape.notes == (f"read the glTF file's buffer(s) '{uri}' from its folder",)


@pytest.mark.parametrize(("uri", "message"), [
    ("missing.bin", "the glTF file refers to 'missing.bin', which is not in its folder"),
    ("../scene.bin", "the glTF file refers to '../scene.bin', outside its folder"),
    ("%2E%2E/scene.bin", "the glTF file refers to '%2E%2E/scene.bin', outside its folder"),
    ("data/../../scene.bin", "the glTF file refers to 'data/../../scene.bin', outside its folder"),
    ("/etc/passwd", "the glTF file refers to '/etc/passwd', outside its folder"),
    ("file:///etc/passwd", "the glTF file refers to 'file:///etc/passwd', outside its folder"),
    ("https://example.com/a.bin", "the glTF file refers to 'https://example.com/a.bin', outside its folder"),
    ("C:/scene.bin", "the glTF file refers to 'C:/scene.bin', outside its folder"),
    ("scene%00.bin", "the glTF file refers to 'scene%00.bin', outside its folder"),
    ("link.bin", "the glTF file refers to 'link.bin', a link leading outside its folder"),
    ("data", "the glTF file's buffer 'data': not a file"),
    ("empty.bin", "the glTF file's buffer 'empty.bin': the file is empty"),
])
def test_a_gltf_reads_no_file_outside_its_folder(tmp_path, uri, message):
    """model/scene.gltf may name a file in model/ or below it, never ../scene.bin, a URL or a link out."""
    (tmp_path / "scene.bin").write_bytes(valid()[1])
    (tmp_path / "model" / "data").mkdir(parents=True)
    (tmp_path / "model" / "empty.bin").touch()
    (tmp_path / "model" / "link.bin").symlink_to(tmp_path / "scene.bin")
    assert refusal(beside(tmp_path / "model", uri, {})) == message


def test_a_gltf_read_alone_refuses_its_buffers(tmp_path):
    """``siblings=False`` (the explorer's uploads): the file is read alone, and says how to send it whole."""
    path = beside(tmp_path, "scene.bin", {"scene.bin": valid()[1]})
    with pytest.raises(ShapeError) as info:
        read_shape(path, siblings=False)
    assert str(info.value) == (
        "scene.gltf: the glTF file refers to other files (scene.bin); save it as .glb, as .gltf with "
        "embedded buffers, or as a .zip holding the .gltf and its files"
    )


def test_a_buffer_beside_the_gltf_shorter_than_declared_is_refused(tmp_path):
    path = beside(tmp_path, "scene.bin", {"scene.bin": valid()[1][:-8]})
    assert "buffer 0 declares" in refusal(path)


def test_a_buffer_beside_the_gltf_counts_against_the_memory_limit(tmp_path):
    """The buffer is claimed, then its base64 copy for trimesh: a file within MAX_FILE_BYTES can still be
    more than the read's budget."""
    document, binary = valid()
    padded = binary + bytes(3 * 2**20)
    document["buffers"][0].update(uri="scene.bin", byteLength=len(padded))
    (tmp_path / "scene.bin").write_bytes(padded)
    (tmp_path / "scene.gltf").write_text(json.dumps(document))
    with pytest.raises(ShapeError, match="memory limit of 0.01 GiB"):
        read_shape(tmp_path / "scene.gltf", max_gib=0.01)


# ----------------------------------------------------------------------------------------------------------
# A byte-order mark (glTF-Validator's json/bom.gltf and glb/bom.glb)
# ----------------------------------------------------------------------------------------------------------


@CONTAINERS
def test_a_utf8_byte_order_mark_is_ignored_with_a_note(tmp_path, suffix):
    """The spec says JSON SHOULD be written without one and defers to RFC 8259 section 8.1, which lets a
    parser ignore it; trimesh's parser refuses it, so the reader hands trimesh a copy without it."""
    document, binary = valid()
    path = write(tmp_path / f"bom{suffix}", document, binary, prefix=codecs.BOM_UTF8)
    assert_mesh(path, VERTICES, TRIANGLES, (BOM_NOTE,))
    meshless = write(tmp_path / f"bare{suffix}", {"asset": {"version": "2.0"}}, prefix=codecs.BOM_UTF8)
    assert refusal(meshless) == NO_MESH


@CONTAINERS
def test_utf16_json_is_refused(tmp_path, suffix):
    document, binary = valid()
    text = json.dumps(embedded(document, binary)).encode("utf-16")  # with its byte-order mark
    path = tmp_path / f"wide{suffix}"
    path.write_bytes(glb({}, prefix=text) if suffix == ".glb" else text)
    expected = "the glTF JSON is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8"
    assert refusal(path) == expected


# ----------------------------------------------------------------------------------------------------------
# asset.version (tinygltf's issue-416.gltf) and glTF 1.0 (assimp's TwoBoxes.gltf, CesiumMilkTruck.gltf)
# ----------------------------------------------------------------------------------------------------------


@CONTAINERS
@pytest.mark.parametrize("asset", [{"version": ""}, {"version": " "}, {"version": None}, {}, None])
def test_a_missing_or_empty_version_reads_as_2_0_with_a_note(tmp_path, suffix, asset):
    """The layout is checked as glTF 2.0's anyway, and trimesh reads a missing version as 2.0."""
    document, binary = valid()
    if asset is None:
        del document["asset"]
    else:
        document["asset"] = asset
    assert_mesh(write(tmp_path / f"blank{suffix}", document, binary), VERTICES, TRIANGLES, (VERSION_NOTE,))


@pytest.mark.parametrize("version", ["2.0", "2.1", "2", 2, 2.0])
def test_any_2_x_version_reads_without_a_note(tmp_path, version):
    document, binary = valid()
    document["asset"]["version"] = version
    assert_mesh(write(tmp_path / "two.gltf", document, binary), VERTICES, TRIANGLES)


@CONTAINERS
@pytest.mark.parametrize(("version", "shown"), [("1.0", "'1.0'"), ("1.0.1-dev", "'1.0.1-dev'"), (1, "1")])
def test_gltf_1_versions_are_named(tmp_path, suffix, version, shown):
    document, binary = valid()
    document["asset"]["version"] = version
    path = write(tmp_path / f"old{suffix}", document, binary)
    assert refusal(path) == GLTF1.format(why=f"asset.version is {shown}")


def test_gltf_1_layout_without_a_version_is_named(tmp_path):
    """glTF 1.0 keeps its objects in JSON objects keyed by id, where 2.0 has lists."""
    document = {
        "asset": {"generator": "collada2gltf"},
        "buffers": {"box": {"byteLength": 4, "uri": "data:application/octet-stream;base64,AAAAAA=="}},
        "meshes": {"box-mesh": {"primitives": []}},
    }
    why = "the file gives no version, and its buffers are a JSON object, as in glTF 1.0"
    assert refusal(write(tmp_path / "v1.gltf", document)) == GLTF1.format(why=why)


@pytest.mark.parametrize(
    ("version", "shown"), [("3.0", "'3.0'"), ("abc", "'abc'"), ("2x", "'2x'"), ([2], "[2]")]
)
def test_other_versions_are_refused(tmp_path, version, shown):
    document, binary = valid()
    document["asset"]["version"] = version
    expected = f"unsupported glTF version {shown} (asset.version); only glTF 2.x is read"
    assert refusal(write(tmp_path / "odd.gltf", document, binary)) == expected


# ----------------------------------------------------------------------------------------------------------
# The GLB header's version (assimp's BoxTextured.glb is GLB 1; glTF-Validator's invalid_version.glb is 0)
# ----------------------------------------------------------------------------------------------------------


def test_glb_version_1_is_named_before_its_length_is_checked(tmp_path):
    """GLB 1 counts its length differently: a length check first would call the file damaged."""
    document, binary = valid()
    data = bytearray(glb(document, binary, version=1))
    struct.pack_into("<I", data, 8, len(data) + 33)  # as in the real file: the header's length disagrees
    path = tmp_path / "v1.glb"
    path.write_bytes(data)
    assert refusal(path) == "GLB version 1 (glTF 1.0) is not supported; convert the file to glTF 2.0"


def test_glb_version_0_is_named(tmp_path):
    path = tmp_path / "v0.glb"
    path.write_bytes(struct.pack("<4sII", b"glTF", 0, 0))  # the whole file: a header giving 0 bytes
    assert refusal(path) == "GLB version 0 is not supported (only GLB version 2, which holds glTF 2.0)"


def test_a_truncated_glb_2_is_still_called_truncated(tmp_path):
    document, binary = valid()
    path = tmp_path / "cut.glb"
    path.write_bytes(glb(document, binary)[:-8])
    assert refusal(path).startswith("truncated or damaged GLB file: its header gives ")


# ----------------------------------------------------------------------------------------------------------
# Compressed geometry (refused by design)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "what"),
    [
        ("KHR_draco_mesh_compression", "Draco-compressed geometry"),
        ("EXT_meshopt_compression", "meshopt-compressed buffers"),
    ],
)
def test_required_compression_extensions_are_named(tmp_path, extension, what):
    document, binary = valid()
    document["extensionsUsed"] = document["extensionsRequired"] = [extension]
    expected = f"the file requires the {extension} glTF extension ({what}), which is not supported"
    assert refusal(write(tmp_path / "packed.glb", document, binary)) == expected


def test_draco_primitives_are_refused_even_with_uncompressed_fallbacks(tmp_path):
    document, binary = valid()
    draco = {"bufferView": 0, "attributes": {"POSITION": 0}}
    document["meshes"][0]["primitives"][0]["extensions"] = {"KHR_draco_mesh_compression": draco}
    expected = "mesh 0's primitive 0 is Draco-compressed (KHR_draco_mesh_compression), which is not supported"
    assert refusal(write(tmp_path / "draco.glb", document, binary)) == expected


# ----------------------------------------------------------------------------------------------------------
# Missing or wrongly typed fields: named, never a KeyError, TypeError or ValueError from inside the parser
# ----------------------------------------------------------------------------------------------------------


def _set(path: tuple, value):
    """A change to ``document`` setting the value at ``path`` (keys and list indices)."""

    def change(document: dict) -> None:
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value

    return change


PRIMITIVE = ("meshes", 0, "primitives", 0)
FIELDS = {
    "no primitives": (lambda d: d["meshes"][0].pop("primitives"), "mesh 0 has no primitives"),
    "primitives an object": (
        _set(("meshes", 0, "primitives"), {}), "mesh 0's primitives must be a list, not {}"
    ),
    "mesh name": (_set(("meshes", 0, "name"), 5), "mesh 0's name must be a string, not 5"),
    "node name": (_set(("nodes", 2, "name"), ["eye"]), "node 2's name must be a string, not ['eye']"),
    "surrogate name": (  # JSON's "\\ud800": a str that trimesh cannot hash as UTF-8
        _set(("nodes", 0, "name"), "root\ud800"),
        "node 0's name is not valid Unicode (a lone surrogate: 'root\\ud800')",
    ),
    "matrix": (
        _set(("nodes", 1, "matrix"), [1, 0]), "node 1's matrix must be a list of 16 numbers, not [1, 0]"
    ),
    "translation": (
        _set(("nodes", 0, "translation"), [0, "x", 0]),
        "node 0's translation must be a list of 3 numbers, not [0, 'x', 0]",
    ),
    "scale": (_set(("nodes", 0, "scale"), True), "node 0's scale must be a list of 3 numbers, not True"),
    "camera": (
        _set(("nodes", 2, "camera"), 3), "node 2's camera refers to index 3, but there are 1 to choose from"
    ),
    "perspective": (
        _set(("cameras", 0, "perspective"), [0.7]),
        "camera 0's perspective must be a JSON object, not [0.7]",
    ),
    "yfov": (
        _set(("cameras", 0, "perspective", "yfov"), "wide"), "camera 0's yfov must be a number, not 'wide'"
    ),
    "normal": (
        _set((*PRIMITIVE, "attributes", "NORMAL"), 9),
        "the NORMAL attribute of mesh 0's primitive 0 refers to index 9, but there are 2 to choose from",
    ),
    "extensions": (
        _set((*PRIMITIVE, "extensions"), ["KHR_materials_unlit"]),
        "mesh 0's primitive 0's extensions must be a JSON object, not ['KHR_materials_unlit']",
    ),
    "position type": (
        _set(("accessors", 0, "type"), "VEC2"),
        "accessor 0 (the POSITION of mesh 0) must hold VEC3 values, not VEC2",
    ),
    "index type": (
        _set(("accessors", 1, "componentType"), 5126),
        "accessor 1 (the indices of mesh 0) must hold unsigned integer SCALAR values (componentType 5121, "
        "5123 or 5125), not SCALAR of componentType 5126",
    ),
    "index count": (
        _set(("accessors", 1, "count"), 3 * TRIANGLES - 1),
        "mesh 0's primitive 0 draws triangles from 95 indices: not a multiple of 3",
    ),
    "asset": (_set(("asset",), "2.0"), "the glTF file's asset must be a JSON object, not '2.0'"),
    "scene entry": (
        _set(("scenes", 0), 0),
        "the glTF file's scenes must all be JSON objects (scenes[0] is 0)",
    ),
}  # fmt: skip


@CONTAINERS
@pytest.mark.parametrize(("change", "expected"), FIELDS.values(), ids=FIELDS.keys())
def test_wrong_fields_are_named(tmp_path, suffix, change, expected):
    document, binary = valid()
    change(document)
    assert refusal(write(tmp_path / f"field{suffix}", document, binary)) == expected


def test_a_triangle_reaching_into_another_mesh_is_refused(tmp_path):
    """Once the meshes are placed in one array, index 70 of a 64-vertex mesh would silently join the next
    mesh's vertices; the common checks only see the total of 128."""
    document, binary = valid()
    indices = np.frombuffer(binary, np.uint32, offset=VERTICES * 12).copy()  # (96,)
    good = indices.tobytes()
    indices[4] = 70
    binary = binary[: VERTICES * 12] + indices.tobytes() + good
    document["buffers"][0]["byteLength"] = len(binary)
    view = {"buffer": 0, "byteOffset": len(binary) - len(good), "byteLength": len(good)}
    document["bufferViews"].append(view)
    document["accessors"].append({**document["accessors"][1], "bufferView": 2})
    other = {"attributes": {"POSITION": 0}, "indices": 2}  # the same vertices, its own valid indices
    document["meshes"].append({"name": "other", "primitives": [other]})
    document["nodes"].append({"mesh": 1})
    document["scenes"][0]["nodes"].append(3)
    expected = "a triangle of mesh 'part' refers to vertex 70, but the mesh has 64 vertices"
    assert refusal(write(tmp_path / "reach.glb", document, binary)) == expected


def _paths(value, prefix: tuple = ()) -> Iterator[tuple]:
    """The path of every value inside a JSON document (keys and list indices), containers included."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def test_every_field_of_the_wrong_type_gives_a_named_refusal(tmp_path):
    """Each value of a valid document, replaced in turn by values of other types: the file reads, or is
    refused with our own words, never with an exception's text ("malformed GLB file (KeyError: ...)")."""
    document, binary = valid()
    path = tmp_path / "wrong.glb"
    for where in _paths(document):
        for value in (-1, 1.5, "x", None, True, [], {}):
            changed = copy.deepcopy(document)
            _set(where, value)(changed)
            path.write_bytes(glb_bytes(changed, binary))
            try:
                read_shape(path, max_gib=0.25)
            except ShapeError as err:
                assert "malformed" not in str(err), (where, value, str(err))
