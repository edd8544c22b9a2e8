"""glTF / GLB (trimesh, behind checks of our own): every mesh of the scene placed by its node transforms.

trimesh trusts the file: a buffer or bufferView longer than its data fails an ``assert``, a bufferless
accessor becomes zeros of whatever count it declares, and a node graph placing one mesh thousands of times
is multiplied out; and a missing or wrongly typed field surfaces as a KeyError or TypeError from deep inside
it. So the JSON is read here first (:func:`_check_scene`), before trimesh sees the file, and every field
trimesh reads is checked, so that a bad one is named in the message:

- the GLB container's version and chunks; glTF 1.0 and unknown versions (a file that gives no version is read
  as 2.0, with a note); a UTF-8 byte-order mark before the JSON (ignored, with a note); required extensions
  that compress the geometry (Draco, meshopt) and Draco-compressed primitives;
- a file that refers to other files: a .gltf's buffers are read from its folder on disk (never by URL, an
  absolute path, ``..`` or a link out of it) or from the zip archive it was taken out of, and embedded
  (:func:`_embed_companion_buffers`); a GLB's, or any when the caller reads the file alone, are refused;
- every buffer within the data behind it (the BIN chunk or an embedded ``data:`` URI), every bufferView
  within its buffer, every accessor within its bufferView with a byteStride no smaller than its elements;
- a mesh's POSITION (VEC3) and indices (unsigned integer SCALARs, a multiple of 3 for triangles) accessors
  neither sparse nor bufferless (trimesh would read zeros), every attribute an accessor, names strings;
- node transforms (lists of numbers), cameras, and a node graph without cycles and at most
  :data:`_MAX_DEPTH` levels deep; every path from the scene's roots to a mesh is one placed copy of it (a
  node with several parents is placed once per path);
- the memory trimesh and this module allocate (JSON objects, buffer copies, accessors, each mesh once and
  every placed copy) claimed from the read's budget, and the placed vertices checked against MAX_POINTS;
- a scene placing no mesh and no points is refused here, in the same words as when trimesh finds none.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import json
import re
import struct
from typing import Any, NamedTuple

import numpy as np

from .checks import Parsed, ShapeError, check_count, claim
from .meshes import TRIMESH_ERRORS
from .source import Source, decode_text, printable

_GLB_MAGIC = b"glTF"
_GLB_HEADER = struct.Struct("<4sII")  # magic, version, total length
_CHUNK_HEADER = struct.Struct("<I4s")  # length, type
_JSON_CHUNK, _BIN_CHUNK = b"JSON", b"BIN\0"
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}  # componentType -> bytes
_INDEX_COMPONENTS = (5121, 5123, 5125)  # unsigned byte, short, int: the only index types glTF allows
_TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_POINTS, _LINES, _TRIANGLES, _STRIP = 0, 1, 4, 5  # the primitive modes trimesh reads (it skips the others)
_TRANSFORMS = {"matrix": 16, "translation": 3, "rotation": 4, "scale": 3}  # node property -> numbers
_CAMERA_NUMBERS = ("yfov", "aspectRatio", "znear")  # what trimesh reads of a perspective camera
_MAX_DEPTH = 256  # node levels; glTF rigs are a few dozen deep
_MAX_NODE_PATHS = 200_000  # nodes placed, counted per path: trimesh takes ~20 µs for each
_NOTHING_PLACED = "the scene holds no mesh with faces and no points"
# The version's major number, as trimesh parses it (the digits before the first dot): "2.0" -> 2.
_MAJOR_VERSION = re.compile(r"\s*([0-9]+)\s*(?:\.|$)")
_GLTF1_LISTS = ("buffers", "bufferViews", "accessors", "meshes", "nodes", "scenes")  # JSON objects in 1.0
_DRACO = "KHR_draco_mesh_compression"
_INSTANCING = "EXT_mesh_gpu_instancing"
# Required extensions without which the geometry cannot be read (trimesh would read zeros or fail).
_GEOMETRY_EXTENSIONS = {
    _DRACO: "Draco-compressed geometry",
    "EXT_meshopt_compression": "meshopt-compressed buffers",
    "KHR_meshopt_compression": "meshopt-compressed buffers",
}
# Memory estimates, in bytes, for what trimesh and read_gltf allocate (measured on CPython 3.11, rounded up):
_JSON_VALUE = 96  # a parsed JSON value ({}, [], a number, a short string), per structural character {[,:
_NODE = 2048  # a node of trimesh's scene graph: its 4x4 transforms, dicts and names
_BUILT_VERTEX = 24  # trimesh's float64 (3,) copy of a vertex, and of its normal and colour when present
_BUILT_ATTRIBUTES = {"POSITION", "NORMAL", "COLOR_0"}  # attributes trimesh copies (skip_materials: no UVs)
_BUILT_INDEX = {_TRIANGLES: 8, _STRIP: 48}  # trimesh's int64 faces per index (a strip's intermediates)
_PLACED_VERTEX = 24 + 32  # a placed float64 (3,) vertex, and the common checks' masks and copies of it
_PLACED_TRIANGLE = 24 + 24  # a placed int64 (3,) triangle, and the checks' copy of it


class _Load(NamedTuple):
    """What placing a node (or a mesh, or a scene) costs; summed over every path that places it."""

    nbytes: int = 0  # memory of the placed copies and the scene graph
    vertices: int = 0  # placed vertices of triangle primitives
    points: int = 0  # placed vertices of point primitives
    nodes: int = 0  # node paths


def _total(*loads: _Load) -> _Load:
    return _Load(*map(sum, zip(_Load(), *loads, strict=True)))


class _Checked(NamedTuple):
    """A file that passed :func:`_check_scene`: the bytes to hand trimesh, and what the user should know."""

    data: bytes  # the file, or the file with its checked document written out again (see _for_trimesh)
    notes: tuple[str, ...] = ()


def read_gltf(source: Source) -> Parsed:
    """Every mesh of a glTF scene, placed by its node transforms; point primitives when there is no mesh."""
    import trimesh

    checked = _check_scene(source)
    kind = source.suffix.lstrip(".")
    try:
        # Materials are never used: skipping them skips decoding textures (an image can be a bomb too).
        scene = trimesh.load_scene(
            io.BytesIO(checked.data), file_type=kind, process=False, skip_materials=True
        )
        meshes, clouds = _placements(scene)
    except ShapeError:  # a check of ours on trimesh's output: its own words, not "malformed"
        raise
    except (*TRIMESH_ERRORS, AssertionError) as err:  # trimesh asserts on some layouts
        reason = str(err) or "a check failed"
        raise ShapeError(f"malformed {kind.upper()} file ({type(err).__name__}: {reason})") from err
    if meshes:
        check_count(sum(len(v) for _, v, _ in meshes), "vertices")
        note = (f"ignored {len(clouds)} point primitive(s) beside the meshes",) if clouds else ()
        return Parsed(*_placed(meshes), (*checked.notes, *note))
    if clouds:
        return Parsed(_placed(clouds)[0], None, checked.notes)
    raise ShapeError(_NOTHING_PLACED)


# ----------------------------------------------------------------------------------------------------------
# Placing trimesh's geometry
# ----------------------------------------------------------------------------------------------------------

_Part = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # transform (4, 4), vertices (V, 3), faces (F, 3)


def _placements(scene) -> tuple[list[_Part], list[_Part]]:
    """Each node's geometry with its transform: (triangle meshes with faces, point clouds)."""
    import trimesh

    meshes, clouds = [], []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            vertices, faces = np.asarray(geometry.vertices), np.asarray(geometry.faces)
            _check_own_vertices(faces, len(vertices), name)
            meshes.append((transform, vertices, faces))
        elif isinstance(geometry, trimesh.PointCloud) and len(geometry.vertices):
            clouds.append((transform, np.asarray(geometry.vertices), None))
        # paths, and meshes without faces, are skipped
    return meshes, clouds


