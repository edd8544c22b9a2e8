"""Reconstruction of the masked points by the pre-trained model, under a random and a 2D-guided mask.

The mask explorer tokenises every shape the paper's way (512 / 256 / 64 tokens). A checkpoint may
tokenise differently (the CPU-sized model: 256 / 128 / 32 tokens of 1024 points); then the shape is
re-tokenised the model's way, reusing the cached teacher maps, and both masks are drawn on the model's
top level with the same ratio, temperature and seed.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from torch import nn

from i2pmae.explore import MaskPair, ShapeAnalysis, make_masks, token_saliency
from i2pmae.geometry import build_hierarchy

from . import figures

MASK_NAMES = ("random", "2D-guided")


def _same_tokens(analysis: ShapeAnalysis, model: nn.Module) -> bool:
    cfg = model.cfg
    hierarchy = analysis.hierarchy
    return (tuple(c.shape[1] for c in hierarchy.centers) == tuple(cfg.num_centers)
            and tuple(n.shape[2] for n in hierarchy.neighbor_idx) == tuple(cfg.group_sizes))


def model_analysis(analysis: ShapeAnalysis, model: nn.Module) -> ShapeAnalysis:
    """The analysis tokenised like ``model`` (itself when it already is).

    Keeps the first ``cfg.num_points`` points (a uniform subset: surface samples are i.i.d. and FPS
    prefixes are FPS samples) and reads token saliency from the same teacher maps.
    """
    if _same_tokens(analysis, model) and len(analysis.points) == model.cfg.num_points:
        return analysis
    points = analysis.points[: model.cfg.num_points]  # (N', 3)
    hierarchy = build_hierarchy(points[None], model.cfg.num_centers, model.cfg.group_sizes)
    saliency = token_saliency(analysis.maps, hierarchy)
    return ShapeAnalysis(points=points, hierarchy=hierarchy, maps=analysis.maps, token_saliency=saliency)


def tokenisation_note(analysis: ShapeAnalysis, model: nn.Module) -> str:
    """A sentence on how the model's tokens differ from the explorer's, or "" when they do not."""
    if _same_tokens(analysis, model):
        return ""
    tokens = " / ".join(str(g) for g in model.cfg.num_centers)
    return (f" The checkpoint tokenises {model.cfg.num_points} points into {tokens} tokens, so its masks are "
            f"drawn on its own {model.cfg.num_centers[-1]} top tokens with the same ratio, τ and seed.")


@torch.no_grad()
def _figure(model: nn.Module, analysis: ShapeAnalysis, masks: MaskPair) -> tuple[go.Figure, str]:
    """Visible input, masked ground truth and prediction under each mask; Chamfer-L2 of each, as text."""
    points = analysis.points[None].expand(len(MASK_NAMES), -1, -1)  # (2, N, 3)
    top_mask = torch.stack([masks.random[-1], masks.guided[-1]])  # (2, G_top)
    rec = model.reconstruct(points, top_mask=top_mask)
    panels = []
    for b, name in enumerate(MASK_NAMES):
        masked, visible = rec.masked_valid[b], rec.visible_valid[b]
        panels.append(figures.ReconstructionPanel(
            title=f"{name}: Chamfer-L2 {float(rec.chamfer[b]):.2e}",
            visible=rec.visible_points[b][visible].reshape(-1, 3).numpy(),  # (V_0 K_0, 3)
            truth=rec.target_points[b][masked].reshape(-1, 3).numpy(),  # (M K_h, 3)
            predicted=rec.pred_points[b][masked].reshape(-1, 3).numpy(),  # (M P, 3)
        ))
    chamfer = " · ".join(f"{name}: Chamfer-L2 = **{c:.3e}**"
                         for name, c in zip(MASK_NAMES, rec.chamfer.tolist(), strict=True))
    return figures.reconstruction_figure(panels), chamfer + " (lower is better)."


def reconstruct(model: nn.Module, analysis: ShapeAnalysis, *, mask_ratio: float, temperature: float,
                seed: int) -> tuple[go.Figure, str]:
    """Draw both masks the model's way and reconstruct the masked points under each."""
    own = model_analysis(analysis, model)
    masks = make_masks(own, mask_ratio=mask_ratio, temperature=temperature, seed=seed)
    figure, text = _figure(model, own, masks)
    return figure, text + tokenisation_note(analysis, model)

