"""The 2D-guided masking walk-through for one shape, shared by ``i2pmae explore`` and the app.

Everything goes through the model's one analysis path (:meth:`I2PMAE.analyse` and
:meth:`I2PMAE.draw_masks`). The teacher runs once per shape (:func:`analyse_shape`); masks are cheap and
are redrawn for any ratio, temperature and seed (:func:`draw_mask_pair`). The mask panels tokenise the
paper's way (:func:`paper_model`: 512 / 256 / 64 tokens of 2048 points); a checkpoint that tokenises
otherwise gets its own tokens from the same teacher maps (:func:`retokenise`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import get_config
from .model import I2PMAE, Analysis, Reconstruction
from .teachers import Teacher, compute_teacher_maps

EXPLORER_CONFIG = get_config("paper")  # the mask panels' tokenisation: 512 / 256 / 64 tokens of 2048 points
TOP_SALIENT = 10  # "how many of the 10 most salient tokens stay visible"
MASK_KINDS = ("random", "guided")
SAMPLER_DRAWS = 1000  # masks drawn at once to estimate each token's chance of staying visible
GREEDY_TAU = 1e-12  # "tau -> 0": far below any saliency gap, so the sampler keeps the most salient tokens


@dataclass
class MaskPair:
    """Random and 2D-guided masks of one shape from the same seed, per level (G_s,), True = masked."""

    random: list[Tensor]
    guided: list[Tensor]


@functools.cache
def paper_model() -> I2PMAE:
    """The paper's (untrained) model of :data:`EXPLORER_CONFIG`, whose tokenisation and masking the mask
    panels show. Only :meth:`I2PMAE.analyse` and :meth:`I2PMAE.draw_masks` are called on it: no weights."""
    return I2PMAE(EXPLORER_CONFIG).eval()


def analyse_shape(model: I2PMAE, points: np.ndarray | Tensor, teacher: Teacher) -> Analysis:
    """Run the teacher once on a normalised cloud (N, 3) and analyse it the model's way (batch of one)."""
    xyz = torch.as_tensor(np.asarray(points, dtype=np.float32), device=teacher.device)  # (N, 3)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"expected points of shape (N, 3), got {tuple(xyz.shape)}")
    maps = compute_teacher_maps(teacher, xyz[None])
    return model.analyse(xyz[None], maps)


def same_tokens(analysis: Analysis, model: I2PMAE) -> bool:
    """Whether ``analysis`` is tokenised as ``model`` tokenises its own input (points and levels)."""
    hierarchy, cfg = analysis.hierarchy, model.cfg
    return (analysis.points.shape[1] == cfg.num_points
            and tuple(c.shape[1] for c in hierarchy.centers) == cfg.num_centers
            and tuple(n.shape[2] for n in hierarchy.neighbor_idx) == cfg.group_sizes)


def retokenise(model: I2PMAE, analysis: Analysis) -> Analysis:
    """The analysis tokenised like ``model`` (itself when it already is), from the same teacher maps.

    Keeps the first ``cfg.num_points`` points: a uniform subset, since surface samples are i.i.d. and FPS
    prefixes are FPS samples.
    """
    if same_tokens(analysis, model):
        return analysis
    return model.analyse(analysis.points[:, : model.cfg.num_points], analysis.teacher_maps)


def draw_mask_pair(
    model: I2PMAE,
    analysis: Analysis,
    *,
    mask_ratio: float | None = None,
    temperature: float | None = None,
    seed: int = 0,
) -> MaskPair:
    """A random and a 2D-guided mask of one shape, each from a generator seeded with ``seed``.

    Sharing the seed means moving the temperature never changes the random mask, and guided at tau = inf
    equals random. Ratio and temperature default to the model's config.
    """
    device = analysis.points.device

    def draw(mode: str) -> list[Tensor]:
        generator = torch.Generator(device=device).manual_seed(int(seed))
        masks = model.draw_masks(analysis, mask_ratio=mask_ratio, temperature=temperature, mode=mode,
                                 generator=generator)
        return [m[0] for m in masks]

    return MaskPair(random=draw("random"), guided=draw("guided"))


def mask_stats(analysis: Analysis, masks: MaskPair, level: int) -> dict[str, float]:
    """Numbers that show what 2D guidance changes at one level.

    Mean saliency of the visible tokens under each mask, the Jaccard overlap of the two visible
    sets, and how many of the most salient tokens each mask keeps visible.
    """
    saliency = analysis.token_saliency[level][0]  # (G_s,)
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


