"""Every figure of the explorer (plotly), built from plain numpy arrays.

Nothing here knows about Gradio or the model: inputs are arrays in the shapes given in each
docstring, outputs are ``plotly.graph_objects.Figure`` objects (or a uint8 image for thumbnails).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from i2pmae.visualize import MASKED_RGB, PREDICTED_RGB, TRUTH_RGB, VIEW_NAMES, VISIBLE_RGB, upsample_saliency

TEMPLATE = "plotly_white"
FIG_HEIGHT = 420
VIEWS_HEIGHT = 340
MARGIN = {"l": 0, "r": 0, "t": 40, "b": 0}
IMAGES_MARGIN = {"l": 0, "r": 0, "t": 40, "b": 10}
EMBEDDING_MARGIN = {"l": 50, "r": 10, "t": 20, "b": 40}
TITLE_SIZE = 15
COLUMN_GAP = 0.03  # between side-by-side subplots, as a fraction of the width
CAMERA_EYE = {"x": 1.5, "y": -1.5, "z": 1.05}
CLOUD_MARKER = 2.5
TOKEN_MARKER = 5.0
MASKED_TOKEN_MARKER = 3.0
CONTEXT_OPACITY = 0.15
CONTEXT_RGB = "rgb(150,150,150)"
DEPTH_SCALE = "Viridis"
SALIENCY_SCALE = "Inferno"
SHAPE_VEIL = "rgba(255,255,255,0.35)"  # occupied pixels drawn over the saliency map
SALIENCY_DISPLAY_SIZE = 112  # the 14 x 14 map upsampled for display; 224 adds bytes, not detail
CLASS_COLOURS = qualitative.D3 + qualitative.Set2
THUMB_SIZE = 160
THUMB_MARGIN = 0.08
THUMB_ELEV_DEG, THUMB_AZIM_DEG = 20.0, -60.0
THUMB_BACKGROUND = 255
THUMB_NEAR_RGB = np.array([31, 119, 180], dtype=np.float32)
THUMB_FAR_RGB = np.array([200, 220, 240], dtype=np.float32)
THUMB_DOT = 1  # a dot covers (2 * THUMB_DOT + 1)^2 pixels


def _rgb(colour: Sequence[float]) -> str:
    """A matplotlib-style colour (floats in [0, 1]) as a plotly ``rgb(...)`` string."""
    r, g, b = (round(255 * c) for c in colour)
    return f"rgb({r},{g},{b})"


VISIBLE = _rgb(VISIBLE_RGB)
MASKED = _rgb(MASKED_RGB)
PREDICTED = _rgb(PREDICTED_RGB)
TRUTH = _rgb(TRUTH_RGB)


def _scatter3d(points: np.ndarray, *, name: str, color, size: float, scene: str = "scene",
               **kwargs) -> go.Scatter3d:
    """One 3D scatter trace of points (M, 3) in ``scene``."""
    x, y, z = np.asarray(points, dtype=np.float32).T  # (3, M)
    return go.Scatter3d(x=x, y=y, z=z, mode="markers", name=name, scene=scene,
                        marker={"size": size, "color": color, **kwargs.pop("marker", {})}, **kwargs)


def _suffix(i: int) -> str:
    """Plotly's name suffix of the i-th subplot (0-based): "", "2", "3", ..."""
    return str(i + 1) if i else ""


def _title(text: str, x: float) -> dict:
    return {"text": text, "x": x, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "center",
            "yanchor": "bottom", "showarrow": False, "font": {"size": TITLE_SIZE}}


def _columns(count: int) -> list[tuple[float, float]]:
    """Horizontal domains of ``count`` side-by-side subplots."""
    width = (1 - COLUMN_GAP * (count - 1)) / count
    return [(i * (width + COLUMN_GAP), i * (width + COLUMN_GAP) + width) for i in range(count)]


