"""Reconstruction of the masked points by the pre-trained model, under a random and a 2D-guided mask.

The mask explorer tokenises every shape the paper's way (512 / 256 / 64 tokens). A checkpoint may
tokenise differently (the CPU-sized model: 256 / 128 / 32 tokens of 1024 points); then the shape is
re-tokenised the model's way from the cached teacher maps, and the model draws both masks on its own top
level with the same ratio, temperature and seed (:mod:`i2pmae.explore`).
"""

from __future__ import annotations

import plotly.graph_objects as go

from i2pmae.explore import MASK_KINDS, reconstruct_shape, reconstruction_metrics, same_tokens
from i2pmae.model import I2PMAE, Analysis, Reconstruction
from i2pmae.scene import reconstruction_parts

from . import figures

MASK_NAMES = dict(zip(MASK_KINDS, ("random", "2D-guided"), strict=True))


def tokenisation_note(analysis: Analysis, model: I2PMAE) -> str:
    """A sentence on how the model's tokens differ from the explorer's, or "" when they do not."""
    if same_tokens(analysis, model):
        return ""
    tokens = " / ".join(str(g) for g in model.cfg.num_centers)
    return (f" The checkpoint tokenises {model.cfg.num_points} points into {tokens} tokens, so its masks are "
            f"drawn on its own {model.cfg.num_centers[-1]} top tokens with the same ratio, τ and seed.")


def metrics_markdown(rec: Reconstruction) -> str:
    """Chamfer-L2 per token (the training loss) and the shape-level completion metrics, per mask."""
    metrics = [reconstruction_metrics(rec)[kind] for kind in MASK_KINDS]
    threshold = metrics[0]["threshold"]
    rows = [("Chamfer-L2 per token (the loss) ↓", [f"**{m['chamfer_l2_per_token']:.3e}**" for m in metrics]),
            ("Chamfer-L2, all masked points ↓", [f"{m['chamfer_l2']:.3e}" for m in metrics]),
            ("Hausdorff distance ↓", [f"{m['hausdorff']:.3f}" for m in metrics]),
            (f"F-score at d = {threshold:g} ↑", [f"{m['fscore']:.3f}" for m in metrics])]
    lines = ["| | " + " | ".join(MASK_NAMES[kind] for kind in MASK_KINDS) + " |", "|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
    return "\n".join(lines)


def reconstruct(model: I2PMAE, analysis: Analysis, *, mask_ratio: float, temperature: float,
                seed: int) -> tuple[go.Figure, str, Reconstruction]:
    """Visible input, masked ground truth and prediction under each mask; the metrics as a table; the
    reconstruction itself (for the renders and surfaces)."""
    rec = reconstruct_shape(model, analysis, mask_ratio=mask_ratio, temperature=temperature, seed=seed)
    panels = []
    for b, kind in enumerate(MASK_KINDS):
        parts = reconstruction_parts(rec, b)
        panels.append(figures.ReconstructionPanel(
            title=f"{MASK_NAMES[kind]}: Chamfer-L2 {float(rec.chamfer[b]):.2e}",
            visible=parts["visible"], truth=parts["truth"], predicted=parts["predicted"]))
    text = metrics_markdown(rec) + "\n\n" + tokenisation_note(analysis, model).strip()
    return figures.reconstruction_figure(panels), text.strip(), rec