def _check_own_vertices(faces: np.ndarray, num_vertices: int, name: str) -> None:
    """Refuse a triangle pointing past its own mesh's vertices: once the meshes are placed in one array it
    would silently join another mesh's vertices, which the common checks cannot tell from a valid face."""
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= num_vertices:
        vertex = high if low >= 0 else low
        raise ShapeError(
            f"a triangle of mesh '{printable(str(name))[:60]}' refers to vertex {vertex:,}, "
            f"but the mesh has {num_vertices:,} vertices"
        )


def _placed(parts: list[_Part]) -> tuple[np.ndarray, np.ndarray | None]:
    """All parts' vertices placed by their transforms (V, 3) float64, and their faces (F, 3) int64 renumbered
    into that array (None for clouds); written in place, so each copy is allocated once."""
    points = np.empty((sum(len(v) for _, v, _ in parts), 3))  # (V, 3)
    has_faces = parts[0][2] is not None
    faces = np.empty((sum(len(f) for _, _, f in parts), 3), np.int64) if has_faces else None  # (F, 3)
    vertex, face = 0, 0
    for transform, vertices, triangles in parts:
        placed = points[vertex : vertex + len(vertices)]  # (V_i, 3)
        np.matmul(vertices, np.asarray(transform)[:3, :3].T, out=placed)
        placed += np.asarray(transform)[:3, 3]
        if faces is not None:
            np.add(triangles, vertex, out=faces[face : face + len(triangles)])
            face += len(triangles)
        vertex += len(vertices)
    return points, faces