def _scenes_layout(titles: Sequence[str], *, height: int = FIG_HEIGHT) -> dict:
    """Layout of len(titles) rotatable 3D scenes side by side, with a horizontal legend below."""
    hidden = {"visible": False, "showbackground": False}
    layout = {"template": TEMPLATE, "height": height, "margin": MARGIN,
              "legend": {"orientation": "h", "y": 0.0, "x": 0.5, "xanchor": "center",
                         "itemsizing": "constant"},  # legend symbols readable even for tiny markers
              "annotations": [_title(t, (lo + hi) / 2) for t, (lo, hi) in zip(titles, _columns(len(titles)),
                                                                           strict=True) if t]}
    for i, (lo, hi) in enumerate(_columns(len(titles))):
        layout[f"scene{_suffix(i)}"] = {"domain": {"x": [lo, hi], "y": [0, 1]}, "aspectmode": "data",
                                        "xaxis": hidden, "yaxis": hidden, "zaxis": hidden,
                                        "camera": {"eye": CAMERA_EYE}}
    return layout


def message_figure(text: str) -> go.Figure:
    """An empty figure that shows ``text`` in its middle (no shape yet, no checkpoint, ...)."""
    return go.Figure(layout={
        "template": TEMPLATE, "height": FIG_HEIGHT // 2, "margin": MARGIN,
        "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": text, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
                         "showarrow": False, "font": {"size": TITLE_SIZE}}],
    })


def cloud_figure(points: np.ndarray) -> go.Figure:
    """The input cloud (N, 3), coloured by height, rotatable."""
    pts = np.asarray(points, dtype=np.float32)
    trace = _scatter3d(pts, name="points", color=pts[:, 2], size=CLOUD_MARKER,
                       marker={"colorscale": DEPTH_SCALE})
    return go.Figure(data=[trace], layout={**_scenes_layout([""]), "showlegend": False})


def _image_grid_layout(num_views: int, coloraxis: dict) -> dict:
    """Layout of V square images side by side (row 0 at the top), sharing one colour axis."""
    names = [VIEW_NAMES[v] if v < len(VIEW_NAMES) else f"view {v + 1}" for v in range(num_views)]
    columns = _columns(num_views)
    layout = {"template": TEMPLATE, "height": VIEWS_HEIGHT, "margin": IMAGES_MARGIN, "coloraxis": coloraxis,
              "annotations": [_title(n, (lo + hi) / 2) for n, (lo, hi) in zip(names, columns, strict=True)]}
    for v, (lo, hi) in enumerate(columns):
        layout[f"xaxis{_suffix(v)}"] = {"domain": [lo, hi], "visible": False, "constrain": "domain"}
        layout[f"yaxis{_suffix(v)}"] = {"visible": False, "autorange": "reversed",  # image rows go down
                                        "scaleanchor": f"x{_suffix(v)}"}
    return layout


def _on_view(v: int) -> dict:
    """Trace arguments that place a trace on the v-th image."""
    return {"xaxis": f"x{_suffix(v)}", "yaxis": f"y{_suffix(v)}"}


def depth_views_figure(depth: np.ndarray) -> go.Figure:
    """The V summed-depth images (V, H, W) side by side with one shared colour bar; empty pixels blank."""
    depth = np.asarray(depth, dtype=np.float32)
    shown = np.where(depth != 0, depth, np.nan)  # (V, H, W)
    occupied = depth[depth != 0]
    lo, hi = (float(occupied.min()), float(occupied.max())) if occupied.size else (0.0, 1.0)
    traces = [go.Heatmap(z=shown[v], coloraxis="coloraxis", hoverongaps=False, **_on_view(v),
                         hovertemplate="row %{y}, col %{x}<br>depth %{z:.3f}<extra></extra>")
              for v in range(depth.shape[0])]
    coloraxis = {"colorscale": DEPTH_SCALE, "cmin": lo, "cmax": hi,
                 "colorbar": {"title": {"text": "summed depth"}}}
    return go.Figure(data=traces, layout=_image_grid_layout(depth.shape[0], coloraxis))


