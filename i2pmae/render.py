"""Stills of the explorer's scene rendered with Open3D, in a child process with a timeout.

Open3D's legacy ``Visualizer`` renders offscreen through EGL (Mesa) when there is no X server. It can abort,
segfault (without Debian's ``libgl1-mesa-dri``) or stall, so :func:`render_stills` renders in a forked child
(:func:`~i2pmae.bounded.run_bounded`) and only the images come back; the parent writes the PNGs. Open3D is
imported inside the child-side functions only, so the server never loads Open3D's GL in its own process.
(Open3D's Filament ``OffscreenRenderer`` is not used: it sometimes stalls.)

**Per-layer point sizes.** The legacy Visualizer has one global point size, while layers differ (tokens 7 px,
clouds 3 px, faint context 1.5 px). Each still is drawn in passes, one per point size (meshes in their own
pass), each captured with its depth buffer, and the passes are composited per pixel by depth. Unlike spheres
for tokens, this keeps every size in pixels exactly as the interactive viewer shows it and costs ~0.02 s a
pass. A point's square sprite is flat at its centre's depth, so a surface point just in front of a token
centre would cut into the token's square: the composite treats each point as a ball as wide as its sprite
(its depth minus that width in world units), so a token covers the surface points it summarises.

**Camera.** One fixed camera per call of :func:`render_stills`, from the bounding box of every shown layer of
every still, so the stills of one shape line up: from front-right-above, the view of the report's matplotlib
panels (:mod:`i2pmae.visualize`: z up, elevation 20°, azimuth -60°), as close as holds every shown point,
centred on them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bounded import BoundedRunError, run_bounded
from .scene import Layer, Scene

RENDER_SIZE = (640, 480)  # (width, height) of a still
RENDER_TIMEOUT_S = 30.0  # one batch of stills: ~1 s to import Open3D and open the window, ~0.04 s a still
RENDER_MEMORY_GIB = 2.0  # address space the child may add: Open3D and Mesa take ~0.9 GiB (~0.2 GiB resident)
BACKGROUND_RGB = (1.0, 1.0, 1.0)
ELEVATION_DEG, AZIMUTH_DEG = 20.0, -60.0  # as matplotlib's default 3D view in the report's panels
UP = (0.0, 0.0, 1.0)
FIELD_OF_VIEW_DEG = 60.0  # the legacy Visualizer's default vertical field of view
FRAME_MARGIN = 1.08  # the eye stands this much further than where the points touch the frame
BALL_SPRITES = 1.0  # a point's ball radius in sprite widths: a token stands for a patch wider than its sprite
MIN_ZOOM = 0.1  # the least view half height, as a fraction of the bounding box's largest side
_MESH_PASS = 0.0  # pass key of the meshes (point sizes are > 0)
_PROBE_SIZE = (64, 48)


class RenderError(RuntimeError):
    """Open3D rendering failed, timed out or crashed; the message says why in one line."""


@dataclass(frozen=True)
class Camera:
    """Where the stills are seen from: Open3D ViewControl settings (``zoom`` relative to the largest side
    of the ``corners`` box, as Open3D measures it)."""

    lookat: np.ndarray  # (3,) the point at the centre of the frame
    front: np.ndarray  # (3,) unit vector from the lookat point towards the eye
    up: np.ndarray  # (3,) the screen's up, orthogonal to ``front``
    corners: np.ndarray  # (2, 3) bounding box min / max: fixes Open3D's zoom reference and clip planes
    zoom: float


# --------------------------------------------------------------------------------------------- public API
def render_scene(scene: Scene, *, size: tuple[int, int] = RENDER_SIZE) -> np.ndarray:
    """One still of ``scene`` rendered in THIS process: (H, W, 3) uint8, ``size`` = (W, H).

    Loads Open3D here; the server calls :func:`render_stills` instead, which renders in a child.

    Raises:
        ValueError: the scene has no shown layer with points.
        RenderError: Open3D cannot open an offscreen window.
    """
    _check_drawable("scene", scene)
    return _render_all({"scene": scene}, size)["scene"]


def render_stills(scenes: dict[str, Scene], out_dir: str | Path, *, size: tuple[int, int] = RENDER_SIZE,
                  timeout_s: float = RENDER_TIMEOUT_S) -> list[Path]:
    """Render every scene in ONE child process and write ``out_dir/<key>.png``; the paths in dict order.

    All the stills share one camera (see the module docstring).

    Raises:
        ValueError: no scenes, or a scene with no shown layer with points.
        RenderError: the child failed, crashed, ran out of memory or ran past ``timeout_s``; the message is
            one line starting "Open3D rendering".
    """
    if not scenes:
        raise ValueError("no scenes to render")
    for key, scene in scenes.items():
        _check_drawable(key, scene)
    images = _render_in_child(scenes, size, timeout_s)
    return _write_pngs(images, scenes, out_dir)


@functools.cache
def render_available() -> tuple[bool, str]:
    """Whether Open3D renders on this machine, probed once with a tiny scene in a child:
    ``(True, "")`` or ``(False, reason)``."""
    dot = np.zeros((1, 3), np.float32)  # one black point at the origin
    probe = Scene("probe", [Layer("probe", dot, dot, "shape", point_size=8.0)])
    try:
        image = _render_in_child({"probe": probe}, _PROBE_SIZE, RENDER_TIMEOUT_S)["probe"]
    except RenderError as err:
        return False, str(err)
    if (image == _background_uint8()).all():
        return False, "Open3D rendering drew nothing (the probe still is blank)"
    return True, ""


# --------------------------------------------------------------------------------------------- parent side
def _check_drawable(key: str, scene: Scene) -> None:
    """Input errors as ValueError here, rather than as a crash of Open3D in the child."""
    if not any(layer.shown and len(layer.points) for layer in scene.layers):
        raise ValueError(f"scene {key!r} ({scene.title!r}) has nothing to draw: no shown layer has points")
    for layer in scene.layers:
        faces = layer.triangles if layer.is_mesh else np.zeros((0, 3), np.int64)  # (F, 3)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(layer.points)):
            raise ValueError(f"scene {key!r}: layer {layer.name!r} has triangle indices outside its "
                             f"{len(layer.points)} vertices")


def _render_in_child(scenes: dict[str, Scene], size: tuple[int, int],
                     timeout_s: float) -> dict[str, np.ndarray]:
    """``_render_all`` under :func:`run_bounded`; every failure as a one-line :class:`RenderError`."""
    try:
        return run_bounded(_render_all, scenes, size, memory_gib=RENDER_MEMORY_GIB, timeout_s=timeout_s,
                           what="Open3D rendering")
    except RenderError:
        raise
    except BoundedRunError as err:  # its message starts with ``what``
        raise RenderError(_one_line(str(err))) from None
    except Exception as err:  # noqa: BLE001 - whatever the child raised, the caller gets one error type
        raise RenderError(_one_line(f"Open3D rendering failed ({type(err).__name__}: {err})")) from None


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _write_pngs(images: dict[str, np.ndarray], scenes: dict[str, Scene], out_dir: str | Path) -> list[Path]:
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in scenes:
        path = out / f"{key}.png"
        Image.fromarray(images[key], mode="RGB").save(path)
        paths.append(path)
    return paths


def _background_uint8() -> np.ndarray:
    return np.round(np.asarray(BACKGROUND_RGB) * 255).astype(np.uint8)  # (3,)


# --------------------------------------------------------------------------------------------- camera
def shared_camera(scenes: Iterable[Scene], size: tuple[int, int] = RENDER_SIZE) -> Camera:
    """The camera that frames every shown point of ``scenes`` at image ``size`` = (W, H)."""
    clouds = [layer.points for scene in scenes for layer in scene.layers if layer.shown and len(layer.points)]
    if not clouds:
        raise ValueError("no shown layer has points: nothing to frame")
    points = np.concatenate(clouds).astype(np.float64)  # (N, 3)
    lo, hi = points.min(0), points.max(0)
    if (hi - lo).max() < 1e-6:  # one point: any box around it frames it
        lo, hi = lo - 0.5, hi + 0.5
    elevation, azimuth = np.radians(ELEVATION_DEG), np.radians(AZIMUTH_DEG)
    front = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                      np.sin(elevation)])  # (3,) from the lookat towards the eye
    # Open3D keeps an up vector that is not orthogonal to the front as given: the view then tilts off the
    # lookat point. Give it the screen's up, orthogonal to the front.
    right = np.cross(UP, front)
    up = np.cross(front, right / np.linalg.norm(right))
    lookat, distance = _fit_view(points, (lo + hi) / 2, front, up, size[0] / size[1])
    # Open3D: the eye is zoom * (the largest side of its bounding box) / tan(half the field of view) away.
    # The floor keeps the eye off the points (and outside Open3D's near plane) for a point-like scene.
    zoom = distance * np.tan(np.radians(FIELD_OF_VIEW_DEG) / 2) / float((hi - lo).max())
    return Camera(lookat=lookat, front=front, up=up, corners=np.stack([lo, hi]), zoom=max(zoom, MIN_ZOOM))


def _fit_view(points: np.ndarray, centre: np.ndarray, front: np.ndarray, up: np.ndarray,
              aspect: float) -> tuple[np.ndarray, float]:
    """The lookat point (3,) and the eye's distance from it, for a perspective view along ``front`` with
    screen ``up`` (orthonormal) that holds ``points`` (N, 3) with :data:`FRAME_MARGIN`, centred."""
    offsets = points - centre  # (N, 3)
    towards = offsets @ front  # (N,) how much nearer the eye than ``centre``
    tan_half = np.tan(np.radians(FIELD_OF_VIEW_DEG) / 2)
    axes = ((np.cross(up, front), tan_half * aspect), (up, tan_half))  # (screen axis, tan of its half angle)
    # With the lookat moved ``shift`` along an axis and the eye at distance D, a point at ``side`` along it
    # is in the frame when |side - shift| <= tan * (D - towards): the tightest points on either side give
    # tan * D >= (P + Q) / 2.
    distance = FRAME_MARGIN * max(
        ((offsets @ axis + tan * towards).max() + (-offsets @ axis + tan * towards).max()) / (2 * tan)
        for axis, tan in axes)
    lookat = centre + sum(axis * _centring_shift(offsets @ axis, distance - towards) for axis, _ in axes)
    return lookat, float(distance)


def _centring_shift(side: np.ndarray, depth: np.ndarray) -> float:
    """The shift s that centres the points' screen coordinates (side - s) / depth (N,): the extremes are
    then equally far from the frame's centre. Their sum falls as s grows, so bisect."""
    low, high = float(side.min()), float(side.max())
    for _ in range(40):
        middle = (low + high) / 2
        screen = (side - middle) / depth  # (N,)
        low, high = (middle, high) if screen.max() + screen.min() > 0 else (low, middle)
    return (low + high) / 2


