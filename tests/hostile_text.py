"""Text shape files (XYZ, OBJ, OFF, ASCII STL) that are small on disk and huge in what they imply, and a few
small ones that real exporters write and the readers once refused; built on the fly (tests/test_io_text.py
and benchmarks import them).

Each builder writes one file into ``folder`` and returns its path; ``CASES`` names them with what the file
implies. Builders are deterministic and fast: the bulk is written as repeated chunks through gzip, and every
decompressed body stays under MAX_FILE_BYTES (256 MiB), so the reader, not the decompressor, is exercised.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

_CHUNK_BYTES = 1 << 22  # repeated rows are written 4 MiB at a time
_LEVEL = 9  # the smallest files; repeated rows compress ~700:1 at any level


def _write_repeated(stream: gzip.GzipFile, block: bytes, count: int) -> None:
    """Write ``block`` ``count`` times, in chunks of about 4 MiB."""
    per_chunk = max(1, _CHUNK_BYTES // len(block))
    chunk = block * min(count, per_chunk)
    for start in range(0, count, per_chunk):
        stream.write(chunk if count - start >= per_chunk else block * (count - start))


def _gzip(path: Path, head: bytes, block: bytes, count: int, tail: bytes = b"") -> Path:
    with gzip.open(path, "wb", compresslevel=_LEVEL) as stream:
        stream.write(head)
        _write_repeated(stream, block, count)
        stream.write(tail)
    return path


def _triangles_stl(offset: float = 0.0) -> bytes:
    """The 12 facets of the unit cube shifted by ``offset`` along x, as ASCII STL facet text."""
    corners = [(x + offset, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    facets = []
    for a, b, c, d in quads:
        for tri in ((a, b, c), (a, c, d)):
            rows = "".join(f"      vertex {x:g} {y:g} {z:g}\n" for x, y, z in (corners[i] for i in tri))
            facets.append(f"  facet normal 0 0 0\n    outer loop\n{rows}    endloop\n  endfacet\n")
    return "".join(facets).encode("ascii")


# ----------------------------------------------------------------------------------------------------------
# Small on disk, huge in what they imply
# ----------------------------------------------------------------------------------------------------------


def build_xyz_lines(folder: Path, lines: int = 40_000_000) -> Path:
    """40 M points of 6 bytes each (240 MB of text) from ~700 KB of gzip."""
    block = "".join(f"{i} 0 {9 - i}\n" for i in range(10)).encode("ascii")
    return _gzip(folder / "lines.xyz.gz", b"", block, lines // 10)


def build_xyz_wide(folder: Path, rows: int = 3_000_000, columns: int = 40) -> Path:
    """3 M rows of 40 columns: 240 MB of text implying a 960 MB table."""
    row = (" ".join(["1"] * columns) + "\n").encode("ascii")
    return _gzip(folder / "wide.xyz.gz", b"x y z" + b" s" * (columns - 3) + b"\n", row, rows)


def build_obj_faces(folder: Path, faces: int = 30_000_000) -> Path:
    """3 vertices and 30 M triangles (240 MB of text, 720 MB of indices) from ~350 KB of gzip."""
    return _gzip(folder / "faces.obj.gz", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", b"f 1 2 3\n", faces)


def build_obj_mixed_faces(folder: Path, pairs: int = 13_000_000) -> Path:
    """26 M faces alternating triangles and quads (234 MB of text): the reader's mixed-size path."""
    square = b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
    return _gzip(folder / "mixed.obj.gz", square, b"f 1 2 3\nf 1 2 3 4\n", pairs)


def build_obj_vertices(folder: Path, vertices: int = 30_000_000) -> Path:
    """30 M vertices (240 MB of text), six times MAX_POINTS."""
    return _gzip(folder / "vertices.obj.gz", b"", b"v 0 0 0\n", vertices)