def saliency_views_figure(depth: np.ndarray, saliency: np.ndarray) -> go.Figure:
    """Teacher saliency (V, h, w), bicubically upsampled, with the occupied pixels of each depth image
    (V, H, W) as a light veil on top."""
    heat = upsample_saliency(np.asarray(saliency, dtype=np.float32), SALIENCY_DISPLAY_SIZE)  # (V, S, S)
    num_views, size = depth.shape[0], depth.shape[-1]
    stride = size // SALIENCY_DISPLAY_SIZE
    occupied = (np.asarray(depth) != 0).reshape(num_views, SALIENCY_DISPLAY_SIZE, stride,
                                                 SALIENCY_DISPLAY_SIZE, stride).any(axis=(2, 4))  # (V, S, S)
    veil = np.where(occupied, 1.0, np.nan).astype(np.float32)  # (V, S, S)
    traces = []
    for v in range(num_views):
        traces.append(go.Heatmap(z=heat[v], coloraxis="coloraxis", **_on_view(v),
                                 hovertemplate="saliency %{z:.2e}<extra></extra>"))
        traces.append(go.Heatmap(z=veil[v], colorscale=[[0, SHAPE_VEIL], [1, SHAPE_VEIL]], showscale=False,
                                 hoverinfo="skip", **_on_view(v)))
    coloraxis = {"colorscale": SALIENCY_SCALE, "cmin": 0.0, "cmax": float(heat.max()),
                 "colorbar": {"title": {"text": "teacher saliency"}, "exponentformat": "e"}}
    return go.Figure(data=traces, layout=_image_grid_layout(num_views, coloraxis))


def token_saliency_figure(points: np.ndarray, centers: np.ndarray, saliency: np.ndarray, *,
                          title: str = "") -> go.Figure:
    """Token saliency (G,) painted on the token centres (G, 3), over the faint cloud (N, 3)."""
    sal = np.asarray(saliency, dtype=np.float32)
    traces = [
        _scatter3d(points, name="points", color=CONTEXT_RGB, size=CLOUD_MARKER / 2,
                   opacity=CONTEXT_OPACITY, hoverinfo="skip"),
        _scatter3d(centers, name="tokens", color=sal, size=TOKEN_MARKER, hoverinfo="text",
                   text=[f"saliency {s:.2e}" for s in sal],
                   marker={"colorscale": SALIENCY_SCALE, "showscale": True,
                           "colorbar": {"title": {"text": "saliency"}, "exponentformat": "e"}}),
    ]
    return go.Figure(data=traces, layout={**_scenes_layout([title]), "showlegend": False})


def masks_figure(points: np.ndarray, centers: np.ndarray, masks: Sequence[np.ndarray],
                 titles: Sequence[str], saliency: np.ndarray) -> go.Figure:
    """The tokens (G, 3) under each mask (G,) True = masked, side by side: visible coloured, masked grey."""
    sal = np.asarray(saliency, dtype=np.float32)
    traces = []
    for i, mask in enumerate(masks):
        mask, scene = np.asarray(mask, dtype=bool), f"scene{_suffix(i)}"
        traces.append(_scatter3d(points, name="points", color=CONTEXT_RGB, size=CLOUD_MARKER / 2, scene=scene,
                                 opacity=CONTEXT_OPACITY, hoverinfo="skip", showlegend=False))
        for name, keep, colour, size in (("masked token", mask, MASKED, MASKED_TOKEN_MARKER),
                                         ("visible token", ~mask, VISIBLE, TOKEN_MARKER)):
            traces.append(_scatter3d(centers[keep], name=name, color=colour, size=size, scene=scene,
                                     legendgroup=name, showlegend=i == 0,
                                     text=[f"saliency {s:.2e}" for s in sal[keep]], hoverinfo="text"))
    return go.Figure(data=traces, layout=_scenes_layout(titles))


@dataclass
class ReconstructionPanel:
    """One reconstruction to draw: visible input points, masked ground truth and prediction, each (M, 3)."""

    title: str
    visible: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray


