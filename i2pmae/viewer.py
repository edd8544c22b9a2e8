"""``i2pmae view``: the explorer's layers in an Open3D window, or in a browser over WebRTC.

Two halves. The core is pure and testable without a window: a :class:`ViewerState` (mask seed, tau, level,
mask ratio), a :class:`ViewerSession` that turns a state into a :class:`~i2pmae.scene.Scene` (the teacher
runs once per shape; masks, reconstructions and surfaces are redrawn per state), the viewer's actions as
state -> state functions, and :func:`redraw_plan`, which says which layers an action replaces. The window
half (:func:`run_viewer`) only converts layers to Open3D geometries and applies those plans.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from .explore import (
    EXPLORER_CONFIG,
    MASK_KINDS,
    MaskPair,
    analyse_shape,
    draw_mask_pair,
    paper_model,
    reconstruct_shape,
    retokenise,
)
from .model import I2PMAE, Analysis, Reconstruction
from .render import to_geometry
from .scene import MASK_TITLES, Layer, Scene, explorer_scene, reconstruction_parts, surface_layer
from .teachers import Teacher

# The app's presets (app/handlers.py TAU_PRESETS, kept there as log10 tau behind a gradio import): the paper's
# tau, and the strong guidance the page opens on. ASCII names: Open3D's default GUI font has no Greek glyphs.
PAPER_TAU = EXPLORER_CONFIG.temperature
STRONG_TAU = 1e-3
TAU_PRESETS = {"paper (tau = 1)": PAPER_TAU, "strong guidance (tau = 1e-3)": STRONG_TAU}
DEFAULT_LEVEL = EXPLORER_CONFIG.num_levels - 1  # the coarsest tokens (64), as the app opens on
DEFAULT_HOST = "127.0.0.1"  # loopback unless asked: the page lets anyone who reaches it drive the window
DEFAULT_PORT = 8888
WINDOW_SIZE = (1280, 800)
BACKGROUND_RGBA = (1.0, 1.0, 1.0, 1.0)
NEW_SEED_ACTION = "new mask seed"
SURFACE_GROUPS = {kind: f"surface {kind}" for kind in MASK_KINDS}
RECONSTRUCTION_CACHE = 8  # reconstructions (and their surfaces) kept per session: level changes reuse them


@dataclass(frozen=True)
class ViewerState:
    """What the viewer shows: the masks' seed, the guided mask's tau, the token level and the mask ratio."""

    seed: int = 0
    tau: float = STRONG_TAU
    level: int = DEFAULT_LEVEL
    mask_ratio: float = EXPLORER_CONFIG.mask_ratio

    def describe(self) -> str:
        return f"seed {self.seed}, tau {self.tau:g}, level {self.level}, mask ratio {self.mask_ratio:g}"


@dataclass
class ViewerShape:
    """One analysed shape: the explorer's tokens (mask layers) and, with a model, the model's own tokens."""

    title: str
    explorer: I2PMAE
    analysis: Analysis
    model: I2PMAE | None = None
    own: Analysis | None = None  # ``analysis`` tokenised the model's way

    @property
    def tokens(self) -> tuple[int, ...]:
        """G_s per level of the explorer's tokens, finest first."""
        return tuple(c.shape[1] for c in self.analysis.hierarchy.centers)


def prepare_shape(title: str, points: np.ndarray, teacher: Teacher, *, model: I2PMAE | None = None,
                  explorer: I2PMAE | None = None) -> ViewerShape:
    """Run the teacher once on a cloud (N, 3); ``model`` (eval mode) adds the reconstructions."""
    explorer = explorer or paper_model()
    analysis = analyse_shape(explorer, points, teacher)
    own = None if model is None else retokenise(model, analysis)
    return ViewerShape(title, explorer, analysis, model, own)


def check_state(state: ViewerState, levels: int) -> ViewerState:
    """``state`` itself, or a one-line ValueError naming the bad setting."""
    if not 0 <= state.level < levels:
        raise ValueError(f"level must be 0 to {levels - 1} (finest to coarsest), got {state.level}")
    if not state.tau > 0:
        raise ValueError(f"tau must be > 0, got {state.tau:g}")
    if not 0 < state.mask_ratio < 1:
        raise ValueError(f"mask ratio must be in (0, 1), got {state.mask_ratio:g}")
    return state


