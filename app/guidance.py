"""What 2D guidance does to the masks and to the reconstruction, measured over many draws (no Gradio here).

Sampler panels: each token's chance of staying visible, estimated from :data:`~i2pmae.explore.SAMPLER_DRAWS`
draws of the explorer's model (``sampler_stats``). Reconstruction panels: the Chamfer-L2 of the checkpoint
over :data:`SPREAD_SEEDS` mask seeds under each mask, and a sweep of tau. All results are cached per shape
and settings, so moving the seed slider or the level never recomputes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from i2pmae.explore import GREEDY_TAU, SamplerStats, chamfer_over_seeds, paper_model, sampler_stats
from i2pmae.model import I2PMAE

from . import figures
from .cache import LRUCache
from .shapes import AnalysedShape

PAPER_TAU = 1.0
SPREAD_SEEDS = range(32)  # mask seeds of the box plots
SWEEP_SEEDS = range(8)  # mask seeds per temperature of the tau sweep
SWEEP_LOG10_TAUS = (-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0)
STATS_CACHE_SIZE = 128  # sampler statistics: a few KB each
SPREAD_CACHE_SIZE = 64  # Chamfer arrays of 32 + 56 floats each

_sampler_cache: LRUCache[SamplerStats] = LRUCache(STATS_CACHE_SIZE)
_spread_cache: LRUCache[tuple[np.ndarray, np.ndarray]] = LRUCache(SPREAD_CACHE_SIZE)
_sweep_cache: LRUCache[figures.TauSweep] = LRUCache(SPREAD_CACHE_SIZE)


def cached_stats(result: AnalysedShape, mask_ratio: float, tau: float) -> SamplerStats:
    """:func:`~i2pmae.explore.sampler_stats` of the explorer's model, cached per shape, ratio and tau."""
    return _sampler_cache.get_or_compute(
        (result.key, mask_ratio, tau),
        lambda: sampler_stats(paper_model(), result.analysis, mask_ratio=mask_ratio, temperature=tau))


@dataclass
class GuidancePanels:
    """The sampler's figures and numbers for one shape and setting."""

    visibility: go.Figure
    rank_chart: go.Figure
    numbers: str


def guidance_panels(result: AnalysedShape, level: int, mask_ratio: float, tau: float) -> GuidancePanels:
    """Chance of staying visible on the tokens of ``level`` and against saliency rank, and the numbers."""
    analysis = result.analysis
    current = cached_stats(result, mask_ratio, tau)
    points = analysis.points[0].numpy()  # (N, 3)
    centers = analysis.hierarchy.centers[level][0].numpy()  # (G_s, 3)
    visibility = figures.visibility_figure(
        points, centers, [current.visible_random[level].numpy(), current.visible_guided[level].numpy()],
        ["random", f"2D-guided (τ = {tau:.3g})"])
    order = analysis.token_saliency[-1][0].argsort(descending=True)  # top-level tokens, most salient first
    curves = [("τ = ∞ (random)", current.visible_random[-1]),
              (f"τ = {PAPER_TAU:g} (paper)", cached_stats(result, mask_ratio, PAPER_TAU).visible_guided[-1]),
              (f"τ = {tau:.3g} (current)", current.visible_guided[-1]),
              ("τ → 0 (greedy)", cached_stats(result, mask_ratio, GREEDY_TAU).visible_guided[-1])]
    uniform = float(current.visible_random[-1].mean())
    rank_chart = figures.visibility_rank_figure([(name, c[order].numpy()) for name, c in curves],
                                                uniform=uniform)
    return GuidancePanels(visibility=visibility, rank_chart=rank_chart,
                          numbers=guidance_markdown(current, len(order)))


def ratio_text(log_ratio: float) -> str:
    """exp(log_ratio) readably: ×1.01, ×4.9e+04, or ×10^1234 when it overflows a float."""
    if log_ratio < math.log(1e15):
        return f"×{math.exp(log_ratio):.3g}"
    return f"×10^{log_ratio / math.log(10):.3g}"


def guidance_markdown(stats: SamplerStats, num_tokens: int) -> str:
    """How strong the guidance is at this tau, as a Markdown table (random vs guided)."""
    visible_guided = stats.visible_guided[-1]
    random_share, guided_share = (f"{100 * m:.1f} ± {100 * s:.1f} %" for m, s in
                                  (stats.kept_random, stats.kept_guided))
    uniform = float(stats.visible_random[-1].mean())
    rows = [
        ("largest / smallest probability in softmax(s / τ)", "×1", ratio_text(stats.log_ratio)),
        (f"effective number of tokens (perplexity, of {num_tokens})", f"{num_tokens}",
         f"{stats.effective_tokens:.1f}"),
        ("share of token saliency kept visible (mean ± std over draws)", random_share, guided_share),
        ("chance of staying visible: most / least likely token", f"{uniform:.2f} / {uniform:.2f}",
         f"{float(visible_guided.max()):.2f} / {float(visible_guided.min()):.2f}"),
    ]
    lines = [f"| top level, {stats.draws} draws | random | 2D-guided (τ = {stats.temperature:.3g}) |",
             "|---|---|---|"]
    lines += [f"| {name} | {r} | {g} |" for name, r, g in rows]
    return "\n".join(lines)


def chamfer_spread(result: AnalysedShape, model: I2PMAE, checkpoint: object, mask_ratio: float,
                   tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Chamfer-L2 (S,) under random and under guided masks for every seed of :data:`SPREAD_SEEDS`."""
    def compute() -> tuple[np.ndarray, np.ndarray]:
        random, guided = chamfer_over_seeds(model, result.analysis, seeds=SPREAD_SEEDS, temperatures=[tau],
                                            mask_ratio=mask_ratio)
        return random.numpy(), guided[0].numpy()

    return _spread_cache.get_or_compute((result.key, checkpoint, mask_ratio, tau), compute)


def tau_sweep(result: AnalysedShape, model: I2PMAE | None, checkpoint: object,
              mask_ratio: float) -> figures.TauSweep:
    """Saliency kept (explorer's tokens) and, with a model, mean Chamfer-L2 (its tokens) per tau."""
    def compute() -> figures.TauSweep:
        taus = [10.0 ** t for t in SWEEP_LOG10_TAUS]
        stats = [cached_stats(result, mask_ratio, tau) for tau in taus]
        chamfer = random = None
        if model is not None:
            random, chamfer = chamfer_over_seeds(model, result.analysis, seeds=SWEEP_SEEDS, temperatures=taus,
                                                 mask_ratio=mask_ratio)
        return figures.TauSweep(
            log10_tau=np.array(SWEEP_LOG10_TAUS),
            kept_mean=np.array([s.kept_guided[0] for s in stats]),
            kept_std=np.array([s.kept_guided[1] for s in stats]),
            chamfer_mean=None if chamfer is None else chamfer.mean(1).numpy(),
            chamfer_std=None if chamfer is None else chamfer.std(1).numpy(),
            random_kept=stats[0].kept_random[0],
            random_chamfer=None if random is None else float(random.mean()),
        )

    return _sweep_cache.get_or_compute((result.key, checkpoint, mask_ratio), compute)


def clear_caches() -> None:
    """Forget every cached statistic (tests and benchmarks)."""
    for cache in (_sampler_cache, _spread_cache, _sweep_cache):
        cache.clear()
