"""GLB / glTF, PCD and archive files that are small on disk and huge in what they imply, or that lie about
their own layout; built on the fly (tests/test_io_containers.py and benchmarks import them).

Each builder writes one file into ``folder`` and returns its path; ``CASES`` names them with what the file
implies. Builders are deterministic and fast: bulk content is written as repeated chunks or streams.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

_FLOAT, _UINT32 = 5126, 5125  # glTF componentType codes
_CHUNK = 1 << 24  # bytes per write of repeated content


# ----------------------------------------------------------------------------------------------------------
# GLB / glTF
# ----------------------------------------------------------------------------------------------------------


def glb_bytes(document: dict, binary: bytes = b"") -> bytes:
    """A GLB container: the JSON chunk, then the BIN chunk when ``binary`` is not empty (both padded to 4)."""
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text
    if binary:
        binary += bytes(-len(binary) % 4)
        body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def mesh_document(num_vertices: int, num_triangles: int, seed: int = 0) -> tuple[dict, bytes]:
    """One mesh of random vertices and chained triangles (i, i+1, i+2), placed by no node yet: (JSON, BIN)."""
    vertices = np.random.default_rng(seed).random((num_vertices, 3), dtype=np.float32)  # (V, 3)
    first = np.arange(num_triangles, dtype=np.uint32) % (num_vertices - 2)  # (T,)
    indices = np.stack([first, first + 1, first + 2], axis=1)  # (T, 3)
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": []}],
        "nodes": [],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "accessors": [
            {"bufferView": 0, "componentType": _FLOAT, "count": num_vertices, "type": "VEC3",
             "min": vertices.min(axis=0).tolist(), "max": vertices.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": _UINT32, "count": indices.size, "type": "SCALAR"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": vertices.nbytes},
            {"buffer": 0, "byteOffset": vertices.nbytes, "byteLength": indices.nbytes},
        ],
        "buffers": [{"byteLength": vertices.nbytes + indices.nbytes}],
    }  # fmt: skip
    return document, vertices.tobytes() + indices.tobytes()


def placed_once(num_vertices: int = 64, num_triangles: int = 32) -> tuple[dict, bytes]:
    """:func:`mesh_document` with one node placing the mesh: a valid GLB's content, to damage."""
    document, binary = mesh_document(num_vertices, num_triangles)
    document["nodes"], document["scenes"][0]["nodes"] = [{"mesh": 0}], [0]
    return document, binary


def _write_glb(folder: Path, name: str, document: dict, binary: bytes) -> Path:
    path = folder / name
    path.write_bytes(glb_bytes(document, binary))
    return path


def build_glb_instancing(folder: Path, copies: int = 5000) -> Path:
    """One 100k-vertex mesh placed by 5000 nodes (1.4 MB): 500 M vertices once every copy is placed."""
    document, binary = mesh_document(100_000, 10_000)
    document["nodes"] = [{"mesh": 0} for _ in range(copies)]
    document["scenes"][0]["nodes"] = list(range(copies))
    return _write_glb(folder, "instancing.glb", document, binary)


def build_glb_node_dag(folder: Path, levels: int = 40) -> Path:
    """Nodes two per level, each a child of both nodes above (18 KB): 2^40 paths to a 1000-vertex mesh."""
    document, binary = mesh_document(1000, 300)
    nodes = [{"children": [2 * level + 2, 2 * level + 3]} for level in range(levels - 1) for _ in range(2)]
    document["nodes"] = nodes + [{"mesh": 0}, {"mesh": 0}]
    document["scenes"][0]["nodes"] = [0, 1]
    return _write_glb(folder, "dag.glb", document, binary)


def build_glb_node_cycle(folder: Path) -> Path:
    """Node 0 is a child of node 1, a child of node 0: a node graph with a cycle."""
    document, binary = mesh_document(64, 32)
    document["nodes"] = [{"children": [1]}, {"children": [0], "mesh": 0}]
    document["scenes"][0]["nodes"] = [0]
    return _write_glb(folder, "cycle.glb", document, binary)


def build_glb_zero_accessors(folder: Path, primitives: int = 1000, count: int = 4_800_000) -> Path:
    """1000 primitives whose POSITION accessors have no bufferView (zeros): 85 KB implying 60 GB."""
    document = {
        "asset": {"version": "2.0"},
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": i}} for i in range(primitives)]}],
        "accessors": [{"componentType": _FLOAT, "count": count, "type": "VEC3"}] * primitives,
        "bufferViews": [{"buffer": 0, "byteLength": 4}],  # unused; trimesh reads no accessor without one
        "buffers": [{"byteLength": 4}],
    }
    return _write_glb(folder, "zeros.glb", document, bytes(4))


def build_glb_unused_accessors(folder: Path, accessors: int = 1000, count: int = 4_800_000) -> Path:
    """A valid mesh beside 1000 bufferless accessors no primitive uses: trimesh allocates 55 GB of zeros."""
    document, binary = placed_once()
    document["accessors"] += [{"componentType": _FLOAT, "count": count, "type": "VEC3"}] * accessors
    return _write_glb(folder, "unused.glb", document, binary)


