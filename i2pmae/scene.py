"""The explorer's 3D scene as plain layers: what the Open3D viewer toggles and the rendered stills show.

A :class:`Layer` is a named set of coloured points (or a mesh, when it has triangles) in numpy, with no
Open3D object in it: the layers are built in the server or the CLI and can be sent to a child process that
renders them (:mod:`i2pmae.render`), or handed to the viewer (:mod:`i2pmae.viewer`). One builder per part of
the masking story: the shape, its tokens coloured by 2D saliency, the visible and masked tokens of each
mask, and each reconstruction (visible input, masked ground truth, prediction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from .explore import MASK_KINDS, MaskPair
from .model import Analysis, Reconstruction
from .visualize import MASKED_RGB, PREDICTED_RGB, TRUTH_RGB, VISIBLE_RGB

SHAPE_RGB = (0.55, 0.55, 0.55)
SURFACE_RGB = (0.80, 0.62, 0.45)
SALIENCY_COLORMAP = "inferno"  # as the app's and the report's saliency panels
CLOUD_POINT_SIZE = 3.0
TOKEN_POINT_SIZE = 7.0  # tokens drawn larger than the points they summarise
MASK_TITLES = {"random": "random mask", "guided": "2D-guided mask"}


@dataclass(frozen=True)
class Layer:
    """One toggleable part of the scene: points (N, 3) with colours (N, 3) in [0, 1], or a mesh.

    ``triangles`` (F, 3) makes ``points`` the vertices of a triangle mesh. ``group`` names the part of the
    story the layer belongs to ("shape", "saliency", "random", "guided", "reconstruction", "surface"), so
    that a viewer can show one group at a time.
    """

    name: str
    points: np.ndarray
    colors: np.ndarray
    group: str
    triangles: np.ndarray | None = None
    point_size: float = CLOUD_POINT_SIZE
    shown: bool = True

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"layer {self.name!r}: points must be (N, 3), got {self.points.shape}")
        if self.colors.shape != self.points.shape:
            raise ValueError(f"layer {self.name!r}: colors must be (N, 3) like the points, "
                             f"got {self.colors.shape} for {self.points.shape}")
        if self.triangles is not None and (self.triangles.ndim != 2 or self.triangles.shape[1] != 3):
            raise ValueError(f"layer {self.name!r}: triangles must be (F, 3), got {self.triangles.shape}")

    @property
    def is_mesh(self) -> bool:
        return self.triangles is not None


@dataclass
class Scene:
    """Layers in drawing order; ``title`` names the shape."""

    title: str
    layers: list[Layer] = field(default_factory=list)

    def group(self, name: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.group == name]


def uniform(rgb: Sequence[float], count: int) -> np.ndarray:
    """(count, 3) float32 colours, all ``rgb``."""
    return np.tile(np.asarray(rgb, dtype=np.float32), (count, 1))


def saliency_colors(saliency: np.ndarray) -> np.ndarray:
    """(G,) saliency as (G, 3) colours of :data:`SALIENCY_COLORMAP`, scaled to the shape's own range."""
    from matplotlib import colormaps

    values = np.asarray(saliency, dtype=np.float64)
    span = values.max() - values.min() if values.size else 0.0
    scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    return colormaps[SALIENCY_COLORMAP](scaled)[:, :3].astype(np.float32)


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def shape_layer(points: np.ndarray | Tensor) -> Layer:
    """The whole cloud (N, 3) in grey."""
    cloud = _numpy(points) if isinstance(points, Tensor) else np.asarray(points, dtype=np.float32)
    return Layer("shape", cloud, uniform(SHAPE_RGB, len(cloud)), group="shape")


def saliency_layer(analysis: Analysis, level: int) -> Layer:
    """The level's token centres (G_s, 3) coloured by their 2D saliency."""
    if analysis.token_saliency is None:
        raise ValueError("the analysis has no token saliency (it was made without teacher maps)")
    centers = _numpy(analysis.hierarchy.centers[level][0])  # (G_s, 3)
    saliency = analysis.token_saliency[level][0].detach().cpu().numpy()  # (G_s,)
    return Layer(f"tokens by 2D saliency ({len(centers)})", centers, saliency_colors(saliency),
                 group="saliency", point_size=TOKEN_POINT_SIZE)


