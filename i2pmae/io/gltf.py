"""glTF / GLB (trimesh, behind checks of our own): every mesh of the scene placed by its node transforms.

Checks made before trimesh sees the file: a GLB shorter or longer than its header says, and a .gltf that
refers to other files (never opened, see the README).
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np

from .checks import Parsed, ShapeError, check_count
from .meshes import TRIMESH_ERRORS
from .source import Source, decode_text

_GLB_MAGIC = b"glTF"
_GLB_HEADER = struct.Struct("<4sII")  # magic, version, total length


def read_gltf(source: Source) -> Parsed:
    """Every mesh of a glTF scene, placed by its node transforms; point primitives when there is no mesh."""
    import trimesh

    if source.suffix == ".glb":
        _check_glb_length(source.data)
    else:
        _check_embedded(source.data)
    kind = source.suffix.lstrip(".")
    try:
        scene = trimesh.load_scene(io.BytesIO(source.data), file_type=kind, process=False)
        parts = _placed_geometry(scene)
    except TRIMESH_ERRORS as err:
        raise ShapeError(f"malformed {kind.upper()} file ({type(err).__name__}: {err})") from err
    meshes = [(v, f) for v, f in parts if f is not None and len(f)]
    clouds = [v for v, f in parts if f is None and len(v)]
    if meshes:
        check_count(sum(len(v) for v, _ in meshes), "vertices")
        offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])  # (M,), first vertex of each mesh
        faces = np.concatenate([f + offset for (_, f), offset in zip(meshes, offsets, strict=True)])
        note = (f"ignored {len(clouds)} point primitive(s) beside the meshes",) if clouds else ()
        return Parsed(np.concatenate([v for v, _ in meshes]), faces, note)
    if clouds:
        return Parsed(np.concatenate(clouds))
    raise ShapeError("the scene holds no mesh with faces and no points")


def _placed_geometry(scene) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(vertices (V, 3) placed by the node's transform, faces (F, 3) or None for points), one per node."""
    import trimesh

    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        faces = np.asarray(geometry.faces) if isinstance(geometry, trimesh.Trimesh) else None
        if faces is None and not isinstance(geometry, trimesh.PointCloud):
            continue  # paths and other kinds of geometry
        parts.append((trimesh.transform_points(np.asarray(geometry.vertices), transform), faces))
    return parts


def _check_glb_length(data: bytes) -> None:
    if len(data) < _GLB_HEADER.size or data[:4] != _GLB_MAGIC:
        raise ShapeError("not a GLB file (it does not start with 'glTF')")
    _, _, length = _GLB_HEADER.unpack_from(data)
    if length != len(data):
        raise ShapeError(
            f"truncated or damaged GLB file: its header gives {length:,} bytes, the file has {len(data):,}"
        )


def _check_embedded(data: bytes) -> None:
    """A .gltf must carry its buffers inside (data: URIs): other files are never opened."""
    try:
        document = json.loads(decode_text(data, "glTF"))
        uris = [buffer.get("uri", "") for buffer in document.get("buffers", [])]
    except (ValueError, AttributeError, TypeError) as err:
        raise ShapeError(f"not a glTF file (not a JSON document with buffers: {err})") from err
    external = [uri for uri in uris if not uri.startswith("data:")]
    if external:
        raise ShapeError(
            f"the glTF file refers to other files ({', '.join(external[:3])}); "
            "save it as .glb, or as .gltf with embedded buffers"
        )