# --------------------------------------------------------------------------------------------- child side
def _render_all(scenes: dict[str, Scene], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Every scene from one shared camera in one offscreen window: key -> (H, W, 3) uint8."""
    camera = shared_camera(scenes.values(), size)
    with _runtime_dir():
        vis = _open_window(size)
        try:
            return {key: _draw(vis, scene, camera, size) for key, scene in scenes.items()}
        finally:
            vis.destroy_window()


@contextlib.contextmanager
def _runtime_dir() -> Iterator[None]:
    """A private XDG_RUNTIME_DIR while the window is open, where none is set: without one, GLFW's probe for
    a Wayland display prints an error line to stderr on every render (headless servers have none)."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="i2pmae-render-") as runtime:
        os.environ["XDG_RUNTIME_DIR"] = runtime
        try:
            yield
        finally:
            del os.environ["XDG_RUNTIME_DIR"]


def _open_window(size: tuple[int, int]):
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(visible=False, width=int(size[0]), height=int(size[1])):
        raise RenderError("Open3D rendering could not open an offscreen window (no display and no EGL/Mesa?)")
    option = vis.get_render_option()
    option.background_color = np.asarray(BACKGROUND_RGB)
    option.light_on = True
    option.mesh_show_back_face = True  # open meshes stay solid from behind
    return vis


def _draw(vis, scene: Scene, camera: Camera, size: tuple[int, int]) -> np.ndarray:
    """One still: a pass per point size, composited by depth -> (H, W, 3) uint8."""
    _set_camera(vis, camera)
    width, height = size
    colour = np.tile(np.asarray(BACKGROUND_RGB, np.float32), (height, width, 1))  # (H, W, 3)
    nearest = np.full((height, width), np.inf, np.float32)  # (H, W) effective depth drawn so far
    pixel = 2 * np.tan(np.radians(FIELD_OF_VIEW_DEG) / 2) / height  # world size of a pixel per unit depth
    for point_size, geometries in _passes(scene).items():
        rgb, depth = _capture(vis, geometries, point_size)  # (H, W, 3), (H, W); depth 0 = nothing
        # A point counts as a ball as wide as its sprite: its depth minus that width in world units.
        effective = np.where(depth > 0, depth * (1 - BALL_SPRITES * point_size * pixel), np.inf)
        closer = effective < nearest
        colour[closer], nearest[closer] = rgb[closer], effective[closer]
    return np.round(np.clip(colour, 0, 1) * 255).astype(np.uint8)


def _set_camera(vis, camera: Camera) -> None:
    """Fix the view: Open3D derives zoom and clip planes from the bounding box of the geometry added with
    a reset, so a stand-in of the camera's box is added, the view set, and the stand-in removed."""
    import open3d as o3d

    vis.clear_geometries()
    box = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(camera.corners.astype(np.float64)))
    vis.add_geometry(box, reset_bounding_box=True)
    view = vis.get_view_control()
    view.set_front(camera.front)
    view.set_lookat(camera.lookat)
    view.set_up(camera.up)
    view.set_zoom(camera.zoom)
    vis.remove_geometry(box, reset_bounding_box=False)