def reconstruction_figure(panels: Sequence[ReconstructionPanel]) -> go.Figure:
    """Each panel in its own 3D view, with one legend for the three kinds of points."""
    traces = []
    for i, panel in enumerate(panels):
        for name, pts, colour in (("visible input", panel.visible, VISIBLE),
                                  ("masked ground truth", panel.truth, TRUTH),
                                  ("prediction", panel.predicted, PREDICTED)):
            traces.append(_scatter3d(pts, name=name, color=colour, size=CLOUD_MARKER,
                                     scene=f"scene{_suffix(i)}", legendgroup=name, showlegend=i == 0))
    return go.Figure(data=traces, layout=_scenes_layout([p.title for p in panels]))


def embedding_figure(coords: np.ndarray, labels: np.ndarray, is_query: np.ndarray, class_names: Sequence[str],
                     *, current: np.ndarray | None = None) -> go.Figure:
    """2D embedding (n, 2) of support and query features, coloured by class (n,), queries as crosses.

    ``current`` (2,) marks the shape on screen with a star.
    """
    traces = []
    for c, name in enumerate(class_names):
        colour = CLASS_COLOURS[c % len(CLASS_COLOURS)]
        for query, symbol, kind in ((False, "circle", "support"), (True, "x", "query")):
            keep = (labels == c) & (is_query == query)
            if keep.any():
                traces.append(go.Scatter(x=coords[keep, 0], y=coords[keep, 1], mode="markers",
                                         name=f"{name} ({kind})", legendgroup=name,
                                         marker={"color": colour, "symbol": symbol, "size": 9}))
    if current is not None:
        traces.append(go.Scatter(x=[current[0]], y=[current[1]], mode="markers", name="current shape",
                                 marker={"color": "black", "symbol": "star", "size": 16}))
    return go.Figure(data=traces, layout={
        "template": TEMPLATE, "height": FIG_HEIGHT, "margin": EMBEDDING_MARGIN,
        "xaxis": {"title": {"text": "PC 1"}}, "yaxis": {"title": {"text": "PC 2"}},
        "legend": {"orientation": "h", "y": -0.18, "x": 0.5, "xanchor": "center"},
    })


def thumbnail(points: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """A small oblique rendering (size, size, 3) uint8 of a cloud (N, 3): nearer points darker."""
    pts = np.asarray(points, dtype=np.float64)
    azim, elev = np.deg2rad(THUMB_AZIM_DEG), np.deg2rad(THUMB_ELEV_DEG)
    turn = np.array([[np.cos(azim), -np.sin(azim), 0.0], [np.sin(azim), np.cos(azim), 0.0], [0.0, 0.0, 1.0]])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(elev), -np.sin(elev)], [0.0, np.sin(elev), np.cos(elev)]])
    view = pts @ turn.T @ tilt.T  # (N, 3): x right, y away from the viewer, z up
    plane = view[:, [0, 2]]  # (N, 2)
    centre = (plane.min(0) + plane.max(0)) / 2
    scale = size * (1 - 2 * THUMB_MARGIN) / max(float(np.ptp(plane, axis=0).max()), np.finfo(np.float32).eps)
    col = np.round(size / 2 + (plane[:, 0] - centre[0]) * scale).astype(int)  # (N,)
    row = np.round(size / 2 - (plane[:, 1] - centre[1]) * scale).astype(int)  # (N,) up is row 0
    near = (view[:, 1].max() - view[:, 1]) / max(float(np.ptp(view[:, 1])), np.finfo(np.float32).eps)
    offsets = np.arange(-THUMB_DOT, THUMB_DOT + 1)
    d_row, d_col = (o.ravel() for o in np.meshgrid(offsets, offsets, indexing="ij"))  # (D,)
    rows = np.clip(row[:, None] + d_row, 0, size - 1).ravel()  # (N * D,)
    cols = np.clip(col[:, None] + d_col, 0, size - 1).ravel()  # (N * D,)
    depth = np.repeat(view[:, 1], d_row.size)  # (N * D,)
    shade = np.repeat(near, d_row.size)  # (N * D,)
    order = np.argsort(depth, kind="stable")  # nearest first
    _, first = np.unique((rows * size + cols)[order], return_index=True)
    winner = order[first]  # the nearest point at each painted pixel
    image = np.full((size, size, 3), THUMB_BACKGROUND, dtype=np.uint8)
    colour = THUMB_FAR_RGB + (THUMB_NEAR_RGB - THUMB_FAR_RGB) * shade[winner, None]  # (P, 3)
    image[rows[winner], cols[winner]] = colour.round().astype(np.uint8)
    return image