class ViewerSession:
    """A shape and the current state; :meth:`scene` builds its layers, :meth:`apply` runs an action.

    Reconstructions and surfaces depend on seed, tau and ratio only, so they are cached by those: changing
    the level redraws tokens, not meshes.
    """

    def __init__(self, shape: ViewerShape, state: ViewerState | None = None, *,
                 surfaces: bool = True) -> None:
        self.shape = shape
        self.state = check_state(state or ViewerState(), len(shape.tokens))
        self.surfaces = surfaces
        self._reconstructions: dict[tuple, tuple[Reconstruction, list[Layer]]] = {}

    def masks(self, state: ViewerState) -> MaskPair:
        return draw_mask_pair(self.shape.explorer, self.shape.analysis, mask_ratio=state.mask_ratio,
                              temperature=state.tau, seed=state.seed)

    def reconstruction(self, state: ViewerState) -> tuple[Reconstruction | None, list[Layer]]:
        """The model's reconstruction under both masks of ``state`` and its surface layers (cached)."""
        if self.shape.model is None:
            return None, []
        key = (state.seed, state.tau, state.mask_ratio)
        if key not in self._reconstructions:
            rec = reconstruct_shape(self.shape.model, self.shape.own, mask_ratio=state.mask_ratio,
                                    temperature=state.tau, seed=state.seed)
            self._reconstructions[key] = (rec, surface_layers(rec) if self.surfaces else [])
            if len(self._reconstructions) > RECONSTRUCTION_CACHE:
                self._reconstructions.pop(next(iter(self._reconstructions)))  # the oldest
        return self._reconstructions[key]

    def scene(self, state: ViewerState | None = None) -> Scene:
        """Every layer for ``state`` (default: the current one)."""
        state = state or self.state
        rec, surfaces = self.reconstruction(state)
        scene = explorer_scene(self.shape.title, self.shape.analysis, self.masks(state), state.level, rec)
        return Scene(scene.title, [*scene.layers, *surfaces])

    def apply(self, action: Callable[[ViewerState], ViewerState]) -> Scene:
        """Move to ``action(state)`` and return its scene."""
        self.state = check_state(action(self.state), len(self.shape.tokens))
        return self.scene()


def surface_layers(rec: Reconstruction) -> list[Layer]:
    """A mesh of visible ∪ predicted points per reconstruction row (random, guided), hidden at first."""
    from . import surface

    layers = []
    for row, kind in enumerate(MASK_KINDS):
        mesh = surface.reconstruct_surface(surface.completed_cloud(reconstruction_parts(rec, row)))
        name = f"{MASK_TITLES[kind]}: surface ({mesh.method})"
        layer = surface_layer(mesh.vertices, mesh.triangles, name=name,
                              group=SURFACE_GROUPS[kind])
        layers.append(replace(layer, shown=False))
    return layers


def viewer_actions(tokens: tuple[int, ...]) -> dict[str, Callable[[ViewerState], ViewerState]]:
    """Button name -> state change: a new mask seed, each tau preset, each level (``tokens``: G_s each)."""
    actions: dict[str, Callable[[ViewerState], ViewerState]] = {
        NEW_SEED_ACTION: lambda s: replace(s, seed=s.seed + 1)}
    for name, tau in TAU_PRESETS.items():
        actions[f"tau: {name}"] = lambda s, tau=tau: replace(s, tau=tau)
    for level, count in enumerate(tokens):
        actions[f"level {level}: {count} tokens"] = lambda s, level=level: replace(s, level=level)
    return actions


def redraw_plan(old: Scene, new: Scene) -> tuple[list[str], list[Layer]]:
    """(names to remove, layers to add) that turn ``old`` into ``new``; layers equal in both stay put."""
    before = {layer.name: layer for layer in old.layers}
    kept = {layer.name for layer in new.layers if layer.name in before and _same(before[layer.name], layer)}
    removed = [layer.name for layer in old.layers if layer.name not in kept]
    return removed, [layer for layer in new.layers if layer.name not in kept]


