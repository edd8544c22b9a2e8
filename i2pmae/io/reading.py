"""``read_shape``: open a file, pick the reader for its format, apply the common checks."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import gltf, meshes, pcd, ply, tables
from .checks import MAX_GIB, Parsed, Shape, ShapeError, read_budget, validated
from .source import COMPRESSED_EXTENSIONS, Source, open_source

READERS: dict[str, Callable[[Source], Parsed]] = {
    ".ply": ply.read_ply,
    ".obj": meshes.read_obj,
    ".off": meshes.read_off,
    ".stl": meshes.read_stl,
    ".pcd": pcd.read_pcd,
    ".xyz": tables.read_text_cloud,
    ".txt": tables.read_text_cloud,
    ".npy": tables.read_npy,
    ".npz": tables.read_npz,
    ".glb": gltf.read_gltf,
    ".gltf": gltf.read_gltf,
}
# Lower case, with the dot; a compressed file is named after the shape file it holds (``model.ply.gz``).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (*READERS, *COMPRESSED_EXTENSIONS)

# Errors numpy, struct, zipfile and the text codecs raise on malformed content; turned into ShapeError.
_PARSE_ERRORS = (
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    EOFError,
    NotImplementedError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
    RuntimeError,  # zipfile: encrypted member
    AssertionError,  # trimesh asserts on some inconsistent files
)


def read_shape(path: str | os.PathLike, *, max_gib: float = MAX_GIB, siblings: bool = True) -> Shape:
    """Read and validate a shape file (format chosen by extension, see :data:`SUPPORTED_EXTENSIONS`).

    ``max_gib`` bounds the memory the read allocates (:class:`~i2pmae.io.checks.ReadBudget`): each reader
    claims its buffers before allocating them and stops with a ShapeError naming the limit. ``siblings``: a
    .gltf may read the buffer files it names from its own folder and the folders below it (never by URL,
    absolute path, ``..`` or a link leading out); False reads the file alone, as the explorer reads uploads.

    Returns:
        :class:`Shape` with points (N, 3) float64 and faces (F, 3) int64, or None when the file has no faces;
        its ``notes`` say what the loader changed (dropped points, a skipped header row, ...).

    Raises:
        ShapeError: for any file that cannot be used (see the package docstring for the checks); the
            message starts with the file name.
    """
    path = Path(path)
    name = path.name or str(path)
    kind = path.suffix.lower().lstrip(".").upper()
    try:
        with read_budget(max_gib):
            source = open_source(path, READERS, siblings=siblings)
            kind = source.suffix.lstrip(".").upper()
            # Signalling NaNs in binary data warn when cast; non-finite points are dropped by the checks.
            with np.errstate(invalid="ignore", over="ignore"):
                return validated(READERS[source.suffix](source), source.notes)
    except ShapeError as err:
        raise ShapeError(f"{name}: {err}") from err
    except MemoryError as err:
        raise ShapeError(f"{name}: not enough memory to read this file") from err
    except _PARSE_ERRORS as err:
        raise ShapeError(f"{name}: malformed {kind} file ({type(err).__name__}: {err})") from err
