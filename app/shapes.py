"""Reading a shape file once: validation, the sampled cloud, the mesh for display, the analysis cache.

Results are keyed by the file's content hash and the parameters that change them, in bounded LRU
caches, so that moving a mask slider never re-runs the teacher.

Uploads are untrusted: reading one and analysing it run in a bounded child process
(:func:`i2pmae.bounded.run_bounded`: an address-space cap and a timeout), never in the server. The reader
bounds what it knows about (``max_gib``); whatever it misses costs that child and comes back as a
:class:`~i2pmae.io.ShapeError` naming the file, while the server and the other users go on.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import trimesh

from i2pmae.bounded import BoundedRunError, run_bounded
from i2pmae.checkpoints import atomic_write
from i2pmae.explore import analyse_shape, paper_model
from i2pmae.io import ShapeError, load_points, read_shape
from i2pmae.model import Analysis

from .cache import LRUCache, file_digest
from .resources import InvalidInput, get_teacher

MAX_UPLOAD_MB = 32
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
# One upload's work: the reader's own budget (read_shape's max_gib), then the worker's hard cap above it
# (address space added to the forked server's) and its wall-clock limit.
READ_MAX_GIB = 1.0
WORKER_MEMORY_GIB = 2.0
WORKER_TIMEOUT_S = 20.0
ISOLATED = True  # read and analyse in the bounded worker; False runs them here (benchmarks compare)
SHAPE_CACHE_SIZE = 32
ANALYSIS_CACHE_SIZE = 16
MIN_POINTS, MAX_POINTS = 1024, 8192
MAX_MESH_FACES = 300_000  # larger meshes are too heavy for the browser's viewer; the cloud still shows them
# .glb files kept in output_dir(), the least recently used deleted first. Each cached LoadedShape holds one
# and touches it when made, so the newest MAX_MESH_FILES always include those of the SHAPE_CACHE_SIZE
# cached shapes; the margin covers pages still showing a shape the cache has dropped.
MAX_MESH_FILES = 4 * SHAPE_CACHE_SIZE
MESH_RGBA = (96, 140, 190, 255)  # the thumbnails' blue, so the mesh reads as the same shape
T = TypeVar("T")
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # the 3D viewer's up is +y


@dataclass
class LoadedShape:
    """One shape file sampled once: the cloud (N, 3) and, for meshes, a .glb for the mesh viewer."""

    name: str
    digest: str
    points: np.ndarray
    num_vertices: int
    num_faces: int
    mesh_path: str | None
    notes: tuple[str, ...] = ()  # what the loader changed (dropped points, a skipped header row, ...)


@dataclass
class AnalysedShape:
    """A loaded shape with the teacher-dependent analysis of the paper's model (tokens, maps, saliency)."""

    shape: LoadedShape
    teacher: str
    analysis: Analysis  # batch of one
    seconds: float
    key: tuple  # what the analysis depends on: content digest, points, sampling seed, teacher


_shape_cache: LRUCache[LoadedShape] = LRUCache(SHAPE_CACHE_SIZE)
_analysis_cache: LRUCache[AnalysedShape] = LRUCache(ANALYSIS_CACHE_SIZE)
_output_dir_lock = threading.Lock()
_output_dir: Path | None = None


def output_dir() -> Path:
    """A per-process temporary folder for files the page shows (meshes converted to .glb)."""
    global _output_dir
    with _output_dir_lock:
        if _output_dir is None:
            _output_dir = Path(tempfile.mkdtemp(prefix="i2pmae-app-"))
            atexit.register(shutil.rmtree, _output_dir, ignore_errors=True)  # gone with the process
        return _output_dir