def _same(a: Layer, b: Layer) -> bool:
    def same_array(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        return (x is None) == (y is None) and (x is None or np.array_equal(x, y))

    return (a.group == b.group and a.point_size == b.point_size and same_array(a.points, b.points)
            and same_array(a.colors, b.colors) and same_array(a.triangles, b.triangles))


def layer_key(name: str) -> str:
    """A layer's name without its trailing count, e.g. "random mask: visible tokens (13)" -> "...tokens", so
    that a toggle the user made survives a redraw that changes the count."""
    return re.sub(r"\s*\(\d+\)$", "", name)


def window_title(session: ViewerSession) -> str:
    return f"i2pmae view: {session.shape.title} ({session.state.describe()})"


# ------------------------------------------------------------------------------------------------ window
def check_display(webrtc: bool, environ: Mapping[str, str] | None = None,
                  platform: str | None = None) -> None:
    """Fail fast, before any model loads, where a window cannot open (headless Linux without ``--webrtc``)."""
    environ = os.environ if environ is None else environ
    if webrtc or not (platform or sys.platform).startswith("linux"):
        return
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        raise ValueError("no display to open a window on (DISPLAY is not set): use --webrtc to view it in a "
                         "browser, e.g. over an SSH tunnel")


def webrtc_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def run_viewer(session: ViewerSession, *, webrtc: bool = False, host: str = DEFAULT_HOST,
               port: int = DEFAULT_PORT, size: tuple[int, int] = WINDOW_SIZE) -> None:
    """Open the window (or serve it over WebRTC at ``host:port``) and block until it is closed."""
    import open3d as o3d

    check_display(webrtc)
    if webrtc:  # read by Open3D's server when it is enabled, which must come before the app initialises
        os.environ["WEBRTC_IP"], os.environ["WEBRTC_PORT"] = host, str(port)
        o3d.visualization.webrtc_server.enable_webrtc()
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    vis = o3d.visualization.O3DVisualizer(window_title(session), *size)
    vis.show_settings = True  # the geometry list, where layers are toggled
    vis.show_skybox(False)  # a plain background: light-grey points vanish against the default sky
    vis.set_background(np.array(BACKGROUND_RGBA, dtype=np.float32), None)
    window = _Window(vis, session)
    window.draw(session.scene())
    vis.reset_camera_to_default()
    for name, action in viewer_actions(session.shape.tokens).items():
        vis.add_action(name, lambda _vis, action=action: window.act(action))
    app.add_window(vis)
    app.run()


class _Window:
    """Applies scenes to an O3DVisualizer, keeping what the user toggled."""

    def __init__(self, vis, session: ViewerSession) -> None:
        self.vis, self.session = vis, session
        self.current = Scene(session.shape.title)
        self.visible: dict[str, bool] = {}  # layer_key -> shown, as the user last left it

    def act(self, action: Callable[[ViewerState], ViewerState]) -> None:
        self.draw(self.session.apply(action))
        self.vis.title = window_title(self.session)
        print(f"i2pmae view: {self.session.state.describe()}", file=sys.stderr)  # the page shows no title

    def draw(self, scene: Scene) -> None:
        removed, added = redraw_plan(self.current, scene)
        for name in removed:
            self.visible[layer_key(name)] = self.vis.get_geometry(name).is_visible
            self.vis.remove_geometry(name)
        for layer in added:
            if len(layer.points):  # an empty layer (no masked tokens at some level) has nothing to draw
                shown = self.visible.get(layer_key(layer.name), layer.shown)
                self.vis.add_geometry(layer.name, to_geometry(layer, linear_colors=True), material(layer),
                                      group=layer.group, is_visible=shown)
        self.current = Scene(scene.title, [layer for layer in scene.layers if len(layer.points)])
        for layer in self.current.layers:  # add_geometry resizes every point to the last material's size
            self.vis.modify_geometry_material(layer.name, material(layer))


def material(layer: Layer):
    """Unlit points of the layer's size; lit meshes."""
    from open3d.visualization import rendering

    record = rendering.MaterialRecord()
    record.shader = "defaultLit" if layer.is_mesh else "defaultUnlit"
    record.point_size = float(layer.point_size)
    return record