@dataclass
class SamplerStats:
    """What the mask sampler does for one shape, ratio and temperature, from :data:`SAMPLER_DRAWS` draws.

    ``visible_*`` hold each token's chance of staying visible per level (G_s,); ``kept_*`` the share of the
    top-level token saliency that stays visible, as (mean, std) over the draws.
    """

    temperature: float
    draws: int
    visible_random: list[Tensor]
    visible_guided: list[Tensor]
    kept_random: tuple[float, float]
    kept_guided: tuple[float, float]
    log_ratio: float  # log of the largest / smallest probability of softmax(saliency / tau)
    effective_tokens: float  # perplexity of softmax(saliency / tau): G when uniform, 1 when greedy


def softmax_strength(saliency: Tensor, temperature: float) -> tuple[float, float]:
    """(log of max/min probability, perplexity) of softmax(saliency / tau) over (G,) token saliency."""
    if math.isinf(temperature):
        return 0.0, float(saliency.numel())
    logits = saliency.double() / temperature  # (G,)
    log_p = logits - torch.logsumexp(logits, dim=0)
    entropy = -(log_p.exp() * log_p).nan_to_num().sum()  # 0 * log 0 = 0 for underflowed tokens
    return float(logits.max() - logits.min()), float(entropy.exp())


def sampler_stats(
    model: I2PMAE,
    analysis: Analysis,
    *,
    mask_ratio: float | None = None,
    temperature: float | None = None,
    draws: int = SAMPLER_DRAWS,
    seed: int = 0,
) -> SamplerStats:
    """Estimate each token's chance of staying visible under random and guided masks (one batch of draws).

    Both modes draw from generators seeded alike, as :func:`draw_mask_pair` does, through
    :meth:`I2PMAE.draw_masks` on the analysis repeated ``draws`` times.
    """
    tau = model.cfg.temperature if temperature is None else temperature
    many = analysis.expand(draws)
    saliency = analysis.token_saliency[-1][0]  # (G_top,)

    def draw(mode: str) -> tuple[list[Tensor], tuple[float, float]]:
        generator = torch.Generator(device=analysis.points.device).manual_seed(int(seed))
        masks = model.draw_masks(many, mask_ratio=mask_ratio, temperature=tau, mode=mode, generator=generator)
        visible = [(~m).double().mean(0) for m in masks]  # per level (G_s,)
        kept = (~masks[-1]).double() @ saliency.double() / saliency.double().sum()  # (draws,)
        return visible, (float(kept.mean()), float(kept.std()))

    (visible_random, kept_random), (visible_guided, kept_guided) = draw("random"), draw("guided")
    log_ratio, effective = softmax_strength(saliency, tau)
    return SamplerStats(temperature=tau, draws=draws, visible_random=visible_random,
                        visible_guided=visible_guided, kept_random=kept_random, kept_guided=kept_guided,
                        log_ratio=log_ratio, effective_tokens=effective)


def chamfer_over_seeds(
    model: I2PMAE,
    analysis: Analysis,
    *,
    seeds: Sequence[int],
    temperatures: Sequence[float],
    mask_ratio: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Chamfer-L2 of the model's reconstruction for every mask seed (and temperature), in one batch.

    The masks are those of :func:`draw_mask_pair` for each seed, on the model's own tokens. Returns the
    random masks' (S,) and the guided masks' (T, S), one row per temperature.
    """
    own = retokenise(model, analysis)
    pairs = [[draw_mask_pair(model, own, mask_ratio=mask_ratio, temperature=t, seed=seed) for seed in seeds]
             for t in temperatures]  # (T, S) pairs; the random halves do not depend on t
    rows = [pair.random for pair in pairs[0]] + [pair.guided for row in pairs for pair in row]
    levels = [torch.stack(level) for level in zip(*rows, strict=True)]  # per level (S + T S, G_s)
    chamfer = model.reconstruct(own.expand(len(rows)), levels).chamfer  # (S + T S,)
    return chamfer[: len(seeds)], chamfer[len(seeds):].view(len(temperatures), len(seeds))


def reconstruct_pair(model: I2PMAE, analysis: Analysis, masks: MaskPair) -> Reconstruction:
    """The model's reconstruction under both masks of a pair, in one batch of two (random first)."""
    levels = [torch.stack(level) for level in zip(masks.random, masks.guided, strict=True)]  # (2, G_s)
    return model.reconstruct(analysis.expand(len(MASK_KINDS)), levels)


def write_report(
    model: I2PMAE,
    analysis: Analysis,
    out_dir: str | Path,
    *,
    name: str,
    teacher_name: str,
    mask_ratio: float | None = None,
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
    ratio = model.cfg.mask_ratio if mask_ratio is None else mask_ratio
    mask_sets = [draw_mask_pair(model, analysis, mask_ratio=ratio, temperature=t, seed=seed)
                 for t in temperatures]
    maps = analysis.teacher_maps
    depth = maps.views.depth[0].cpu().numpy()  # (V, H, W)
    written = [
        viz.save_depth_views(depth, out / "depth_views.png", title=f"{name}: depth images"),
        viz.save_saliency(depth, maps.saliency[0].cpu().numpy(), out / "saliency.png",
                          title=f"{name}: {teacher_name} saliency"),
    ]
    summary = {"shape": name, "teacher": teacher_name, "mask_ratio": ratio, "seed": seed, "levels": []}
    points = analysis.points[0].cpu().numpy()
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
            saliency=analysis.token_saliency[level][0].cpu().numpy(),
        ))
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    return [*written, summary_path]


