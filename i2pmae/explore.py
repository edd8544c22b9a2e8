"""The 2D-guided masking pipeline for one shape, shared by ``i2pmae explore`` and the app.

The expensive, teacher-dependent part (:func:`analyse_shape`) runs once per shape; masks
(:func:`make_masks`) are cheap and can be redrawn for any ratio, temperature and seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .geometry import Hierarchy, build_hierarchy
from .masking import guided_mask, propagate_mask, random_mask
from .model import I2PMAE, Reconstruction
from .teachers import Teacher, TeacherMaps, compute_teacher_maps

PAPER_NUM_CENTERS = (512, 256, 64)
PAPER_GROUP_SIZES = (16, 8, 8)
TOP_SALIENT = 10  # "how many of the 10 most salient tokens stay visible"


@dataclass
class ShapeAnalysis:
    """Teacher-dependent results for one shape (batch of 1)."""

    points: Tensor  # (N, 3) normalised
    hierarchy: Hierarchy  # B = 1
    maps: TeacherMaps  # B = 1
    token_saliency: list[Tensor]  # per level (G_s,)


@dataclass
class MaskPair:
    """Random and 2D-guided masks of the same shape, per level (G_s,), True = masked."""

    random: list[Tensor]
    guided: list[Tensor]


def analyse_shape(
    points: np.ndarray | Tensor,
    teacher: Teacher,
    *,
    num_centers: Sequence[int] = PAPER_NUM_CENTERS,
    group_sizes: Sequence[int] = PAPER_GROUP_SIZES,
) -> ShapeAnalysis:
    """Tokenise a normalised cloud (N, 3), project it, run the teacher and read token saliency per level."""
    device = next(teacher.parameters()).device
    xyz = torch.as_tensor(np.asarray(points, dtype=np.float32), device=device)  # (N, 3)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"expected points of shape (N, 3), got {tuple(xyz.shape)}")
    hierarchy = build_hierarchy(xyz[None], num_centers, group_sizes)
    maps = compute_teacher_maps(teacher, xyz[None])
    return ShapeAnalysis(
        points=xyz, hierarchy=hierarchy, maps=maps, token_saliency=token_saliency(maps, hierarchy)
    )


def token_saliency(maps: TeacherMaps, hierarchy: Hierarchy) -> list[Tensor]:
    """Saliency at each level's centres, averaged over the views (DESIGN 1.4): per level (G_s,), batch 1."""
    return [maps.sample(centers)[1].mean(-1)[0] for centers in hierarchy.centers]


def make_masks(
    analysis: ShapeAnalysis, *, mask_ratio: float = 0.8, temperature: float = 1.0, seed: int = 0
) -> MaskPair:
    """Draw a random and a 2D-guided top-level mask and propagate both down the hierarchy.

    Each mask has its own generator seeded with ``seed``, so moving the temperature never changes
    the random mask.
    """
    device = analysis.points.device
    top_saliency = analysis.token_saliency[-1][None]  # (1, G_top)
    rand_top = random_mask(
        1, top_saliency.shape[1], mask_ratio, generator=_generator(seed, device), device=device
    )
    guided_top = guided_mask(
        top_saliency, mask_ratio, temperature=temperature, generator=_generator(seed, device)
    )
    return MaskPair(
        random=[m[0] for m in propagate_mask(rand_top, analysis.hierarchy)],
        guided=[m[0] for m in propagate_mask(guided_top, analysis.hierarchy)],
    )


def mask_stats(analysis: ShapeAnalysis, masks: MaskPair, level: int) -> dict[str, float]:
    """Numbers that show what 2D guidance changes at one level.

    Mean saliency of the visible tokens under each mask, the Jaccard overlap of the two visible
    sets, and how many of the most salient tokens each mask keeps visible.
    """
    saliency = analysis.token_saliency[level]  # (G_s,)
    visible_random = ~masks.random[level]
    visible_guided = ~masks.guided[level]
    top = torch.topk(saliency, min(TOP_SALIENT, saliency.numel())).indices
    union = (visible_random | visible_guided).sum().clamp(min=1)
    return {
        "tokens": float(saliency.numel()),
        "visible_random": float(visible_random.sum()),
        "visible_guided": float(visible_guided.sum()),
        "mean_saliency_all": float(saliency.mean()),
        "mean_saliency_visible_random": _masked_mean(saliency, visible_random),
        "mean_saliency_visible_guided": _masked_mean(saliency, visible_guided),
        "visible_overlap": float((visible_random & visible_guided).sum() / union),
        "top_salient_visible_random": float(visible_random[top].sum()),
        "top_salient_visible_guided": float(visible_guided[top].sum()),
    }