def mask_layers(analysis: Analysis, masks: MaskPair, level: int) -> list[Layer]:
    """Visible (blue) and masked (grey) token centres of the random and the guided mask at one level."""
    centers = _numpy(analysis.hierarchy.centers[level][0])  # (G_s, 3)
    layers = []
    for kind in MASK_KINDS:
        masked = getattr(masks, kind)[level].detach().cpu().numpy().astype(bool)  # (G_s,)
        title = MASK_TITLES[kind]
        for name, keep, rgb in (("visible", ~masked, VISIBLE_RGB), ("masked", masked, MASKED_RGB)):
            picked = centers[keep]
            layers.append(Layer(f"{title}: {name} tokens ({len(picked)})", picked, uniform(rgb, len(picked)),
                                group=kind, point_size=TOKEN_POINT_SIZE))
    return layers


def reconstruction_parts(rec: Reconstruction, row: int) -> dict[str, np.ndarray]:
    """Visible input (V_0 K_0, 3), masked ground truth (M K_h, 3) and prediction (M P, 3) of one row."""
    masked, visible = rec.masked_valid[row], rec.visible_valid[row]
    return {"visible": _numpy(rec.visible_points[row][visible].reshape(-1, 3)),
            "truth": _numpy(rec.target_points[row][masked].reshape(-1, 3)),
            "predicted": _numpy(rec.pred_points[row][masked].reshape(-1, 3))}


def reconstruction_layers(rec: Reconstruction) -> list[Layer]:
    """For each mask (rows in :data:`MASK_KINDS` order, as :func:`~i2pmae.explore.reconstruct_pair` makes
    them): the visible input, the masked ground truth and the prediction. Only the first mask's are
    marked shown, so the two predictions do not overlap (:func:`explorer_scene` hides both at first)."""
    colours = {"visible": VISIBLE_RGB, "truth": TRUTH_RGB, "predicted": PREDICTED_RGB}
    names = {"visible": "visible input", "truth": "masked ground truth", "predicted": "prediction"}
    layers = []
    for row, kind in enumerate(MASK_KINDS):
        for part, cloud in reconstruction_parts(rec, row).items():
            layers.append(Layer(f"{MASK_TITLES[kind]}: {names[part]}", cloud,
                                uniform(colours[part], len(cloud)), group=f"reconstruction {kind}",
                                shown=row == 0))
    return layers


def surface_layer(vertices: np.ndarray, triangles: np.ndarray, *, name: str, group: str) -> Layer:
    """A triangle mesh (V, 3) / (F, 3) in one colour."""
    vertices = np.asarray(vertices, dtype=np.float32)
    return Layer(name, vertices, uniform(SURFACE_RGB, len(vertices)), group=group,
                 triangles=np.asarray(triangles, dtype=np.int32))


def explorer_scene(title: str, analysis: Analysis, masks: MaskPair, level: int,
                   rec: Reconstruction | None = None) -> Scene:
    """Every layer of the masking story for one shape: what ``i2pmae view`` opens with.

    The shape and the guided mask are shown first; the saliency, the random mask and the
    reconstructions are there to toggle on.
    """
    layers = [shape_layer(analysis.points[0]), saliency_layer(analysis, level)]
    layers += mask_layers(analysis, masks, level)
    if rec is not None:
        layers += reconstruction_layers(rec)
    first_shown = {"shape", "guided"}
    return Scene(title, [_shown(layer, layer.group in first_shown) for layer in layers])


def _shown(layer: Layer, shown: bool) -> Layer:
    return dataclasses.replace(layer, shown=shown)


def still_scenes(title: str, analysis: Analysis, masks: MaskPair, level: int,
                 rec: Reconstruction | None = None) -> dict[str, Scene]:
    """The rendered stills, by file stem: the shape, each mask over the shape, each reconstruction."""
    cloud = shape_layer(analysis.points[0])
    mask = mask_layers(analysis, masks, level)
    stills = {"render_shape": Scene(f"{title}: shape", [cloud])}
    for kind in MASK_KINDS:
        stills[f"render_mask_{kind}"] = Scene(f"{title}: {MASK_TITLES[kind]}",
                                              [_faint(cloud), *[m for m in mask if m.group == kind]])
    if rec is not None:
        reconstructed = reconstruction_layers(rec)
        for layer_kind in MASK_KINDS:
            parts = [m for m in reconstructed if m.group == f"reconstruction {layer_kind}"]
            stills[f"render_reconstruction_{layer_kind}"] = Scene(
                f"{title}: reconstruction, {MASK_TITLES[layer_kind]}", [_shown(p, True) for p in parts])
    return stills


def _faint(layer: Layer) -> Layer:
    """The shape as light context behind the tokens."""
    light = uniform(SHAPE_RGB, len(layer.points)) * 0.5 + 0.5  # (N, 3) a lighter grey than the masked tokens
    return dataclasses.replace(layer, colors=light, point_size=2.0)