# ----------------------------------------------------------------------------------------------------------
# Checks of the JSON before trimesh reads the file
# ----------------------------------------------------------------------------------------------------------


def _check_scene(source: Source) -> _Checked:
    """Check the layout the JSON describes against the data, and claim what trimesh and we will allocate."""
    glb = source.suffix == ".glb"
    text, binary = _glb_chunks(source.data) if glb else (source.data, None)
    document = _parse_json(text)
    blank_version = _check_version(document)
    _check_required_extensions(document)
    companion_notes = _embed_companion_buffers(document, source)
    buffers = _buffer_lengths(document, binary, glb)
    views = _view_lengths(document, buffers)
    accessors = _objects(document, "accessors")
    accessor_bytes = [_accessor_bytes(i, accessor, document, views) for i, accessor in enumerate(accessors)]
    meshes = [_mesh_load(i, mesh, accessors) for i, mesh in enumerate(_objects(document, "meshes"))]
    claim(sum(views), "the glTF bufferViews' copies")
    claim(sum(accessor_bytes), "the glTF accessors' arrays")
    claim(sum(built for built, _ in meshes), f"the {len(meshes):,} glTF mesh(es)")
    placed = _scene_load(document, [load for _, load in meshes])
    _check_placed(placed)
    checked = _for_trimesh(source.data, text, document, glb, blank_version, rewrite=bool(companion_notes))
    return checked._replace(notes=(*companion_notes, *checked.notes, *_instancing_note(document)))


