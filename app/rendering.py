"""The Open3D panel: rendered stills of the masking story, and a surface from each reconstruction.

Open3D can abort, segfault or stall, so both run in a bounded child process (:mod:`i2pmae.bounded`,
through :func:`i2pmae.render.render_stills` and :func:`surfaces`); when it fails, the panel says so and
the plotly figures above, which show the same layers, stay the reference. Files go to a folder per
request under the app's output folder; the oldest folders are deleted first.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from i2pmae.bounded import run_bounded
from i2pmae.explore import MASK_KINDS, MaskPair
from i2pmae.model import Analysis, Reconstruction
from i2pmae.render import RenderError, render_stills
from i2pmae.scene import reconstruction_parts, still_scenes
from i2pmae.surface import Surface, completed_cloud, reconstruct_surface, save_surface

from .reconstruction import MASK_NAMES
from .shapes import Z_UP_TO_Y_UP, least_recently_used, output_dir

MAX_FOLDERS = 64  # request folders kept; a page shows one, so 64 covers many open pages
SURFACE_TIMEOUT_S = 20.0
SURFACE_MEMORY_GIB = 1.0
STILL_CAPTIONS = {"render_shape": "the shape", "render_mask_random": "random mask",
                  "render_mask_guided": "2D-guided mask",
                  "render_reconstruction_random": "reconstruction, random mask",
                  "render_reconstruction_guided": "reconstruction, 2D-guided mask"}


@dataclass(frozen=True)
class SurfaceFiles:
    """One reconstruction's surface: a y-up .glb for the 3D viewer and .ply / .glb downloads (z up)."""

    kind: str
    view: str
    downloads: tuple[str, ...]
    triangles: int
    seconds: float
    method: str


def request_folder(key: tuple) -> Path:
    """A folder for one request's files, named by its key; the oldest folders beyond MAX_FOLDERS go."""
    root = output_dir() / "open3d"
    root.mkdir(exist_ok=True)
    folder = root / hashlib.sha256(repr(key).encode()).hexdigest()[:24]
    folder.mkdir(exist_ok=True)
    folder.touch()  # marks it as just used
    for old in least_recently_used(root.iterdir(), MAX_FOLDERS):
        shutil.rmtree(old, ignore_errors=True)
    return folder


def stills(name: str, analysis: Analysis, masks: MaskPair, level: int, rec: Reconstruction | None,
           folder: Path) -> tuple[list[tuple[str, str]], str]:
    """(path, caption) of each rendered still, and "" or a note saying why there are none."""
    scenes = still_scenes(name, analysis, masks, level, rec)
    try:
        paths = render_stills(scenes, folder)
    except RenderError as err:
        return [], (f"**{err}.** The plots above show the same layers.")
    return [(str(path), STILL_CAPTIONS.get(path.stem, path.stem)) for path in paths], ""


def surfaces(rec: Reconstruction, folder: Path) -> list[SurfaceFiles]:
    """A surface of each reconstruction (visible input ∪ prediction), made in a bounded child process.

    Raises:
        BoundedRunError: Open3D crashed, stalled or ran out of memory.
        ValueError: a cloud gave no surface.
    """
    clouds = [completed_cloud(reconstruction_parts(rec, row)) for row in range(len(MASK_KINDS))]
    made = run_bounded(_surfaces, clouds, memory_gib=SURFACE_MEMORY_GIB, timeout_s=SURFACE_TIMEOUT_S,
                       what="building the surfaces")
    return [_write(surface, kind, folder) for surface, kind in zip(made, MASK_KINDS, strict=True)]


def _surfaces(clouds: list[np.ndarray]) -> list[Surface]:
    return [reconstruct_surface(cloud) for cloud in clouds]


def _write(surface: Surface, kind: str, folder: Path) -> SurfaceFiles:
    downloads = tuple(str(save_surface(surface, folder / f"surface_{kind}{suffix}"))
                      for suffix in (".ply", ".glb"))
    y_up = Surface(surface.vertices @ Z_UP_TO_Y_UP.T.astype(np.float32), surface.triangles, surface.method,
                   surface.seconds)
    view = str(save_surface(y_up, folder / f"view_{kind}.glb"))
    return SurfaceFiles(kind, view, downloads, len(surface.triangles), surface.seconds, surface.method)


def surface_markdown(files: list[SurfaceFiles]) -> str:
    """One sentence: the method, and each surface's size and time."""
    methods = " and ".join(sorted({f.method.replace("_", " ") for f in files}))
    parts = [f"{MASK_NAMES[f.kind]}: {f.triangles:,} triangles in {f.seconds:.2f} s" for f in files]
    return f"Surfaces by {methods} from the visible input and the prediction: " + "; ".join(parts) + "."