def reconstruct_shape(model: I2PMAE, analysis: Analysis, *, mask_ratio: float | None = None,
                      temperature: float | None = None, seed: int = 0) -> Reconstruction:
    """The model's reconstruction of one shape under the random (row 0) and the guided mask (row 1) of one
    seed, on its own tokens (``analysis`` may come from another tokenisation: it is retokenised)."""
    own = retokenise(model, analysis)
    masks = draw_mask_pair(model, own, mask_ratio=mask_ratio, temperature=temperature, seed=seed)
    return reconstruct_pair(model, own, masks)


def reconstruction_metrics(rec: Reconstruction) -> dict[str, dict[str, float]]:
    """Per mask kind: the per-token Chamfer-L2 (the loss) and the shape-level completion metrics of all
    masked points together (Chamfer-L2, Hausdorff, F-score at :data:`~i2pmae.surface.F_SCORE_THRESHOLD`)."""
    from .scene import reconstruction_parts
    from .surface import completion_metrics

    metrics = {}
    for row, kind in enumerate(MASK_KINDS):
        parts = reconstruction_parts(rec, row)
        metrics[kind] = {"chamfer_l2_per_token": float(rec.chamfer[row]),
                         **completion_metrics(parts["predicted"], parts["truth"])}
    return metrics


def write_reconstructions(
    rec: Reconstruction,
    out_dir: str | Path,
    *,
    name: str,
    mask_ratio: float,
    temperature: float,
    seed: int,
) -> list[Path]:
    """Visible points, masked ground truth and prediction under random and guided masks, as PNG and PLY,
    and ``reconstruction.json`` with :func:`reconstruction_metrics`.

    ``rec`` comes from :func:`reconstruct_shape`; ``mask_ratio``, ``temperature`` and ``seed`` are the
    settings it was drawn with, recorded in the JSON.
    """
    from . import visualize as viz
    from .scene import reconstruction_parts

    out = Path(out_dir)
    written = []
    for b, kind in enumerate(MASK_KINDS):
        parts = reconstruction_parts(rec, b)
        visible, truth, pred = parts["visible"], parts["truth"], parts["predicted"]
        label = "random" if kind == "random" else f"2D-guided (tau={temperature:g})"
        written.append(viz.save_reconstruction(
            visible, truth, pred, out / f"reconstruction_{kind}.png",
            title=f"{name}, {label} mask: Chamfer-L2 {float(rec.chamfer[b]):.2e}",
        ))
        colours = [viz.rgb255(viz.VISIBLE_RGB, len(visible)), viz.rgb255(viz.TRUTH_RGB, len(truth)),
                   viz.rgb255(viz.PREDICTED_RGB, len(pred))]
        cloud = np.concatenate([visible, truth, pred])
        written.append(viz.write_ply(out / f"reconstruction_{kind}.ply", cloud, np.concatenate(colours)))
    summary = {"shape": name, "mask_ratio": mask_ratio, "temperature": temperature, "seed": seed,
               "metrics": reconstruction_metrics(rec)}
    summary_path = out / "reconstruction.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    return [*written, summary_path]


def write_renders(
    analysis: Analysis,
    out_dir: str | Path,
    *,
    name: str,
    reconstruction: Reconstruction | None = None,
    level: int = 1,
    mask_ratio: float | None = None,
    temperature: float | None = None,
    seed: int = 0,
) -> list[Path]:
    """Open3D renders (``render_*.png``) of the shape, both masks at ``level`` of the explorer's tokens and,
    given one (:func:`reconstruct_shape`), both reconstructions, from one fixed camera, rendered in a bounded
    child process.

    Raises:
        RenderError: Open3D could not render here, crashed or stalled (the figures stay the reference).
    """
    from .render import render_stills
    from .scene import still_scenes

    explorer = paper_model()
    masks = draw_mask_pair(explorer, analysis, mask_ratio=mask_ratio, temperature=temperature, seed=seed)
    return render_stills(still_scenes(name, analysis, masks, level, reconstruction), out_dir)
