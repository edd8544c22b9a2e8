"""PLY files that are small on disk and huge in what they imply, built on the fly (tests and
benchmarks/bench_hostile.py import them).

Each builder writes one file into ``folder`` and returns its path; ``CASES`` names them with what the file
implies. Builders are deterministic and fast: the bulk is written as repeated chunks.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np

_CHUNK_ROWS = 1 << 20


def _header(fmt: str, vertices: int, faces: int, face_list: str = "uchar int", newline: str = "\n") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {vertices}", "property float x", "property float y",
             "property float z", f"element face {faces}", f"property list {face_list} vertex_indices",
             "end_header"]
    return (newline.join(lines) + newline).encode("ascii")


def _write_repeated(stream, row: bytes, count: int) -> None:
    chunk = row * min(count, _CHUNK_ROWS)
    for start in range(0, count, _CHUNK_ROWS):
        stream.write(chunk if count - start >= _CHUNK_ROWS else row * (count - start))


def build_ascii_faces_gz(folder: Path, faces: int = 30_000_000) -> Path:
    """An ASCII PLY of 4 vertices and 30 M faces, gzip-compressed to a few hundred KB."""
    path = folder / "faces.ply.gz"
    with gzip.open(path, "wb", compresslevel=9) as stream:
        stream.write(_header("ascii", 4, faces))
        stream.write(b"0 0 0\n1 0 0\n0 1 0\n0 0 1\n")
        _write_repeated(stream, b"3 0 1 2\n", faces)
    return path


def build_huge_polygon(folder: Path, indices: int = 30_000_000) -> Path:
    """A binary PLY whose one face lists 30 M one-byte vertex indices (30 MB implying 30 M triangles)."""
    path = folder / "polygon.ply"
    vertices = np.random.default_rng(0).random((256, 3), dtype=np.float32)
    with open(path, "wb") as stream:
        stream.write(_header("binary_little_endian", 256, 1, face_list="uint uchar"))
        stream.write(vertices.tobytes())
        stream.write(np.uint32(indices).tobytes())
        stream.write(np.arange(indices, dtype=np.uint64).astype(np.uint8).tobytes())
    return path


def build_variable_lists(folder: Path, faces: int = 1_100_000) -> Path:
    """A binary PLY of alternating triangles and quads (28 MB): plyfile reads such lists row by row."""
    path = folder / "mixed.ply"
    grid = 1000
    u, v = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    vertices = np.stack([u.ravel(), v.ravel(), np.zeros(grid * grid, np.float32)], axis=1)  # (V, 3)
    tri = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    quad = np.dtype([("n", "u1"), ("i", "<i4", (4,))])
    a = np.arange(faces // 2, dtype=np.int64) % (grid * (grid - 1) - 1)  # a corner of a grid cell
    a += (a % grid == grid - 1)  # not the last column, so a + 1 is the same row
    tris = np.zeros(len(a), tri)
    tris["n"], tris["i"] = 3, np.stack([a, a + 1, a + grid], axis=1)
    quads = np.zeros(len(a), quad)
    quads["n"], quads["i"] = 4, np.stack([a, a + 1, a + grid + 1, a + grid], axis=1)
    body = np.concatenate([tris.view(np.uint8).reshape(len(a), -1), quads.view(np.uint8).reshape(len(a), -1)],
                          axis=1)  # (faces / 2, 13 + 17): a triangle row, then a quad row
    with open(path, "wb") as stream:
        stream.write(_header("binary_little_endian", grid * grid, 2 * len(a)))
        stream.write(vertices.tobytes())
        stream.write(body.tobytes())  # triangle, quad, triangle, quad, ...
    return path


def build_crlf_binary(folder: Path) -> Path:
    """A binary PLY whose header lines end in CRLF (Windows exporters): a real, small cube."""
    path = folder / "crlf.ply"
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)  # (8, 3)
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    rows = np.zeros(6, np.dtype([("n", "u1"), ("i", "<i4", (4,))]))
    rows["n"], rows["i"] = 4, quads
    with open(path, "wb") as stream:
        stream.write(_header("binary_little_endian", 8, 6, newline="\r\n"))
        stream.write(corners.tobytes() + rows.tobytes())
    return path




def build_ascii_variable_lists(folder: Path, pairs: int = 1_000_000) -> Path:
    """An ASCII PLY of alternating triangles and quads (2 M faces, ~30 MB): plyfile reads it row by row."""
    path = folder / "mixed_ascii.ply"
    with open(path, "wb") as stream:
        stream.write(_header("ascii", 5, 2 * pairs))
        stream.write(b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n")
        _write_repeated(stream, b"3 0 1 4\n4 0 1 2 3\n", pairs)
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "ply.gz, 30 M ASCII faces": (build_ascii_faces_gz, "30 M faces (240 MB of text) from ~350 KB of gzip"),
    "ply, one 30 M-index polygon": (build_huge_polygon, "30 M triangles from one 30 MB face"),
    "ply, 1.1 M variable-length lists": (build_variable_lists, "1.1 M faces of 3 and 4 indices, 28 MB"),
    "ply, 2 M variable-length ASCII lists": (build_ascii_variable_lists, "2 M faces of 3 and 4 indices"),
}