# ----------------------------------------------------------------------------------- what 2D guidance does
VISIBILITY_SCALE = "Viridis"
CHART_MARGIN = {"l": 60, "r": 60, "t": 40, "b": 50}
RANDOM_RGB, GUIDED_RGB = "rgb(127,127,127)", "rgb(31,119,180)"
PAPER_TAU_RGB, CURRENT_TAU_RGB, GREEDY_RGB = "rgb(214,39,40)", "rgb(44,160,44)", "rgb(148,103,189)"
# Rank-chart lines in the order random, paper, current, greedy: random drawn wide, since the paper's
# curve lies on top of it (the lesson of the chart).
CURVE_STYLES = (("dot", RANDOM_RGB, 5), ("solid", PAPER_TAU_RGB, 2), ("dash", CURRENT_TAU_RGB, 2),
                ("longdash", GREEDY_RGB, 2))


def visibility_figure(points: np.ndarray, centers: np.ndarray, chances: Sequence[np.ndarray],
                      titles: Sequence[str]) -> go.Figure:
    """Each token (G, 3) coloured by its chance of staying visible (G,) under each mask, side by side.

    One colour scale from 0 to 1 for every panel, so equal colours mean equal chances.
    """
    traces = []
    for i, chance in enumerate(chances):
        scene, chance = f"scene{_suffix(i)}", np.asarray(chance, dtype=np.float32)
        traces.append(_scatter3d(points, name="points", color=CONTEXT_RGB, size=CLOUD_MARKER / 2, scene=scene,
                                 opacity=CONTEXT_OPACITY, hoverinfo="skip", showlegend=False))
        traces.append(_scatter3d(centers, name="tokens", color=chance, size=TOKEN_MARKER, scene=scene,
                                 showlegend=False, hoverinfo="text",
                                 text=[f"P(visible) {p:.3f}" for p in chance],
                                 marker={"coloraxis": "coloraxis"}))
    layout = {**_scenes_layout(titles), "showlegend": False,
              "coloraxis": {"colorscale": VISIBILITY_SCALE, "cmin": 0.0, "cmax": 1.0,
                            "colorbar": {"title": {"text": "P(visible)"}}}}
    return go.Figure(data=traces, layout=layout)


def visibility_rank_figure(curves: Sequence[tuple[str, np.ndarray]], *, uniform: float) -> go.Figure:
    """Chance of staying visible (G,) against saliency rank (1 = most salient), one line per sampler
    (random, paper, current, greedy: :data:`CURVE_STYLES`).

    ``uniform`` is the random mask's chance, visible / G, drawn as a reference line.
    """
    traces = []
    for (name, chance), (dash, colour, width) in zip(curves, CURVE_STYLES, strict=True):
        rank = np.arange(1, len(chance) + 1)
        traces.append(go.Scatter(x=rank, y=np.asarray(chance), mode="lines", name=name,
                                 line={"dash": dash, "color": colour, "width": width}))
    return go.Figure(data=traces, layout={
        "template": TEMPLATE, "height": FIG_HEIGHT, "margin": CHART_MARGIN,
        "xaxis": {"title": {"text": "saliency rank of the token (1 = most salient)"}},
        "yaxis": {"title": {"text": "chance of staying visible"}, "range": [-0.03, 1.03]},
        "legend": {"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center"},
        "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": uniform, "y1": uniform,
                    "line": {"color": RANDOM_RGB, "width": 1, "dash": "dot"}}],
    })