def _passes(scene: Scene) -> dict[float, list]:
    """Open3D geometries of the shown, non-empty layers by pass: meshes at key 0, points by point size."""
    passes: dict[float, list] = {}
    for layer in scene.layers:
        if layer.shown and len(layer.points):
            key = _MESH_PASS if layer.is_mesh else float(layer.point_size)
            passes.setdefault(key, []).append(to_geometry(layer))
    return dict(sorted(passes.items()))


def to_geometry(layer: Layer, *, linear_colors: bool = False):
    """The layer as an Open3D point cloud or (with triangles) a triangle mesh with normals.

    ``linear_colors`` converts the sRGB colours to linear ones, for the Filament renderer of the viewer,
    which takes vertex colours as linear (without it the greys come out washed out); the legacy renderer of
    the stills takes them as they are.
    """
    import open3d as o3d

    points = o3d.utility.Vector3dVector(np.asarray(layer.points, np.float64))  # (N, 3)
    colors = np.clip(np.asarray(layer.colors, np.float64), 0, 1)  # (N, 3)
    colours = o3d.utility.Vector3dVector(srgb_to_linear(colors) if linear_colors else colors)
    if not layer.is_mesh:
        cloud = o3d.geometry.PointCloud(points)
        cloud.colors = colours
        return cloud
    triangles = o3d.utility.Vector3iVector(np.asarray(layer.triangles, np.int32))
    mesh = o3d.geometry.TriangleMesh(points, triangles)
    mesh.vertex_colors = colours
    mesh.compute_vertex_normals()  # lit shading needs normals
    return mesh


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """sRGB (N, 3) in [0, 1] -> linear RGB."""
    return np.where(colors <= 0.04045, colors / 12.92, ((colors + 0.055) / 1.055) ** 2.4)


def _capture(vis, geometries: list, point_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Colour (H, W, 3) float and depth (H, W) (0 where nothing was drawn) of ``geometries`` alone."""
    for geometry in geometries:
        vis.add_geometry(geometry, reset_bounding_box=False)
    vis.get_render_option().point_size = max(point_size, 1.0)
    rgb = np.asarray(vis.capture_screen_float_buffer(do_render=True), dtype=np.float32)  # (H, W, 3)
    depth = np.asarray(vis.capture_depth_float_buffer(do_render=True), dtype=np.float32)  # (H, W)
    for geometry in geometries:
        vis.remove_geometry(geometry, reset_bounding_box=False)
    return rgb, depth