def build_glb_sparse(folder: Path, count: int = 4_800_000) -> Path:
    """A sparse POSITION accessor of 4.8 M vertices and no bufferView, from a few hundred bytes."""
    document, binary = placed_once()
    document["accessors"][0] = {
        "componentType": _FLOAT, "count": count, "type": "VEC3",
        "sparse": {"count": 1, "indices": {"bufferView": 1, "componentType": _UINT32},
                   "values": {"bufferView": 0}},
    }  # fmt: skip
    return _write_glb(folder, "sparse.glb", document, binary)


def build_glb_buffer_lie(folder: Path) -> Path:
    """Buffer 0 and its views claim 1 GB while the BIN chunk holds 1 KB."""
    document, binary = placed_once()
    document["buffers"][0]["byteLength"] = 2**30
    document["bufferViews"][1]["byteLength"] = 2**30 - document["bufferViews"][1]["byteOffset"]
    return _write_glb(folder, "buffer-lie.glb", document, binary)


def build_glb_view_past_buffer(folder: Path) -> Path:
    """A bufferView that starts inside buffer 0 and ends 1 GB past it."""
    document, binary = placed_once()
    document["bufferViews"][0]["byteLength"] = 2**30
    return _write_glb(folder, "view-lie.glb", document, binary)


def build_glb_stride_lie(folder: Path) -> Path:
    """A byteStride of 4 for 12-byte VEC3 float rows: rows would overlap (trimesh reads garbage)."""
    document, binary = placed_once()
    document["bufferViews"][0]["byteStride"] = 4
    return _write_glb(folder, "stride-lie.glb", document, binary)


def build_glb_count_lie(folder: Path) -> Path:
    """A POSITION accessor of 4 M vertices, with a byteStride, in a bufferView of 768 bytes."""
    document, binary = placed_once()
    document["bufferViews"][0]["byteStride"] = 12
    document["accessors"][0]["count"] = 4_000_000
    return _write_glb(folder, "count-lie.glb", document, binary)


def build_gltf_data_uri_lie(folder: Path) -> Path:
    """A .gltf whose embedded buffer decodes to 1 KB but declares (and has views over) 1 GB."""
    document, binary = placed_once()
    document["buffers"][0] = {
        "byteLength": 2**30,
        "uri": "data:application/octet-stream;base64," + base64.b64encode(binary).decode(),
    }
    document["bufferViews"][1]["byteLength"] = 2**30 - document["bufferViews"][1]["byteOffset"]
    path = folder / "uri-lie.gltf"
    path.write_text(json.dumps(document))
    return path


def build_gltf_json_bomb_gz(folder: Path, objects: int = 20_000_000) -> Path:
    """A .gltf.gz (60 KB) whose 60 MB of JSON holds 20 M empty objects: about 1.5 GB of Python dicts."""
    path = folder / "bomb.gltf.gz"
    with gzip.open(path, "wb", compresslevel=6) as stream:
        stream.write(b'{"asset":{"version":"2.0"},"extras":[{}')
        _write_repeated(stream, b",{}", objects - 1)
        stream.write(b"]}")
    return path


# ----------------------------------------------------------------------------------------------------------
# PCD
# ----------------------------------------------------------------------------------------------------------


def _pcd_header(points: int, data: str, pad: int) -> bytes:
    return (
        f"VERSION 0.7\nFIELDS x y z pad\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 {pad}\n"
        f"WIDTH {points}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {data}\n"
    ).encode("ascii")


def build_pcd_lzf_bomb(folder: Path) -> Path:
    """A 23 MB binary_compressed PCD of 5 M points of 400 bytes: its LZF header announces 2 GB."""
    points, pad = 5_000_000, 97
    raw_size = points * 4 * (3 + pad)
    # One literal zero byte, then back-references copying 264 bytes from 1 byte back (LZF's longest).
    full, rest = divmod(raw_size - 1, 264)
    stream = bytes([0, 0]) + bytes([0xE0, 255, 0]) * full + (bytes([0xE0, rest - 9, 0]) if rest else b"")
    path = folder / "lzf-bomb.pcd"
    path.write_bytes(_pcd_header(points, "binary_compressed", pad) + struct.pack("<II", len(stream), raw_size)
                     + stream)
    return path


def build_pcd_ascii_wide_gz(folder: Path, rows: int = 480_000) -> Path:
    """A .pcd.gz (210 KB) of 480k ASCII rows of 64 values: 61 MB of text, a 246 MB float64 table."""
    path = folder / "wide.pcd.gz"
    with gzip.open(path, "wb", compresslevel=6) as stream:
        stream.write(_pcd_header(rows, "ascii", 61))
        _write_repeated(stream, b"0 " * 63 + b"0\n", rows)
    return path


# ----------------------------------------------------------------------------------------------------------
# Archives
# ----------------------------------------------------------------------------------------------------------