def check_file(path: str | os.PathLike | None) -> Path:
    """The uploaded path, if it names a non-empty file under the size limit; else :class:`ShapeError`."""
    if path is None or str(path) == "":
        raise ShapeError("no shape yet: pick one from the gallery or upload a file")
    path = Path(path)
    if not path.is_file():
        raise ShapeError(f"{path.name}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise ShapeError(f"{path.name}: the file is empty")
    if size > MAX_UPLOAD_BYTES:
        raise ShapeError(f"{path.name}: {size / 2**20:.0f} MB is over the {MAX_UPLOAD_MB} MB upload limit")
    return path


def check_num_points(num_points: float) -> int:
    """The number of points as an int, if within the slider's range."""
    if not MIN_POINTS <= int(num_points) <= MAX_POINTS:
        raise InvalidInput(f"number of points must be in [{MIN_POINTS}, {MAX_POINTS}], got {num_points}")
    return int(num_points)


def _mesh_file(digest: str, vertices: np.ndarray, faces: np.ndarray) -> str:
    """Write the mesh (z up) as .glb (y up) once per content hash; return its path."""
    path = output_dir() / f"{digest[:24]}.glb"
    if not _touch(path):
        mesh = trimesh.Trimesh(vertices=vertices @ Z_UP_TO_Y_UP.T, faces=faces, process=False)
        mesh.visual.face_colors = MESH_RGBA
        glb = mesh.export(file_type="glb")
        atomic_write(path, lambda tmp: tmp.write_bytes(glb))  # a concurrent reader never sees half a file
        prune_mesh_files()
    return str(path)


def _touch(path: str | os.PathLike) -> bool:
    """Mark a file as just used (its mtime orders :func:`prune_mesh_files`); False if it is gone."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def prune_mesh_files(keep: int = MAX_MESH_FILES) -> None:
    """Delete all but the ``keep`` most recently used .glb files of :func:`output_dir`."""
    for file in least_recently_used(output_dir().glob("*.glb"), keep):
        file.unlink(missing_ok=True)


def least_recently_used(paths: Iterable[Path], keep: int) -> list[Path]:
    """``paths`` beyond the ``keep`` most recently modified (those to delete); vanished paths skipped."""
    dated = []
    for path in paths:
        try:
            dated.append((path.stat().st_mtime_ns, path))
        except FileNotFoundError:  # pruned by a concurrent request
            pass
    return [path for _, path in sorted(dated, reverse=True)[keep:]]


def in_worker(fn: Callable[..., T], /, *args: Any, name: str, what: str) -> T:
    """``fn(*args)`` in the bounded worker (see the module docstring); its failures as ShapeError."""
    if not ISOLATED:
        return fn(*args)
    try:
        return run_bounded(fn, *args, memory_gib=WORKER_MEMORY_GIB, timeout_s=WORKER_TIMEOUT_S, what=what)
    except BoundedRunError as err:
        raise ShapeError(f"{name}: {err}; the file was not used") from None


def _read_and_sample(path: Path, digest: str, num_points: int, seed: int) -> LoadedShape:
    """Read, validate and sample one file, and write its mesh for the viewer (runs in the worker)."""
    raw = read_shape(path, max_gib=READ_MAX_GIB, siblings=False)  # an upload is one file: nothing beside it
    points = load_points(raw, num_points, seed=seed)  # the shape read once, for both
    num_faces = 0 if raw.faces is None else len(raw.faces)
    mesh = _mesh_file(digest, raw.points, raw.faces) if 0 < num_faces <= MAX_MESH_FACES else None
    return LoadedShape(name=path.name, digest=digest, points=points, num_vertices=len(raw.points),
                       num_faces=num_faces, mesh_path=mesh, notes=raw.notes)


def load_shape(path: str | os.PathLike | None, num_points: int, seed: int) -> LoadedShape:
    """Validate and sample a shape file (cached by content, number of points and seed)."""
    path = check_file(path)
    num_points = check_num_points(num_points)
    digest = file_digest(path)
    output_dir()  # made here: a folder the worker made would outlive the server (it skips atexit)

    def compute() -> LoadedShape:
        return in_worker(_read_and_sample, path, digest, num_points, int(seed), name=path.name,
                         what="reading the file")

    key = (digest, num_points, int(seed))
    shape = _shape_cache.get_or_compute(key, compute)
    if shape.mesh_path is not None and not _touch(shape.mesh_path):  # pruned while the shape stayed cached
        _shape_cache.discard(key)
        shape = _shape_cache.get_or_compute(key, compute)
    return shape


def analyse(path: str | os.PathLike | None, num_points: int, seed: int, teacher: str) -> AnalysedShape:
    """Load and analyse a shape with ``teacher`` (cached by content and every parameter)."""
    shape = load_shape(path, num_points, seed)

    key = (shape.digest, shape.points.shape[0], int(seed), teacher)

    def compute() -> AnalysedShape:
        model, frozen = paper_model(), get_teacher(teacher)  # loaded here, once: the worker shares them
        start = time.perf_counter()
        analysis = in_worker(analyse_shape, model, shape.points, frozen, name=shape.name,
                             what="analysing the shape")
        return AnalysedShape(shape=shape, teacher=teacher, analysis=analysis,
                             seconds=time.perf_counter() - start, key=key)

    return _analysis_cache.get_or_compute(key, compute)


def clear_caches() -> None:
    """Forget every loaded and analysed shape (tests and benchmarks)."""
    _shape_cache.clear()
    _analysis_cache.clear()
