"""Read 3D shape files into validated points (and triangles) and sample them to fixed-size clouds.

Formats, and what reads them (libraries are imported when a file of their format is read):

============================  ==================================================================  ============
format                        read by                                                             module
============================  ==================================================================  ============
PLY (ASCII, binary)           plyfile, after our header pre-pass (non-standard lines, limits,      ``ply``
                              list lengths for its memory-mapped fast path)
STL (binary; ASCII)           trimesh, after our size / triangle-count checks; ASCII: our parser  ``meshes``
                              (several ``solid`` blocks, a byte-order mark)
glTF / GLB                    trimesh (every mesh, node transforms applied), after our length and  ``gltf``
                              embedded-buffer checks
OBJ, OFF                      our parsers (no library is strict: see ``meshes``), chunked numpy    ``meshes``
polygons of 4+ corners        a fan when convex, ear clipping (mapbox-earcut) when concave        ``polygons``
PCD (ASCII, binary, binary_   our header parser; numpy for the data, python-lzf for LZF (see       ``pcd``
compressed)                   ``pcd`` for what open3d and pypcd4 get wrong)
XYZ / TXT, NPY, NPZ           numpy (``loadtxt``; ``allow_pickle=False``)                          ``tables``
.gz, .bz2, .zip of one file   the standard library, decompressed in pieces under the read budget   ``source``
============================  ==================================================================  ============

Checks made on every file, each a :class:`ShapeError` with the file name first and one line of text:

- extension in :data:`SUPPORTED_EXTENSIONS`; size at most :data:`MAX_FILE_BYTES`, checked before reading,
  and again for the decompressed content of a .gz, .bz2 or .zip (read at most that far: no bombs);
- memory: one read allocates at most ``max_gib`` (:class:`~i2pmae.io.checks.ReadBudget`, ``--max-gib``).
  Every reader claims what it will build *before* building it, from what the file declares or implies
  (header counts, polygon fans, LZF sizes, glTF accessors times their placements, decompressed bytes), so
  a small file that implies a huge one is refused with the limit named, never inflated;
- well-formed content: header counts match the data, no pickled objects in NPY/NPZ, tables of at least
  3 columns (x y z first, or where a header row or named fields put them);
- at most :data:`MAX_POINTS` points or vertices, :data:`MAX_FACES` faces, and polygons of at most
  :data:`~i2pmae.io.polygons.MAX_POLYGON_VERTICES` corners (ear-clipped when concave);
- points with a NaN or infinite coordinate are dropped (for meshes, with the faces using them) and a
  note says how many; meshes: face indices in range and a positive surface area; clouds: at least
  :data:`MIN_DISTINCT_POINTS` distinct finite points.

Whatever the loader changes is said in :attr:`Shape.notes` (the app shows them, the CLI prints them).
Coordinates may be as large or small as float64 allows: sampling rescales exactly before any float32 cast.
The limits live in :mod:`i2pmae.io.checks`, where the checks read them.
"""

from __future__ import annotations

from .checks import MAX_FACES, MAX_FILE_BYTES, MAX_POINTS, MIN_DISTINCT_POINTS, Shape, ShapeError
from .reading import SUPPORTED_EXTENSIONS, read_shape
from .sampling import load_points, sample_surface

__all__ = [
    "MAX_FACES",
    "MAX_FILE_BYTES",
    "MAX_POINTS",
    "MIN_DISTINCT_POINTS",
    "SUPPORTED_EXTENSIONS",
    "Shape",
    "ShapeError",
    "load_points",
    "read_shape",
    "sample_surface",
]