def _masked_mean(values: Tensor, keep: Tensor) -> float:
    return float(values[keep].mean()) if bool(keep.any()) else float("nan")


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def write_report(
    analysis: ShapeAnalysis,
    out_dir: str | Path,
    *,
    name: str,
    teacher_name: str,
    mask_ratio: float = 0.8,
    temperatures: Sequence[float] = (1.0,),
    seed: int = 0,
) -> list[Path]:
    """Write depth views, saliency and random vs guided masks (one panel per temperature) as PNG.

    Random and guided masks share their seed, so at tau = 1 (weak bias) they differ in few tokens
    and every difference is due to the saliency. ``summary.json`` holds :func:`mask_stats` per level.
    """
    from . import visualize as viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mask_sets = [make_masks(analysis, mask_ratio=mask_ratio, temperature=t, seed=seed) for t in temperatures]
    depth = analysis.maps.views.depth[0].cpu().numpy()  # (V, H, W)
    written = [
        viz.save_depth_views(depth, out / "depth_views.png", title=f"{name}: depth images"),
        viz.save_saliency(depth, analysis.maps.saliency[0].cpu().numpy(), out / "saliency.png",
                          title=f"{name}: {teacher_name} saliency"),
    ]
    summary = {"shape": name, "teacher": teacher_name, "mask_ratio": mask_ratio, "seed": seed, "levels": []}
    points = analysis.points.cpu().numpy()
    for level, centers in enumerate(analysis.hierarchy.centers):
        stats = [mask_stats(analysis, masks, level) for masks in mask_sets]
        summary["levels"].append({f"tau={t:g}": s for t, s in zip(temperatures, stats, strict=True)})
        masks = [mask_sets[0].random[level]] + [m.guided[level] for m in mask_sets]
        titles = [f"random: mean saliency of visible {stats[0]['mean_saliency_visible_random']:.2e}"]
        titles += [f"2D-guided tau={t:g}: {s['mean_saliency_visible_guided']:.2e}"
                   for t, s in zip(temperatures, stats, strict=True)]
        written.append(viz.save_mask_comparison(
            points, centers[0].cpu().numpy(), [m.cpu().numpy() for m in masks], titles,
            out / f"masks_level{level}_{centers.shape[1]}.png",
            saliency=analysis.token_saliency[level].cpu().numpy(),
        ))
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    return [*written, summary_path]


def reconstruct_masks(model: I2PMAE, analysis: ShapeAnalysis, masks: MaskPair) -> dict[str, Reconstruction]:
    """Run the pre-trained model on the shape under its random and its guided mask.

    ``analysis`` must use the model's hierarchy (``num_centers``/``group_sizes`` of ``model.cfg``).
    """
    points, hierarchy = analysis.points[None], analysis.hierarchy  # (1, N, 3)
    with torch.no_grad():
        return {
            kind: model.reconstruct(points, analysis.maps, top_mask=levels[-1][None], hierarchy=hierarchy)
            for kind, levels in (("random", masks.random), ("guided", masks.guided))
        }


def write_reconstructions(
    model: I2PMAE,
    points: np.ndarray | Tensor,
    teacher: Teacher,
    out_dir: str | Path,
    *,
    name: str,
    mask_ratio: float = 0.8,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[Path]:
    """Visible points, masked ground truth and prediction under random and guided masks, as PNG and PLY."""
    from . import visualize as viz

    cfg = model.cfg
    analysis = analyse_shape(points, teacher, num_centers=cfg.num_centers, group_sizes=cfg.group_sizes)
    masks = make_masks(analysis, mask_ratio=mask_ratio, temperature=temperature, seed=seed)
    out = Path(out_dir)
    written = []
    for kind, rec in reconstruct_masks(model, analysis, masks).items():
        visible = rec.visible_points[0][rec.visible_valid[0]].reshape(-1, 3).cpu().numpy()
        truth = rec.target_points[0][rec.masked_valid[0]].reshape(-1, 3).cpu().numpy()
        pred = rec.pred_points[0][rec.masked_valid[0]].reshape(-1, 3).cpu().numpy()
        label = "random" if kind == "random" else f"2D-guided (tau={temperature:g})"
        written.append(viz.save_reconstruction(
            visible, truth, pred, out / f"reconstruction_{kind}.png",
            title=f"{name}, {label} mask: Chamfer-L2 {float(rec.chamfer[0]):.2e}",
        ))
        colours = [viz.rgb255(viz.VISIBLE_RGB, len(visible)), viz.rgb255(viz.TRUTH_RGB, len(truth)),
                   viz.rgb255(viz.PREDICTED_RGB, len(pred))]
        cloud = np.concatenate([visible, truth, pred])
        written.append(viz.write_ply(out / f"reconstruction_{kind}.ply", cloud, np.concatenate(colours)))
    return written
