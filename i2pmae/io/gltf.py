"""glTF / GLB (trimesh, behind checks of our own): every mesh of the scene placed by its node transforms.

trimesh trusts the file: a buffer or bufferView longer than its data fails an ``assert``, a bufferless
accessor becomes zeros of whatever count it declares, and a node graph placing one mesh thousands of times
is multiplied out. So the JSON is read here first (:func:`_check_scene`), before trimesh sees the file:

- the GLB container's chunks; a file that refers to other files (never opened, see the README);
- every buffer within the data behind it (the BIN chunk or an embedded ``data:`` URI), every bufferView
  within its buffer, every accessor within its bufferView with a byteStride no smaller than its elements;
- a mesh's POSITION and indices accessors neither sparse nor bufferless (trimesh would read zeros);
- a node graph without cycles and at most :data:`_MAX_DEPTH` levels deep; every path from the scene's
  roots to a mesh is one placed copy of it (a node with several parents is placed once per path);
- the memory trimesh and this module allocate (JSON objects, buffer copies, accessors, each mesh once and
  every placed copy) claimed from the read's budget, and the placed vertices checked against MAX_POINTS.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from typing import Any, NamedTuple

import numpy as np

from .checks import Parsed, ShapeError, check_count, claim
from .meshes import TRIMESH_ERRORS
from .source import Source, decode_text

_GLB_MAGIC = b"glTF"
_GLB_HEADER = struct.Struct("<4sII")  # magic, version, total length
_CHUNK_HEADER = struct.Struct("<I4s")  # length, type
_JSON_CHUNK, _BIN_CHUNK = b"JSON", b"BIN\0"
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}  # componentType -> bytes
_TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_POINTS, _LINES, _TRIANGLES, _STRIP = 0, 1, 4, 5  # the primitive modes trimesh reads (it skips the others)
_MAX_DEPTH = 256  # node levels; glTF rigs are a few dozen deep
_MAX_NODE_PATHS = 200_000  # nodes placed, counted per path: trimesh takes ~20 µs for each
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


def read_gltf(source: Source) -> Parsed:
    """Every mesh of a glTF scene, placed by its node transforms; point primitives when there is no mesh."""
    import trimesh

    _check_scene(source)
    kind = source.suffix.lstrip(".")
    try:
        # Materials are never used: skipping them skips decoding textures (an image can be a bomb too).
        scene = trimesh.load_scene(
            io.BytesIO(source.data), file_type=kind, process=False, skip_materials=True
        )
        meshes, clouds = _placements(scene)
    except (*TRIMESH_ERRORS, AssertionError) as err:  # trimesh asserts on some layouts
        reason = str(err) or "a check failed"
        raise ShapeError(f"malformed {kind.upper()} file ({type(err).__name__}: {reason})") from err
    if meshes:
        check_count(sum(len(v) for _, v, _ in meshes), "vertices")
        note = (f"ignored {len(clouds)} point primitive(s) beside the meshes",) if clouds else ()
        return Parsed(*_placed(meshes), note)
    if clouds:
        return Parsed(_placed(clouds)[0])
    raise ShapeError("the scene holds no mesh with faces and no points")


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
            meshes.append((transform, np.asarray(geometry.vertices), np.asarray(geometry.faces)))
        elif isinstance(geometry, trimesh.PointCloud) and len(geometry.vertices):
            clouds.append((transform, np.asarray(geometry.vertices), None))
        # paths, and meshes without faces, are skipped
    return meshes, clouds


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


def _check_scene(source: Source) -> None:
    """Check the layout the JSON describes against the data, and claim what trimesh and we will allocate."""
    glb = source.suffix == ".glb"
    text, binary = _glb_chunks(source.data) if glb else (source.data, None)
    document = _parse_json(text)
    buffers = _buffer_lengths(document, binary, glb)
    views = _view_lengths(document, buffers)
    accessors = _objects(document, "accessors")
    accessor_bytes = [_accessor_bytes(i, accessor, document, views) for i, accessor in enumerate(accessors)]
    meshes = [_mesh_load(i, mesh, accessors) for i, mesh in enumerate(_objects(document, "meshes"))]
    claim(sum(views), "the glTF bufferViews' copies")
    claim(sum(accessor_bytes), "the glTF accessors' arrays")
    claim(sum(built for built, _ in meshes), f"the {len(meshes):,} glTF mesh(es)")
    placed = _scene_load(document, [load for _, load in meshes])
    claim(placed.nbytes, f"placing the scene's meshes ({placed.vertices + placed.points:,} vertices in all)")
    if placed.nodes > _MAX_NODE_PATHS:
        raise ShapeError(
            f"the scene places {placed.nodes:,} nodes (counting each path from its roots), "
            f"over the limit of {_MAX_NODE_PATHS:,}"
        )
    check_count(placed.vertices, "vertices")
    if not placed.vertices:  # point primitives are read only when there is no mesh
        check_count(placed.points, "points")


def _glb_chunks(data: bytes) -> tuple[bytes, memoryview | None]:
    """The JSON chunk and the BIN chunk (None when there is none) of a GLB file."""
    if len(data) < _GLB_HEADER.size or data[:4] != _GLB_MAGIC:
        raise ShapeError("not a GLB file (it does not start with 'glTF')")
    _, version, length = _GLB_HEADER.unpack_from(data)
    if length != len(data):
        raise ShapeError(
            f"truncated or damaged GLB file: its header gives {length:,} bytes, the file has {len(data):,}"
        )
    if version != 2:
        raise ShapeError(f"GLB version {version}; only glTF 2 is supported")
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


def _parse_json(text: bytes) -> dict:
    """The glTF document, after claiming what the JSON text will take once parsed (here, then by trimesh)."""
    structural = sum(text.count(char) for char in b"{[,:")  # bounds the number of JSON values
    claim(3 * len(text) + _JSON_VALUE * structural, "the glTF JSON once parsed")
    try:
        document = json.loads(decode_text(text, "glTF"))
    except (ValueError, RecursionError) as err:
        raise ShapeError(f"not a glTF file (its JSON cannot be parsed: {err})") from err
    if not isinstance(document, dict):
        raise ShapeError("not a glTF file (its JSON is not an object)")
    return document


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
            "save it as .glb, or as .gltf with embedded buffers"
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
    built, placed = 0, []
    for k, primitive in enumerate(_objects(mesh, "primitives", f"mesh {index}")):
        mode = primitive.get("mode", _TRIANGLES)
        if mode not in (_POINTS, _LINES, _TRIANGLES, _STRIP):
            continue  # trimesh skips line loops, line strips and fans
        attributes = primitive.get("attributes")
        if not isinstance(attributes, dict) or "POSITION" not in attributes:
            raise ShapeError(f"mesh {index}'s primitive {k} has no POSITION attribute")
        vertices = _data_count(attributes["POSITION"], "POSITION", index, primitive, accessors)
        indices = (_data_count(primitive["indices"], "indices", index, primitive, accessors)
                   if "indices" in primitive else vertices)  # fmt: skip
        built += _BUILT_VERTEX * vertices * len(_BUILT_ATTRIBUTES & attributes.keys())
        built += _BUILT_INDEX.get(mode, 8) * indices
        triangles = {_TRIANGLES: indices // 3, _STRIP: max(indices - 2, 0)}.get(mode, 0)
        if mode == _LINES:
            continue  # a path: built, never placed
        cost = _PLACED_VERTEX * vertices + _PLACED_TRIANGLE * triangles
        placed.append(_Load(cost, vertices, 0) if mode != _POINTS else _Load(cost, 0, vertices))
    return built, _total(*placed)


def _data_count(value: Any, role: str, mesh: int, primitive: dict, accessors: list[dict]) -> int:
    """The count of a mesh's POSITION or indices accessor, refusing one whose values trimesh cannot read."""
    index = _reference(value, len(accessors), f"mesh {mesh}'s {role}")
    accessor, what = accessors[index], f"accessor {index} (the {role} of mesh {mesh})"
    if "sparse" in accessor:
        raise ShapeError(f"{what} is sparse, which is not supported")
    if "bufferView" not in accessor:
        extensions = ", ".join(primitive.get("extensions", {}))
        reason = f" (the {extensions} extension is not supported)" if extensions else ""
        raise ShapeError(f"{what} has no bufferView: its values would all be zero{reason}")
    return accessor["count"]


