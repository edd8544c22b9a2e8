"""Reconstruction of the masked points by the pre-trained model, under a random and a 2D-guided mask.

The mask explorer tokenises every shape the paper's way (512 / 256 / 64 tokens). A checkpoint may
tokenise differently (the CPU-sized model: 256 / 128 / 32 tokens of 1024 points); then the shape is
re-tokenised the model's way from the cached teacher maps, and the model draws both masks on its own top
level with the same ratio, temperature and seed (:mod:`i2pmae.explore`).
"""

from __future__ import annotations

import plotly.graph_objects as go

from i2pmae.explore import MASK_KINDS, draw_mask_pair, reconstruct_pair, retokenise, same_tokens
from i2pmae.model import I2PMAE, Analysis

from . import figures

MASK_NAMES = dict(zip(MASK_KINDS, ("random", "2D-guided"), strict=True))


def tokenisation_note(analysis: Analysis, model: I2PMAE) -> str:
    """A sentence on how the model's tokens differ from the explorer's, or "" when they do not."""
    if same_tokens(analysis, model):
        return ""
    tokens = " / ".join(str(g) for g in model.cfg.num_centers)
    return (f" The checkpoint tokenises {model.cfg.num_points} points into {tokens} tokens, so its masks are "
            f"drawn on its own {model.cfg.num_centers[-1]} top tokens with the same ratio, τ and seed.")


def reconstruct(model: I2PMAE, analysis: Analysis, *, mask_ratio: float, temperature: float,
                seed: int) -> tuple[go.Figure, str]:
    """Visible input, masked ground truth and prediction under each mask; Chamfer-L2 of each, as text."""
    own = retokenise(model, analysis)
    masks = draw_mask_pair(model, own, mask_ratio=mask_ratio, temperature=temperature, seed=seed)
    rec = reconstruct_pair(model, own, masks)
    panels = []
    for b, kind in enumerate(MASK_KINDS):
        masked, visible = rec.masked_valid[b], rec.visible_valid[b]
        panels.append(figures.ReconstructionPanel(
            title=f"{MASK_NAMES[kind]}: Chamfer-L2 {float(rec.chamfer[b]):.2e}",
            visible=rec.visible_points[b][visible].reshape(-1, 3).numpy(),  # (V_0 K_0, 3)
            truth=rec.target_points[b][masked].reshape(-1, 3).numpy(),  # (M K_h, 3)
            predicted=rec.pred_points[b][masked].reshape(-1, 3).numpy(),  # (M P, 3)
        ))
    chamfer = " · ".join(f"{MASK_NAMES[kind]}: Chamfer-L2 = **{c:.3e}**"
                         for kind, c in zip(MASK_KINDS, rec.chamfer.tolist(), strict=True))
    text = chamfer + " (lower is better)." + tokenisation_note(analysis, model)
    return figures.reconstruction_figure(panels), text