def _embed_companion_buffers(document: dict, source: Source) -> tuple[str, ...]:
    """A .gltf keeps its buffers beside it, in its folder or in the zip archive it came in (Sketchfab's
    downloads): they are read from there (``source.companion``) and embedded in the document as data: URIs,
    so trimesh never opens a file and every check below sees them as embedded buffers.

    Returns:
        a note naming them, or nothing when the file names none.
    """
    if source.companion is None:
        return ()
    embedded = []
    for buffer in _objects(document, "buffers"):
        uri = buffer.get("uri")
        if not isinstance(uri, str) or uri.startswith("data:"):
            continue  # embedded already, or refused by _buffer_lengths
        data, shown = source.companion(uri), f"'{printable(uri)[:60]}'"
        # base64 text in the document, then in the JSON written again for trimesh (as str and as bytes)
        claim(3 * (4 * len(data) // 3 + 4), f"the buffer {shown} embedded for trimesh")
        buffer["uri"] = "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")
        embedded.append(shown)
    if not embedded:
        return ()
    shown = ", ".join(embedded[:3]) + (", …" if len(embedded) > 3 else "")
    return (f"read the glTF file's buffer(s) {shown} {source.companion.where}",)


def _instancing_note(document: dict) -> tuple[str, ...]:
    """trimesh ignores GPU instancing: an instanced mesh is read once, where the file draws it many times."""
    instanced = sum(
        isinstance(node.get("extensions"), dict) and _INSTANCING in node["extensions"]
        for node in _objects(document, "nodes")
    )
    if not instanced:
        return ()
    return (f"ignored the {_INSTANCING} extension of {instanced:,} node(s): each of their meshes is read "
            "once, not once per instance",)


def _check_placed(placed: _Load) -> None:
    """Claim and count what the scene places; refuse a scene placing nothing here, in the words read_gltf
    uses, because trimesh fails on some such files (a bufferView without accessors: KeyError)."""
    claim(placed.nbytes, f"placing the scene's meshes ({placed.vertices + placed.points:,} vertices in all)")
    if placed.nodes > _MAX_NODE_PATHS:
        raise ShapeError(
            f"the scene places {placed.nodes:,} nodes (counting each path from its roots), "
            f"over the limit of {_MAX_NODE_PATHS:,}"
        )
    check_count(placed.vertices, "vertices")
    if not placed.vertices:  # point primitives are read only when there is no mesh
        check_count(placed.points, "points")
    if not placed.vertices and not placed.points:
        raise ShapeError(_NOTHING_PLACED)


def _glb_chunks(data: bytes) -> tuple[bytes, memoryview | None]:
    """The JSON chunk and the BIN chunk (None when there is none) of a GLB file."""
    if len(data) < _GLB_HEADER.size or data[:4] != _GLB_MAGIC:
        raise ShapeError("not a GLB file (it does not start with 'glTF')")
    _, version, length = _GLB_HEADER.unpack_from(data)
    if version != 2:  # before the length: GLB 1 counts and lays out its chunks differently
        raise ShapeError(_glb_version_error(version))
    if length != len(data):
        raise ShapeError(
            f"truncated or damaged GLB file: its header gives {length:,} bytes, the file has {len(data):,}"
        )
    chunks, offset = [], _GLB_HEADER.size
    while offset < len(data):
        if offset + _CHUNK_HEADER.size > len(data):
            raise ShapeError(f"damaged GLB file: a chunk header is cut off at byte {offset:,}")
        size, kind = _CHUNK_HEADER.unpack_from(data, offset)
        start = offset + _CHUNK_HEADER.size
        if start + size > len(data):
            raise ShapeError(f"damaged GLB file: a {size:,}-byte chunk at byte {offset:,} runs past the end")
        chunks.append((kind, memoryview(data)[start : start + size]))
        offset = start + size
    if not chunks or chunks[0][0] != _JSON_CHUNK:
        raise ShapeError("damaged GLB file: its first chunk is not JSON")
    binaries = [chunk for kind, chunk in chunks[1:] if kind == _BIN_CHUNK]
    if len(binaries) > 1:
        raise ShapeError(f"the GLB file has {len(binaries)} BIN chunks; glTF allows one")
    claim(len(binaries[0]) if binaries else 0, "trimesh's copy of the GLB's BIN chunk")
    return bytes(chunks[0][1]), (binaries[0] if binaries else None)


def _glb_version_error(version: int) -> str:
    if version == 1:
        return "GLB version 1 (glTF 1.0) is not supported; convert the file to glTF 2.0"
    return f"GLB version {version:,} is not supported (only GLB version 2, which holds glTF 2.0)"


def _parse_json(text: bytes) -> dict:
    """The glTF document, after claiming what the JSON text will take once parsed (here, then by trimesh)."""
    if text.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # decode_text accepts it, trimesh not
        raise ShapeError("the glTF JSON is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8")
    structural = sum(text.count(char) for char in b"{[,:")  # bounds the number of JSON values
    claim(3 * len(text) + _JSON_VALUE * structural, "the glTF JSON once parsed")
    try:
        document = json.loads(decode_text(text, "glTF"))  # a UTF-8 byte-order mark is dropped
    except (ValueError, RecursionError) as err:
        raise ShapeError(f"not a glTF file (its JSON cannot be parsed: {err})") from err
    if not isinstance(document, dict):
        raise ShapeError("not a glTF file (its JSON is not an object)")
    return document


def _check_version(document: dict) -> bool:
    """Refuse glTF 1.0 and versions other than 2.x; True when the file gives no version (read as 2.0).

    A missing or empty asset.version breaks the spec, but says nothing about the layout; trimesh reads a
    missing one as 2.0, so an empty one is read the same way when the layout is glTF 2.0's (lists, not the
    JSON objects of glTF 1.0). Any other version must be one trimesh parses: digits, then a dot or the end.
    """
    asset = document.get("asset", {})
    if not isinstance(asset, dict):
        raise ShapeError(f"the glTF file's asset must be a JSON object, not {_shown(asset)}")
    version = asset.get("version")
    if version is None or (isinstance(version, str) and not version.strip()):
        legacy = [key for key in _GLTF1_LISTS if isinstance(document.get(key), dict)]
        if legacy:
            raise ShapeError(
                f"glTF 1.0 is not supported (the file gives no version, and its {legacy[0]} are a JSON "
                "object, as in glTF 1.0); convert the file to glTF 2.0"
            )
        return True
    major = _major_version(version)
    if major == 1:
        raise ShapeError(
            f"glTF 1.0 is not supported (asset.version is {_shown(version)}); convert the file to glTF 2.0"
        )
    if major != 2:
        raise ShapeError(f"unsupported glTF version {_shown(version)} (asset.version); only glTF 2.x is read")
    return False


def _major_version(version: Any) -> int | None:
    """The major number of a version string ("2.0") or number (2), None when there is none."""
    if isinstance(version, str):
        match = _MAJOR_VERSION.match(version)
        return int(match.group(1)) if match else None
    if isinstance(version, (int, float)) and not isinstance(version, bool) and abs(version) < 2**31:
        return int(version)  # json reads NaN and Infinity too: the bound keeps them out
    return None


def _check_required_extensions(document: dict) -> None:
    """Refuse a file that needs an extension compressing its geometry (trimesh would read zeros)."""
    required = _list(document, "extensionsRequired")
    for name in required:
        if isinstance(name, str) and name in _GEOMETRY_EXTENSIONS:
            raise ShapeError(
                f"the file requires the {name} glTF extension ({_GEOMETRY_EXTENSIONS[name]}), "
                "which is not supported"
            )


def _for_trimesh(data: bytes, text: bytes, document: dict, glb: bool, blank_version: bool, *,
                 rewrite: bool = False) -> _Checked:
    """The bytes trimesh is given, and notes. trimesh's JSON parser refuses a byte-order mark (which the glTF
    spec lets a reader ignore: RFC 8259 section 8.1), its version check refuses an empty or null version
    (read here as 2.0: the layout was checked as 2.0's), and it drops the first camera node it meets, with
    its mesh and children. For those, and for buffers embedded from other files (``rewrite``), it is given
    the checked document written out again."""
    notes = []
    if text.startswith(codecs.BOM_UTF8):
        notes.append("ignored the byte-order mark before the glTF JSON (glTF files should not have one)")
    if blank_version:
        notes.append("the file gives no glTF version (asset.version); read it as glTF 2.0")
    nodes = document.get("nodes", [])
    cameras = any("camera" in node and ("mesh" in node or "children" in node) for node in nodes)
    if not notes and not rewrite and not cameras:
        return _Checked(data)
    # The text once more as an ASCII str and as bytes (escaping a non-ASCII character at most triples its
    # UTF-8 bytes, and keeps a lone surrogate writable), and the GLB around it.
    claim(6 * len(text) + (len(data) if glb else 0), "a copy of the glTF file for trimesh")
    fixed = {**document, "asset": {"version": "2.0"}}  # trimesh reads nothing else of the asset
    if "nodes" in document:  # no camera is used: every node is a plain one
        fixed["nodes"] = [{key: value for key, value in node.items() if key != "camera"} for node in nodes]
    rewritten = json.dumps(fixed).encode("ascii")
    return _Checked(_with_json(data, len(text), rewritten) if glb else rewritten, tuple(notes))


def _with_json(data: bytes, old_length: int, text: bytes) -> bytes:
    """The GLB file ``data`` with its JSON chunk (``old_length`` bytes) replaced by ``text``."""
    text += b" " * (-len(text) % 4)  # chunks are padded to 4 bytes, the JSON one with spaces
    start = _GLB_HEADER.size + _CHUNK_HEADER.size
    rest = memoryview(data)[start + old_length :]  # the BIN chunk and any others, as they are
    header = _GLB_HEADER.pack(_GLB_MAGIC, 2, start + len(text) + len(rest))
    return b"".join((header, _CHUNK_HEADER.pack(len(text), _JSON_CHUNK), text, rest))


def _buffer_lengths(document: dict, binary: memoryview | None, glb: bool) -> list[int]:
    """Each buffer's byteLength, after checking it is within the data behind it."""
    buffers = _objects(document, "buffers")
    uris = [buffer.get("uri") for buffer in buffers]
    if any(uri is not None and not isinstance(uri, str) for uri in uris):
        raise ShapeError("a glTF buffer's uri is not a string")
    external = [uri for uri in uris if uri is not None and not uri.startswith("data:")]
    if external:
        raise ShapeError(
            f"the {'GLB' if glb else 'glTF'} file refers to other files ({', '.join(external[:3])}); "
            "save it as .glb, as .gltf with embedded buffers, or as a .zip holding the .gltf and its files"
        )
    lengths = []
    for i, (buffer, uri) in enumerate(zip(buffers, uris, strict=True)):
        length = _integer(buffer.get("byteLength"), f"buffer {i}'s byteLength", 1)
        size, where = _buffer_data(i, uri, binary, glb)
        if length > size:
            raise ShapeError(f"buffer {i} declares {length:,} bytes, but {where} holds {size:,}")
        lengths.append(length)
    return lengths


def _buffer_data(index: int, uri: str | None, binary: memoryview | None, glb: bool) -> tuple[int, str]:
    """(bytes of data behind buffer ``index``, where they are): the BIN chunk, or its decoded data: URI."""
    if uri is None:
        if not glb or index != 0:
            raise ShapeError(f"buffer {index} has no uri (only a GLB file's buffer 0 may use its BIN chunk)")
        if binary is None:
            raise ShapeError("buffer 0 refers to the GLB file's BIN chunk, but the file has none")
        return len(binary), "the BIN chunk"
    start = uri.find("base64,")  # where trimesh starts decoding
    if start < 0:
        raise ShapeError(f"buffer {index}'s data: URI is not base64-encoded")
    claim(len(uri) * 3 // 4, f"buffer {index}'s embedded data, decoded")
    try:
        return len(base64.b64decode(uri[start + 7 :])), "its embedded data"
    except binascii.Error as err:
        raise ShapeError(f"buffer {index}'s embedded data is not valid base64 ({err})") from err


def _view_lengths(document: dict, buffers: list[int]) -> list[int]:
    """Each bufferView's byteLength, after checking it lies within its buffer (and its byteStride)."""
    lengths = []
    for i, view in enumerate(_objects(document, "bufferViews")):
        buffer = _reference(view.get("buffer"), len(buffers), f"bufferView {i}'s buffer")
        offset = _integer(view.get("byteOffset", 0), f"bufferView {i}'s byteOffset")
        length = _integer(view.get("byteLength"), f"bufferView {i}'s byteLength", 1)
        _integer(view.get("byteStride", 1), f"bufferView {i}'s byteStride", 1)
        if offset + length > buffers[buffer]:
            raise ShapeError(
                f"bufferView {i} (bytes {offset:,} to {offset + length:,}) runs past the end of "
                f"buffer {buffer} ({buffers[buffer]:,} bytes)"
            )
        lengths.append(length)
    return lengths


def _accessor_bytes(index: int, accessor: dict, document: dict, views: list[int]) -> int:
    """Bytes trimesh allocates for an accessor (a strided copy, or zeros when it has no bufferView), after
    checking its elements lie within its bufferView."""
    what = f"accessor {index}"
    component, kind = accessor.get("componentType"), accessor.get("type")
    if not (isinstance(component, int) and component in _COMPONENT_BYTES and str(kind) in _TYPE_WIDTHS):
        raise ShapeError(f"{what} has an unknown componentType or type ({component!r:.20}, {kind!r:.20})")
    element = _COMPONENT_BYTES[component] * _TYPE_WIDTHS[kind]
    count = _integer(accessor.get("count"), f"{what}'s count", 1)
    if "bufferView" not in accessor:
        return count * element
    view_index = _reference(accessor["bufferView"], len(views), f"{what}'s bufferView")
    view = document["bufferViews"][view_index]
    stride = view.get("byteStride", element)
    if stride < element:
        raise ShapeError(
            f"{what} has {element}-byte elements, but bufferView {view_index}'s byteStride is {stride}: "
            "they would overlap"
        )
    offset = _integer(accessor.get("byteOffset", 0), f"{what}'s byteOffset")
    end = offset + (count - 1) * stride + element
    if end > views[view_index]:
        raise ShapeError(
            f"{what} ({count:,} elements of {element} bytes, {stride} apart, from byte {offset:,}) needs "
            f"{end:,} bytes, but bufferView {view_index} holds {views[view_index]:,}"
        )
    return count * element if "byteStride" in view else 0  # trimesh copies strided data, views packed data


def _mesh_load(index: int, mesh: dict, accessors: list[dict]) -> tuple[int, _Load]:
    """(bytes trimesh allocates to build the mesh's primitives once, the cost of one placed copy)."""
    _name(mesh, f"mesh {index}")
    if "primitives" not in mesh:
        raise ShapeError(f"mesh {index} has no primitives")
    built, placed = 0, []
    for k, primitive in enumerate(_objects(mesh, "primitives", f"mesh {index}")):
        what = f"mesh {index}'s primitive {k}"
        _check_primitive_extensions(primitive, what)
        mode = primitive.get("mode", _TRIANGLES)
        if mode not in (_POINTS, _LINES, _TRIANGLES, _STRIP):
            continue  # trimesh skips line loops, line strips and fans
        vertices, indices = _primitive_counts(primitive, what, index, accessors)
        built += _BUILT_VERTEX * vertices * len(_BUILT_ATTRIBUTES & primitive["attributes"].keys())
        built += _BUILT_INDEX.get(mode, 8) * indices
        if mode == _TRIANGLES and indices % 3:  # trimesh would fail to reshape them into triangles
            source = "indices" if "indices" in primitive else "vertices"
            raise ShapeError(f"{what} draws triangles from {indices:,} {source}: not a multiple of 3")
        triangles = {_TRIANGLES: indices // 3, _STRIP: max(indices - 2, 0)}.get(mode, 0)
        if mode == _LINES:
            continue  # a path: built, never placed
        cost = _PLACED_VERTEX * vertices + _PLACED_TRIANGLE * triangles
        placed.append(_Load(cost, vertices, 0) if mode != _POINTS else _Load(cost, 0, vertices))
    return built, _total(*placed)


def _check_primitive_extensions(primitive: dict, what: str) -> None:
    """trimesh runs a primitive's extensions before reading it; a Draco one would decode a blob whose size
    no check here bounds, so it is refused even when uncompressed accessors back it up."""
    extensions = primitive.get("extensions", {})
    if not isinstance(extensions, dict):
        raise ShapeError(f"{what}'s extensions must be a JSON object, not {_shown(extensions)}")
    if _DRACO in extensions:
        raise ShapeError(f"{what} is Draco-compressed ({_DRACO}), which is not supported")


def _primitive_counts(primitive: dict, what: str, mesh: int, accessors: list[dict]) -> tuple[int, int]:
    """(vertices, indices) of a primitive trimesh reads, after checking its attributes and indices."""
    attributes = primitive.get("attributes")
    if not isinstance(attributes, dict) or "POSITION" not in attributes:
        raise ShapeError(f"{what} has no POSITION attribute")
    for name, value in attributes.items():  # trimesh reads NORMAL, COLOR_0 and custom ones too
        _reference(value, len(accessors), f"the {printable(name)[:40]} attribute of {what}")
    vertices = _data_count(attributes["POSITION"], "POSITION", mesh, primitive, accessors)
    if "indices" not in primitive:
        return vertices, vertices
    return vertices, _data_count(primitive["indices"], "indices", mesh, primitive, accessors)


def _data_count(value: Any, role: str, mesh: int, primitive: dict, accessors: list[dict]) -> int:
    """The count of a mesh's POSITION or indices accessor, refusing one whose values trimesh cannot read."""
    index = _reference(value, len(accessors), f"mesh {mesh}'s {role}")
    accessor, what = accessors[index], f"accessor {index} (the {role} of mesh {mesh})"
    if "sparse" in accessor:
        raise ShapeError(f"{what} is sparse, which is not supported")
    if "bufferView" not in accessor:
        extensions = ", ".join(map(str, primitive.get("extensions", {})))
        reason = f" (the {extensions} extension is not supported)" if extensions else ""
        raise ShapeError(f"{what} has no bufferView: its values would all be zero{reason}")
    component, kind = accessor["componentType"], accessor["type"]  # checked by _accessor_bytes
    if role == "POSITION" and kind != "VEC3":
        raise ShapeError(f"{what} must hold VEC3 values, not {kind}")
    if role == "indices" and (kind != "SCALAR" or component not in _INDEX_COMPONENTS):
        raise ShapeError(
            f"{what} must hold unsigned integer SCALAR values (componentType 5121, 5123 or 5125), "
            f"not {kind} of componentType {component}"
        )
    return accessor["count"]


def _scene_load(document: dict, meshes: list[_Load]) -> _Load:
    """The cost of every copy of every mesh that trimesh's scene places: one per path from the scene's roots
    (memoised per node), refusing cycles and absurd depths."""
    scenes = _objects(document, "scenes")
    if not scenes:
        return _Load()  # trimesh places nothing
    scene = scenes[_reference(document.get("scene", 0), len(scenes), "the default scene")]
    nodes = _objects(document, "nodes")
    cameras = _objects(document, "cameras")
    for i, node in enumerate(nodes):  # trimesh names every node, placed or not
        _name(node, f"node {i}")
    memo: dict[int, _Load] = {}
    active: set[int] = set()  # the current path, to find cycles

    def visit(index: int, depth: int) -> _Load:
        if index in memo:
            return memo[index]
        if index in active:
            raise ShapeError(f"the node graph has a cycle: node {index} is its own descendant")
        if depth > _MAX_DEPTH:
            raise ShapeError(f"the node hierarchy is more than {_MAX_DEPTH} levels deep")
        active.add(index)
        node = nodes[index]
        _check_node(index, node, cameras)
        mesh = _reference(node["mesh"], len(meshes), f"node {index}'s mesh") if "mesh" in node else None
        own = meshes[mesh] if mesh is not None else _Load()
        children = [visit(_reference(child, len(nodes), f"node {index}'s child"), depth + 1)
                    for child in _list(node, "children", f"node {index}")]  # fmt: skip
        active.discard(index)
        memo[index] = _total(own, _Load(nbytes=_NODE, nodes=1), *children)
        return memo[index]

    roots = [_reference(root, len(nodes), "a root node") for root in _list(scene, "nodes", "the scene")]
    return _total(*(visit(root, 0) for root in roots))


def _check_node(index: int, node: dict, cameras: list[dict]) -> None:
    """A placed node's transform properties and camera, as trimesh reads them."""
    for key, length in _TRANSFORMS.items():
        if key in node:
            _numbers(node[key], length, f"node {index}'s {key}")
    if "camera" in node:
        camera = _reference(node["camera"], len(cameras), f"node {index}'s camera")
        perspective = cameras[camera].get("perspective", {})
        if not isinstance(perspective, dict):
            shown = _shown(perspective)
            raise ShapeError(f"camera {camera}'s perspective must be a JSON object, not {shown}")
        for key in _CAMERA_NUMBERS:
            if key in perspective:
                _numbers([perspective[key]], 1, f"camera {camera}'s {key}")


# ----------------------------------------------------------------------------------------------------------
# Typed access to the JSON
# ----------------------------------------------------------------------------------------------------------


def _list(parent: dict, key: str, owner: str = "the glTF file") -> list:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise ShapeError(f"{owner}'s {key} must be a list, not {_shown(value)}")
    return value


def _objects(parent: dict, key: str, owner: str = "the glTF file") -> list[dict]:
    items = _list(parent, key, owner)
    wrong = next((i for i, item in enumerate(items) if not isinstance(item, dict)), None)
    if wrong is not None:
        shown = _shown(items[wrong])
        raise ShapeError(f"{owner}'s {key} must all be JSON objects ({key}[{wrong}] is {shown})")
    return items


def _integer(value: Any, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ShapeError(f"{what} must be an integer of at least {low}, not {value!r:.40}")
    return value


def _reference(value: Any, size: int, what: str) -> int:
    """An index into a list of ``size`` items."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise ShapeError(f"{what} refers to index {value!r:.40}, but there are {size} to choose from")
    return value


def _numbers(value: Any, length: int, what: str) -> None:
    """A list of ``length`` numbers (booleans are not numbers, though Python counts them as ints)."""
    if not (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        shown = _shown(value[0] if length == 1 and isinstance(value, list) else value)
        raise ShapeError(f"{what} must be {'a number' if length == 1 else f'a list of {length} numbers'}, "
                         f"not {shown}")  # fmt: skip


def _name(item: dict, what: str) -> None:
    """trimesh builds unique names from a mesh's or node's name, which must then be a string, and hashes
    them as UTF-8 (which a lone surrogate, such as JSON's "\\ud800", is not)."""
    name = item.get("name", "")
    if not isinstance(name, str):
        raise ShapeError(f"{what}'s name must be a string, not {_shown(name)}")
    try:
        name.encode()
    except UnicodeEncodeError as err:
        raise ShapeError(f"{what}'s name is not valid Unicode (a lone surrogate: {_shown(name)})") from err


def _shown(value: Any) -> str:
    """A JSON value for a message: short, on one line (repr escapes control characters)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