def _scene_load(document: dict, meshes: list[_Load]) -> _Load:
    """The cost of every copy of every mesh that trimesh's scene places: one per path from the scene's roots
    (memoised per node), refusing cycles and absurd depths."""
    if "scenes" not in document:
        return _Load()  # trimesh places nothing
    scenes = _objects(document, "scenes")
    scene = scenes[_reference(document.get("scene", 0), len(scenes), "the default scene")]
    nodes = _objects(document, "nodes")
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
        mesh = _reference(node["mesh"], len(meshes), f"node {index}'s mesh") if "mesh" in node else None
        own = meshes[mesh] if mesh is not None else _Load()
        children = [visit(_reference(child, len(nodes), f"node {index}'s child"), depth + 1)
                    for child in _list(node, "children", f"node {index}")]  # fmt: skip
        active.discard(index)
        memo[index] = _total(own, _Load(nbytes=_NODE, nodes=1), *children)
        return memo[index]

    roots = [_reference(root, len(nodes), "a root node") for root in _list(scene, "nodes", "the scene")]
    return _total(*(visit(root, 0) for root in roots))


# ----------------------------------------------------------------------------------------------------------
# Typed access to the JSON
# ----------------------------------------------------------------------------------------------------------


def _list(parent: dict, key: str, owner: str = "the glTF file") -> list:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise ShapeError(f"{owner}'s {key} must be a list")
    return value


def _objects(parent: dict, key: str, owner: str = "the glTF file") -> list[dict]:
    items = _list(parent, key, owner)
    if not all(isinstance(item, dict) for item in items):
        raise ShapeError(f"{owner}'s {key} must all be JSON objects")
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