def build_obj_polygon(folder: Path, indices: int = 10_000_000) -> Path:
    """One face of 10 M indices on one 20 MB line: 10 M triangles once fanned."""
    square = b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
    return _gzip(folder / "polygon.obj.gz", square + b"f", b" 1 2 3 4", indices // 4, b"\n")


def build_off_faces(folder: Path, vertices: int = 4_000_000, faces: int = 28_000_000) -> Path:
    """An OFF whose counts match its body: 4 M vertices and 28 M triangles (248 MB of text)."""
    path = folder / "faces.off.gz"
    with gzip.open(path, "wb", compresslevel=_LEVEL) as stream:
        stream.write(f"OFF\n{vertices} {faces} 0\n".encode("ascii"))
        _write_repeated(stream, b"0 0 0\n1 0 0\n0 1 0\n0 0 1\n", vertices // 4)
        _write_repeated(stream, b"3 0 1 2\n", faces)
    return path


def build_off_declared(folder: Path, faces: int = 30_000_000) -> Path:
    """An OFF header declaring 2 G faces over a body of 30 M (240 MB of text): cut off, and huge if not."""
    head = b"OFF\n3 2000000000 0\n0 0 0\n1 0 0\n0 1 0\n"
    return _gzip(folder / "declared.off.gz", head, b"3 0 1 2\n", faces)


def build_stl_vertex_lines(folder: Path, lines: int = 20_100_000) -> Path:
    """An ASCII STL of 20 M bare 'vertex' lines (260 MB of text), four times MAX_POINTS."""
    return _gzip(folder / "vertices.stl.gz", b"solid s\n", b"vertex 0 0 0\n", lines, b"endsolid s\n")


def build_stl_facets(folder: Path, facets: int = 1_600_000) -> Path:
    """A well-formed ASCII STL of 1.6 M facets (4.8 M vertices, under MAX_POINTS; 150 MB of text)."""
    facet = (b"facet normal 0 0 1\n outer loop\n  vertex 0 0 0\n  vertex 1 0 0\n  vertex 0 1 0\n"
             b" endloop\nendfacet\n")
    return _gzip(folder / "facets.stl.gz", b"solid s\n", facet, facets, b"endsolid s\n")


# ----------------------------------------------------------------------------------------------------------
# Small files real exporters write
# ----------------------------------------------------------------------------------------------------------


def build_obj_latin1(folder: Path) -> Path:
    """A tetrahedron whose material, group and object names are Latin-1 (not UTF-8): old exporters."""
    path = folder / "latin1.obj"
    path.write_bytes(
        b"# export\xe9 par un logiciel fran\xe7ais\nmtllib caf\xe9.mtl\no t\xe9tra\xe8dre\ng \xe9\n"
        b"usemtl caf\xe9\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\ns off\nf 1 2 3\nf 1 3 4\nf 1 4 2\nf 2 4 3\n"
    )
    return path


def build_stl_bom(folder: Path) -> Path:
    """An ASCII STL cube that starts with a UTF-8 byte-order mark and a blank line (Windows tools)."""
    path = folder / "bom.stl"
    path.write_bytes(b"\xef\xbb\xbf\r\nsolid cube\n" + _triangles_stl() + b"endsolid cube\n")
    return path


def build_stl_solids(folder: Path) -> Path:
    """An ASCII STL of three 'solid ... endsolid' blocks, one cube each (36 triangles in all)."""
    path = folder / "solids.stl"
    blocks = [b"solid part%d\n%sendsolid part%d\n" % (i, _triangles_stl(2.0 * i), i) for i in range(3)]
    path.write_bytes(b"".join(blocks))
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "xyz.gz, 40 M lines": (build_xyz_lines, "40 M points (8x MAX_POINTS) from ~700 KB of gzip"),
    "xyz.gz, 3 M rows of 40 columns": (build_xyz_wide, "a 960 MB table from 240 MB of text"),
    "obj.gz, 30 M faces": (build_obj_faces, "30 M triangles (720 MB of indices) from ~350 KB"),
    "obj.gz, 26 M triangles and quads": (build_obj_mixed_faces, "26 M faces of two sizes, 234 MB of text"),
    "obj.gz, 30 M vertices": (build_obj_vertices, "30 M vertices (6x MAX_POINTS) from 240 MB of text"),
    "obj.gz, one 10 M-index face": (build_obj_polygon, "10 M triangles from one 20 MB line"),
    "off.gz, 4 M vertices and 28 M faces": (build_off_faces, "counts that match a 248 MB body"),
    "off.gz, 2 G faces declared": (build_off_declared, "2 G faces declared over a 240 MB body"),
    "stl.gz, 20 M vertex lines": (build_stl_vertex_lines, "20 M vertices (4x MAX_POINTS), 260 MB of text"),
    "stl.gz, 1.6 M facets": (build_stl_facets, "4.8 M vertices in well-formed facets, 150 MB of text"),
    "obj, Latin-1 names": (build_obj_latin1, "a tetrahedron with non-UTF-8 material and group names"),
    "stl, byte-order mark": (build_stl_bom, "an ASCII STL cube behind a UTF-8 BOM"),
    "stl, three solids": (build_stl_solids, "three solid blocks, 36 triangles"),
}
