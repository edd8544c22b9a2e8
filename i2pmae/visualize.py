"""Static pictures of the pipeline (PNG via matplotlib, PLY via plain text) for ``i2pmae explore``.

The app draws interactive plotly figures in ``app/figures.py``; this module is for files on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VIEW_NAMES = ("view 1: (x, y) -> z", "view 2: (z, x) -> y", "view 3: (y, z) -> x")
VISIBLE_RGB = (0.12, 0.47, 0.71)
MASKED_RGB = (0.80, 0.80, 0.80)
PREDICTED_RGB = (0.84, 0.15, 0.16)
TRUTH_RGB = (0.17, 0.63, 0.17)
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def upsample_saliency(saliency: np.ndarray, size: int) -> np.ndarray:
    """(V, h, w) patch saliency -> (V, size, size), bicubic like the back-projection (DESIGN 1.4)."""
    maps = torch.as_tensor(saliency, dtype=torch.float32)[:, None]  # (V, 1, h, w)
    up = F.interpolate(maps, size=(size, size), mode="bicubic", align_corners=False)
    return up[:, 0].clamp(min=0).numpy()  # (V, size, size)


def save_depth_views(depth: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """The V summed-depth images (V, H, W) side by side with one colour bar; empty pixels are white."""
    occupied = depth != 0
    lo, hi = (depth[occupied].min(), depth[occupied].max()) if occupied.any() else (0.0, 1.0)
    fig, axes = _view_row(depth.shape[0])
    for v, ax in enumerate(axes):
        image = ax.imshow(np.ma.masked_where(~occupied[v], depth[v]), cmap="viridis", vmin=lo, vmax=hi)
    return _finish_view_row(fig, axes, image, "summed depth", title, path)


def save_saliency(depth: np.ndarray, saliency: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """Teacher saliency (V, h, w) upsampled and laid over the grey depth images (V, H, W)."""
    heat = upsample_saliency(saliency, depth.shape[-1])
    fig, axes = _view_row(depth.shape[0])
    for v, ax in enumerate(axes):
        ax.imshow(depth[v] != 0, cmap="Greys", vmin=0, vmax=2)  # shape in mid grey on white
        # Opacity follows the saliency, so the shape stays visible where the teacher looks away.
        image = ax.imshow(heat[v], cmap="inferno", alpha=0.9 * heat[v] / heat.max(), vmin=0, vmax=heat.max())
    return _finish_view_row(fig, axes, image, "teacher saliency", title, path)


def _view_row(num_views: int):
    """One row of image panels, titled by view."""
    fig, axes = _pyplot().subplots(
        1, num_views, figsize=(3.6 * num_views + 0.8, 3.8), constrained_layout=True
    )
    axes = np.atleast_1d(axes)
    for v, ax in enumerate(axes):
        ax.set_title(VIEW_NAMES[v] if v < len(VIEW_NAMES) else f"view {v + 1}", fontsize=9)
        ax.set_axis_off()
    return fig, axes


def _finish_view_row(fig, axes, image, label: str, title: str, path: str | Path) -> Path:
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=label)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_mask_comparison(
    points: np.ndarray,
    centers: np.ndarray,
    masks: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    *,
    saliency: np.ndarray | None = None,
) -> Path:
    """3D scatter of the tokens (G, 3) under each mask (G,) True = masked, side by side.

    With ``saliency`` (G,), a first panel paints the token saliency itself.
    """
    plt = _pyplot()
    panels = (1 if saliency is not None else 0) + len(masks)
    fig = plt.figure(figsize=(4.2 * panels, 4.4), constrained_layout=True)
    col = 1
    if saliency is not None:
        ax = _axes3d(fig, panels, col, points)
        ax.scatter(*points.T, color=MASKED_RGB, s=0.5, alpha=0.3, depthshade=False)
        ax.scatter(*centers.T, c=saliency, cmap="inferno", s=14, depthshade=False)
        ax.set_title("token saliency (2D teacher)", fontsize=9)
        col += 1
    for mask, title in zip(masks, titles, strict=True):
        ax = _axes3d(fig, panels, col, points)
        ax.scatter(*points.T, color=MASKED_RGB, s=0.5, alpha=0.3, depthshade=False)
        ax.scatter(*centers[mask].T, color=MASKED_RGB, s=8, depthshade=False, label="masked")
        ax.scatter(*centers[~mask].T, color=VISIBLE_RGB, s=16, depthshade=False, label="visible")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="lower left", fontsize=7)
        col += 1
    return _save(fig, path)


def save_reconstruction(
    visible: np.ndarray, truth: np.ndarray, predicted: np.ndarray, path: str | Path, *, title: str = ""
) -> Path:
    """Visible input points, masked ground truth and predicted points (each (M, 3)) in one 3D view."""
    plt = _pyplot()
    fig = plt.figure(figsize=(5.0, 5.0), constrained_layout=True)
    ax = _axes3d(fig, 1, 1, np.concatenate([visible, truth, predicted]))
    ax.scatter(*visible.T, color=VISIBLE_RGB, s=3, depthshade=False, label="visible input")
    ax.scatter(*truth.T, color=TRUTH_RGB, s=3, depthshade=False, label="masked ground truth")
    ax.scatter(*predicted.T, color=PREDICTED_RGB, s=3, depthshade=False, label="prediction")
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """ASCII PLY of points (M, 3) with optional uint8 colours (M, 3)."""
    points = np.asarray(points, dtype=np.float32)
    header = ["ply", "format ascii 1.0", f"element vertex {len(points)}"]
    header += [f"property float {axis}" for axis in "xyz"]
    rows = points.astype(str)
    if colors is not None:
        header += [f"property uchar {c}" for c in ("red", "green", "blue")]
        rows = np.concatenate([rows, np.asarray(colors, dtype=np.uint8).astype(str)], axis=1)
    header.append("end_header")
    lines = header + [" ".join(row) for row in rows]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def rgb255(rgb: Sequence[float], count: int) -> np.ndarray:
    """One matplotlib-style colour (floats in [0, 1]) repeated ``count`` times as uint8 (count, 3)."""
    return np.tile(np.round(np.asarray(rgb) * 255).astype(np.uint8), (count, 1))


def _axes3d(fig, panels: int, col: int, extent_points: np.ndarray):
    ax = fig.add_subplot(1, panels, col, projection="3d")
    lo, hi = extent_points.min(0), extent_points.max(0)
    for setter, a, b in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), lo, hi, strict=True):
        setter(a, b)
    # Box sides proportional to the data extents keep one scale on all axes and fill the panel.
    ax.set_box_aspect(np.maximum(hi - lo, 1e-3 * (hi - lo).max()), zoom=1.25)
    ax.view_init(elev=20, azim=-60)
    ax.set_axis_off()
    return ax


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path