def chamfer_box_figure(random: np.ndarray, guided: np.ndarray, *, guided_name: str,
                       title: str) -> go.Figure:
    """Box plots of the Chamfer-L2 (S,) of many mask draws under random and guided masking."""
    traces = [go.Box(y=np.asarray(values), name=name, boxpoints="all", jitter=0.4, pointpos=0,
                     marker={"color": colour, "size": 4}, line={"color": colour})
              for name, values, colour in (("random", random, RANDOM_RGB), (guided_name, guided, GUIDED_RGB))]
    return go.Figure(data=traces, layout={
        "template": TEMPLATE, "height": FIG_HEIGHT, "margin": CHART_MARGIN, "showlegend": False,
        "title": {"text": title, "font": {"size": TITLE_SIZE}, "x": 0.5},
        "yaxis": {"title": {"text": "Chamfer-L2 (lower is better)"}, "exponentformat": "e"},
    })


@dataclass
class TauSweep:
    """Per temperature: log10 tau (T,), saliency kept visible and Chamfer-L2 (mean and std, each (T,))."""

    log10_tau: np.ndarray
    kept_mean: np.ndarray
    kept_std: np.ndarray
    chamfer_mean: np.ndarray | None  # None without a checkpoint
    chamfer_std: np.ndarray | None
    random_kept: float  # the random mask's share, the tau -> inf limit
    random_chamfer: float | None


def tau_sweep_figure(sweep: TauSweep, *, paper_log10_tau: float, current_log10_tau: float) -> go.Figure:
    """Saliency kept visible (left axis) and mean Chamfer-L2 (right axis) against log10 tau."""
    x = sweep.log10_tau
    traces = [go.Scatter(x=x, y=100 * sweep.kept_mean, name="saliency kept visible, guided (%, mean ± std)",
                         mode="lines+markers", line={"color": GUIDED_RGB},
                         error_y={"type": "data", "array": 100 * sweep.kept_std, "visible": True})]
    shapes = [_sweep_level(100 * sweep.random_kept, "y", RANDOM_RGB)]
    if sweep.chamfer_mean is not None:
        traces.append(go.Scatter(x=x, y=sweep.chamfer_mean, name="Chamfer-L2, guided (mean ± std)",
                                 yaxis="y2",
                                 mode="lines+markers", line={"color": PREDICTED, "dash": "dash"},
                                 error_y={"type": "data", "array": sweep.chamfer_std, "visible": True}))
        shapes.append(_sweep_level(sweep.random_chamfer, "y2", PREDICTED))
    annotations = []
    for value, name, colour in ((paper_log10_tau, "paper τ = 1", PAPER_TAU_RGB),
                                (current_log10_tau, "current τ", CURRENT_TAU_RGB)):
        shapes.append({"type": "line", "x0": value, "x1": value, "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": colour, "width": 2}})
        annotations.append({"x": value, "y": 1.0, "yref": "paper", "text": name, "showarrow": False,
                            "yanchor": "bottom", "font": {"color": colour}})
    return go.Figure(data=traces, layout={
        "template": TEMPLATE, "height": FIG_HEIGHT, "margin": CHART_MARGIN, "shapes": shapes,
        "annotations": annotations,
        "xaxis": {"title": {"text": "log₁₀ τ (dotted lines: random masking)"}},
        "yaxis": {"title": {"text": "saliency kept visible (%)"}},
        "yaxis2": {"title": {"text": "Chamfer-L2"}, "overlaying": "y", "side": "right",
                   "exponentformat": "e", "showgrid": False},
        "legend": {"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center"},
    })


def _sweep_level(value: float, axis: str, colour: str) -> dict:
    """A dotted horizontal line at ``value`` on ``axis`` across the whole sweep."""
    return {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": axis, "y0": value, "y1": value,
            "line": {"color": colour, "width": 1, "dash": "dot"}}