def _write_repeated(stream, row: bytes, count: int) -> None:
    per_chunk = max(1, _CHUNK // len(row))
    chunk = row * min(count, per_chunk)
    for start in range(0, count, per_chunk):
        stream.write(chunk if count - start >= per_chunk else row * (count - start))


def build_gz_bomb(folder: Path, mib: int = 1024) -> Path:
    """A .ply.gz of 1 MB decompressing to 1 GiB of zeros (over MAX_FILE_BYTES and most memory limits)."""
    member = gzip.compress(bytes(2**20), compresslevel=9, mtime=0)
    path = folder / "bomb.ply.gz"
    path.write_bytes(member * mib)  # concatenated gzip members: one stream
    return path


def build_bz2_bomb(folder: Path, mib: int = 1024) -> Path:
    """A .ply.bz2 of 3 KB decompressing to 1 GiB of zeros (concatenated bzip2 streams)."""
    path = folder / "bomb.ply.bz2"
    path.write_bytes(bz2.compress(bytes(16 * 2**20), 9) * (mib // 16))
    return path


def build_zip_bomb(folder: Path, mib: int = 250) -> Path:
    """A .zip whose one member inflates to 250 MiB of zeros from 250 KB (zipfile stops a member at its
    declared size, which MAX_FILE_BYTES bounds: a smaller memory limit must stop it sooner)."""
    path = folder / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("bomb.ply", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            _write_repeated(member, bytes(2**20), mib)
    return path


def build_zip_many_entries(folder: Path, entries: int = 1_000_000) -> Path:
    """A zip that is only a central directory of 1 M one-letter entries (47 MB): zipfile parses each."""
    entry = struct.pack("<4s6H3L5H2L", b"PK\1\2", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    directory = entry * entries
    end = struct.pack("<4s4H2LH", b"PK\5\6", 0, 0, 0xFFFF, 0xFFFF, len(directory), 0, 0)
    path = folder / "entries.zip"
    path.write_bytes(directory + end)
    return path


def zip_of(folder: Path, file_name: str, members: dict[str, bytes]) -> Path:
    path = folder / file_name
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), content)
    return path


def build_zip_traversal(folder: Path) -> Path:
    """A zip whose only shape file is ``../evil.ply``: a name that leaves the folder it is extracted to."""
    return zip_of(folder, "traversal.zip", {"../evil.ply": b"ply\n"})


def build_zip_control_names(folder: Path) -> Path:
    """A zip whose member names hold a newline and an ANSI escape (they must not reach a terminal raw)."""
    return zip_of(folder, "names.zip", {"a\n\x1b[31mred.ply": b"ply\n", "b\x1b[2J.obj": b"v 0 0 0\n"})


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "glb, 5000 instances": (build_glb_instancing, "a 100k-vertex mesh placed 5000 times: 500 M vertices"),
    "glb, node DAG": (build_glb_node_dag, "2^40 node paths to one mesh from an 18 KB file"),
    "glb, node cycle": (build_glb_node_cycle, "a node that is its own ancestor"),
    "glb, zero accessors": (build_glb_zero_accessors, "1000 bufferless POSITIONs: 60 GB of zeros"),
    "glb, unused zero accessors": (build_glb_unused_accessors, "1000 unused bufferless accessors: 55 GB"),
    "glb, sparse accessor": (build_glb_sparse, "a sparse POSITION accessor of 4.8 M vertices"),
    "glb, buffer lie": (build_glb_buffer_lie, "buffer 0 declares 1 GB over a 1 KB BIN chunk"),
    "glb, view past buffer": (build_glb_view_past_buffer, "a bufferView ending 1 GB past its buffer"),
    "glb, stride lie": (build_glb_stride_lie, "byteStride 4 for 12-byte rows"),
    "glb, count lie": (build_glb_count_lie, "4 M strided vertices in a 768-byte bufferView"),
    "gltf, data URI lie": (build_gltf_data_uri_lie, "an embedded 1 KB buffer declaring 1 GB"),
    "gltf.gz, JSON bomb": (build_gltf_json_bomb_gz, "20 M empty JSON objects: ~1.5 GB of dicts"),
    "pcd, LZF bomb": (build_pcd_lzf_bomb, "23 MB of LZF announcing 2 GB"),
    "pcd.gz, wide ASCII rows": (build_pcd_ascii_wide_gz, "61 MB of ASCII text: a 246 MB float64 table"),
    "ply.gz, 1 GiB of zeros": (build_gz_bomb, "1 GiB from 1 MB of gzip"),
    "ply.bz2, 1 GiB of zeros": (build_bz2_bomb, "1 GiB from 3 KB of bzip2"),
    "zip, 250 MiB member": (build_zip_bomb, "250 MiB from a 250 KB zip"),
    "zip, 1 M entries": (build_zip_many_entries, "a 47 MB central directory of 1 M entries"),
    "zip, ../ member": (build_zip_traversal, "a member named ../evil.ply"),
    "zip, control characters": (build_zip_control_names, "member names with a newline and ANSI escapes"),
}  # fmt: skip
