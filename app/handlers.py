"""The page's event handlers as plain functions: file paths and numbers in, figures, text and dicts out.

Every user mistake (a bad file, an out-of-range value, a teacher that is not installed) surfaces as
``gr.Error`` with a readable message; the panels that need the shipped checkpoint report its absence
inside the panel instead of failing the whole page.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from i2pmae.bounded import BoundedRunError
from i2pmae.explore import EXPLORER_CONFIG, draw_mask_pair, mask_stats, paper_model
from i2pmae.io import ShapeError
from i2pmae.model import Reconstruction

from . import evaluation, evidence, figures, guidance, reconstruction, rendering
from .cache import LRUCache
from .paths import ASSETS_DIR, MANIFEST_PATH
from .resources import DEFAULT_TEACHER, InvalidInput, Unavailable, get_model, get_teacher
from .shapes import AnalysedShape, analyse, check_file, load_shape
from .support_set import support_set

LEVEL_CHOICES = tuple(sorted(EXPLORER_CONFIG.num_centers))  # tokens per level: 64 / 256 / 512
DEFAULT_LEVEL = min(EXPLORER_CONFIG.num_centers)
DEFAULT_MASK_RATIO = EXPLORER_CONFIG.mask_ratio
MIN_MASK_RATIO, MAX_MASK_RATIO = 0.05, 0.95
# tau in [1e-5, 10]; 0 -> tau = 1, the paper's. Token saliency spans ~0.01 (it sums to 1 over the 14 x 14
# patches of a view), so tau must reach ~1e-5 before softmax(s / tau) picks the most salient tokens greedily.
MIN_LOG10_TAU, MAX_LOG10_TAU = -5.0, 1.0
DEFAULT_LOG10_TAU = math.log10(EXPLORER_CONFIG.temperature)  # 0: the paper's tau = 1
# The page opens on strong guidance, where the difference shows; the paper's tau is one click away.
TAU_PRESETS = {"paper (τ = 1)": DEFAULT_LOG10_TAU, "strong guidance (τ = 10⁻³)": -3.0}
STRONG_PRESET = "strong guidance (τ = 10⁻³)"
DEFAULT_POINTS = EXPLORER_CONFIG.num_points
DEFAULT_WAYS = 5
DEFAULT_SHOTS = 5
MIN_SHOTS, MAX_SHOTS = evaluation.MIN_SHOTS, evaluation.MAX_SHOTS
RECONSTRUCTION_CACHE_SIZE = 64

_reconstructions: LRUCache[tuple[go.Figure, str, Reconstruction]] = LRUCache(RECONSTRUCTION_CACHE_SIZE)


class ExploreResult(NamedTuple):
    """Everything the analysis panels show, in the order of the page's outputs."""

    summary: str
    cloud: go.Figure
    mesh: str | None
    depth: go.Figure
    saliency_views: go.Figure
    token_saliency: go.Figure
    masks: go.Figure
    stats: str


class MaskResult(NamedTuple):
    """What changes when only the level, mask ratio, temperature or mask seed move."""

    token_saliency: go.Figure
    masks: go.Figure
    stats: str


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into ``gr.Error`` with the same message."""
    try:
        yield
    except (ShapeError, InvalidInput, Unavailable) as err:
        raise gr.Error(str(err), print_exception=False) from err


def level_index(tokens: int) -> int:
    """Index into the hierarchy (level 0 = finest) of the level with ``tokens`` tokens."""
    if int(tokens) not in EXPLORER_CONFIG.num_centers:
        raise InvalidInput(f"level must be one of {LEVEL_CHOICES} tokens, got {tokens}")
    return EXPLORER_CONFIG.num_centers.index(int(tokens))


def tau_from_log10(log10_tau: float) -> float:
    """The guided-masking temperature from the slider's log10 value, after a range check."""
    if not MIN_LOG10_TAU <= float(log10_tau) <= MAX_LOG10_TAU:
        raise InvalidInput(f"log10(tau) must be in [{MIN_LOG10_TAU}, {MAX_LOG10_TAU}], got {log10_tau}")
    return float(10.0 ** float(log10_tau))


def check_mask_ratio(mask_ratio: float) -> float:
    """The mask ratio as a float, if within the slider's range."""
    if not MIN_MASK_RATIO <= float(mask_ratio) <= MAX_MASK_RATIO:
        raise InvalidInput(f"mask ratio must be in [{MIN_MASK_RATIO}, {MAX_MASK_RATIO}], got {mask_ratio}")
    return float(mask_ratio)


def _summary(result: AnalysedShape) -> str:
    shape = result.shape
    source = (f"mesh with {shape.num_vertices:,} vertices and {shape.num_faces:,} faces" if shape.num_faces
              else f"point cloud with {shape.num_vertices:,} points")
    notes = "".join(f"\n- {note}" for note in shape.notes)  # what the loader changed, e.g. dropped points
    return (f"**{shape.name}**: {source} → {len(shape.points):,} points in the unit sphere. "
            f"Teacher: `{result.teacher}`; analysed in {result.seconds:.2f} s."
            + (f"\n\n**Loader notes:**{notes}" if notes else ""))


def _ratio_text(value: float, reference: float) -> str:
    """``value`` and, when defined, its ratio to ``reference``."""
    if reference > 0 and math.isfinite(value):
        return f"{value:.3g} (×{value / reference:.2f})"
    return f"{value:.3g}"


def stats_markdown(stats: dict[str, float], tau: float) -> str:
    """The numbers that make the difference between the two masks visible, as a Markdown table."""
    mean_all = stats["mean_saliency_all"]
    rows = [
        ("visible tokens", f"{stats['visible_random']:.0f} of {stats['tokens']:.0f}",
         f"{stats['visible_guided']:.0f} of {stats['tokens']:.0f}"),
        ("mean saliency of visible tokens (× mean of all)",
         _ratio_text(stats["mean_saliency_visible_random"], mean_all),
         _ratio_text(stats["mean_saliency_visible_guided"], mean_all)),
        ("10 most salient tokens kept visible", f"{stats['top_salient_visible_random']:.0f}",
         f"{stats['top_salient_visible_guided']:.0f}"),
    ]
    lines = [f"| | random | 2D-guided (τ = {tau:.3g}) |", "|---|---|---|"]
    lines += [f"| {name} | {r} | {g} |" for name, r, g in rows]
    overlap = stats["visible_overlap"]
    lines.append(f"\nOverlap of the two visible sets (intersection / union): **{overlap:.2f}**")
    return "\n".join(lines)


def mask_panels(result: AnalysedShape, level_tokens: int, mask_ratio: float, log10_tau: float,
                mask_seed: int) -> MaskResult:
    """Draw both masks for a cached analysis and build the mask-dependent panels."""
    level = level_index(level_tokens)
    tau = tau_from_log10(log10_tau)
    analysis = result.analysis
    masks = draw_mask_pair(paper_model(), analysis, mask_ratio=check_mask_ratio(mask_ratio), temperature=tau,
                           seed=int(mask_seed))
    points = analysis.points[0].cpu().numpy()  # (N, 3)
    centers = analysis.hierarchy.centers[level][0].cpu().numpy()  # (G_s, 3)
    saliency = analysis.token_saliency[level][0].cpu().numpy()  # (G_s,)
    stats = mask_stats(analysis, masks, level)
    random_mask, guided_mask = (m[level].cpu().numpy() for m in (masks.random, masks.guided))
    titles = [f"random: {stats['visible_random']:.0f} visible",
              f"2D-guided (τ = {tau:.3g}): {stats['visible_guided']:.0f} visible"]
    return MaskResult(
        token_saliency=figures.token_saliency_figure(points, centers, saliency,
                                                     title=f"token saliency, {len(centers)} tokens"),
        masks=figures.masks_figure(points, centers, [random_mask, guided_mask], titles, saliency),
        stats=stats_markdown(stats, tau),
    )


def explore(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
            teacher: str = DEFAULT_TEACHER, level_tokens: int = DEFAULT_LEVEL,
            mask_ratio: float = DEFAULT_MASK_RATIO, log10_tau: float = DEFAULT_LOG10_TAU, mask_seed: int = 0,
            progress: gr.Progress = gr.Progress()) -> ExploreResult:  # noqa: B008
    """Analyse one shape (cached) and build every analysis panel."""
    with user_errors():
        progress(0.1, desc="reading the shape and running the 2D teacher")
        result = analyse(shape_file, num_points, seed, teacher)
        progress(0.7, desc="drawing masks and figures")
        analysis = result.analysis
        depth = analysis.teacher_maps.views.depth[0].cpu().numpy()  # (V, H, W)
        saliency = analysis.teacher_maps.saliency[0].cpu().numpy()  # (V, h, w)
        masked = mask_panels(result, level_tokens, mask_ratio, log10_tau, mask_seed)
    return ExploreResult(
        summary=_summary(result),
        cloud=figures.cloud_figure(result.shape.points),
        mesh=result.shape.mesh_path,
        depth=figures.depth_views_figure(depth),
        saliency_views=figures.saliency_views_figure(depth, saliency),
        **masked._asdict(),
    )


def reconstruct(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
                teacher: str = DEFAULT_TEACHER, mask_ratio: float = DEFAULT_MASK_RATIO,
                log10_tau: float = DEFAULT_LOG10_TAU, mask_seed: int = 0) -> tuple[go.Figure, str]:
    """The reconstruction panel under both masks (cached), or a message saying what is missing."""
    try:
        checkpoint, model = get_model()
    except Unavailable as err:
        return figures.message_figure(str(err)), f"**{err}**"
    with user_errors():
        figure, text, _ = _reconstruction(analyse(shape_file, num_points, seed, teacher), checkpoint, model,
                                          mask_ratio, log10_tau, mask_seed)
    return figure, text


def _reconstruction(result: AnalysedShape, checkpoint, model, mask_ratio: float, log10_tau: float,
                    mask_seed: int) -> tuple[go.Figure, str, Reconstruction]:
    """The reconstruction panel's figure and text, and the reconstruction itself (cached)."""
    ratio, tau = check_mask_ratio(mask_ratio), tau_from_log10(log10_tau)
    key = (*result.key, ratio, tau, int(mask_seed), checkpoint)
    return _reconstructions.get_or_compute(key, lambda: reconstruction.reconstruct(
        model, result.analysis, mask_ratio=ratio, temperature=tau, seed=int(mask_seed)))


class SurfaceResult(NamedTuple):
    """The surfaces panel: each reconstruction's surface for the 3D viewers, the downloads, a sentence."""

    random: str | None
    guided: str | None
    downloads: list[str] | None
    text: str


def surface(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
            teacher: str = DEFAULT_TEACHER, mask_ratio: float = DEFAULT_MASK_RATIO,
            log10_tau: float = DEFAULT_LOG10_TAU, mask_seed: int = 0) -> SurfaceResult:
    """A surface from each reconstruction, as .glb for the viewers and .ply / .glb to download (the
    ``/surface`` endpoint); without a checkpoint, or when Open3D fails, a sentence saying why."""
    try:
        checkpoint, model = get_model()
    except Unavailable as err:
        return SurfaceResult(None, None, None, f"**{err}**")
    with user_errors():
        result = analyse(shape_file, num_points, seed, teacher)
        _, _, rec = _reconstruction(result, checkpoint, model, mask_ratio, log10_tau, mask_seed)
    key = ("surface", *result.key, mask_ratio, log10_tau, int(mask_seed), checkpoint)
    try:
        made = rendering.surfaces(rec, rendering.request_folder(key))
    except (BoundedRunError, ValueError) as err:
        return SurfaceResult(None, None, None, f"**No surface: {err}.**")
    views = {files.kind: files.view for files in made}
    downloads = [path for files in made for path in files.downloads]
    return SurfaceResult(views["random"], views["guided"], downloads,
                         rendering.surface_markdown(made))


class RenderResult(NamedTuple):
    """The Open3D stills: (path, caption) each, and a note when there are none."""

    stills: list[tuple[str, str]]
    note: str


def renders(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
            teacher: str = DEFAULT_TEACHER, level_tokens: int = DEFAULT_LEVEL,
            mask_ratio: float = DEFAULT_MASK_RATIO, log10_tau: float = DEFAULT_LOG10_TAU,
            mask_seed: int = 0) -> RenderResult:
    """Open3D renders of the shape, both masks and (with a checkpoint) both reconstructions (the
    ``/renders`` endpoint), or a note saying why Open3D could not render them."""
    with user_errors():
        result = analyse(shape_file, num_points, seed, teacher)
        level, ratio, tau = level_index(level_tokens), check_mask_ratio(mask_ratio), tau_from_log10(log10_tau)
        masks = draw_mask_pair(paper_model(), result.analysis, mask_ratio=ratio, temperature=tau,
                               seed=int(mask_seed))
        checkpoint, model, _ = _model_or_message()
        rec = None if model is None else _reconstruction(result, checkpoint, model, ratio, log10_tau,
                                                         mask_seed)[2]
    key = ("renders", *result.key, level, ratio, tau, int(mask_seed), checkpoint)
    return RenderResult(*rendering.stills(result.shape.name, result.analysis, masks, level, rec,
                                          rendering.request_folder(key)))


class GuidanceResult(NamedTuple):
    """The sampler panels: chance of staying visible on the tokens and by saliency rank, and the numbers."""

    visibility: go.Figure
    rank_chart: go.Figure
    numbers: str


def preset_log10_tau(preset: str) -> float:
    """The temperature slider's value (log10 tau) of a preset."""
    if preset not in TAU_PRESETS:
        raise gr.Error(f"unknown preset {preset!r}; choose one of {', '.join(TAU_PRESETS)}")
    return TAU_PRESETS[preset]


def guidance_panels(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
                    teacher: str = DEFAULT_TEACHER, level_tokens: int = DEFAULT_LEVEL,
                    mask_ratio: float = DEFAULT_MASK_RATIO,
                    log10_tau: float = DEFAULT_LOG10_TAU) -> GuidanceResult:
    """What the sampler really does for this shape, ratio and tau (the ``/guidance`` endpoint)."""
    with user_errors():
        result = analyse(shape_file, num_points, seed, teacher)
        panels = guidance.guidance_panels(result, level_index(level_tokens), check_mask_ratio(mask_ratio),
                                          tau_from_log10(log10_tau))
    return GuidanceResult(panels.visibility, panels.rank_chart, panels.numbers)


def _model_or_message() -> tuple[object, object, go.Figure | None]:
    """(checkpoint, model, None), or (None, None, a figure saying what is missing)."""
    try:
        checkpoint, model = get_model()
    except Unavailable as err:
        return None, None, figures.message_figure(str(err))
    return checkpoint, model, None


def chamfer_boxes(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
                  teacher: str = DEFAULT_TEACHER, mask_ratio: float = DEFAULT_MASK_RATIO,
                  log10_tau: float = DEFAULT_LOG10_TAU,
                  progress: gr.Progress = gr.Progress()) -> go.Figure:  # noqa: B008
    """Box plots of the Chamfer-L2 over many mask seeds under each mask (the ``/chamfer_spread`` endpoint)."""
    with user_errors():
        result = analyse(shape_file, num_points, seed, teacher)
        ratio, tau = check_mask_ratio(mask_ratio), tau_from_log10(log10_tau)
    checkpoint, model, missing = _model_or_message()
    if missing is not None:
        return missing
    progress(0.1, desc=f"reconstructing under {2 * len(guidance.SPREAD_SEEDS)} masks")
    random, guided = guidance.chamfer_spread(result, model, checkpoint, ratio, tau)
    title = f"Chamfer-L2 over {len(random)} mask seeds (mask ratio {ratio:g})"
    return figures.chamfer_box_figure(random, guided, guided_name=f"2D-guided (τ = {tau:.3g})", title=title)


def tau_sweep(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
              teacher: str = DEFAULT_TEACHER, mask_ratio: float = DEFAULT_MASK_RATIO,
              log10_tau: float = DEFAULT_LOG10_TAU,
              progress: gr.Progress = gr.Progress()) -> go.Figure:  # noqa: B008
    """Saliency kept and mean Chamfer-L2 against log10 tau, the paper's and the current tau marked."""
    with user_errors():
        result = analyse(shape_file, num_points, seed, teacher)
        ratio, current = check_mask_ratio(mask_ratio), math.log10(tau_from_log10(log10_tau))
    checkpoint, model, _ = _model_or_message()  # without a checkpoint: the saliency curve only
    progress(0.1, desc=f"sweeping {len(guidance.SWEEP_LOG10_TAUS)} temperatures")
    sweep = guidance.tau_sweep(result, model, checkpoint, ratio)
    return figures.tau_sweep_figure(sweep, paper_log10_tau=math.log10(guidance.PAPER_TAU),
                                    current_log10_tau=current)


def remask(shape_file: str | None, num_points: int = DEFAULT_POINTS, seed: int = 0,
           teacher: str = DEFAULT_TEACHER, level_tokens: int = DEFAULT_LEVEL,
           mask_ratio: float = DEFAULT_MASK_RATIO, log10_tau: float = DEFAULT_LOG10_TAU,
           mask_seed: int = 0) -> MaskResult:
    """Redraw the masks after a slider move; the analysis comes from the cache."""
    with user_errors():
        return mask_panels(analyse(shape_file, num_points, seed, teacher), level_tokens, mask_ratio,
                           log10_tau, mask_seed)


# ----------------------------------------------------------------------------------- gallery, teachers
@dataclass(frozen=True)
class Example:
    """A bundled shape of the gallery."""

    path: str
    caption: str
    thumbnail: np.ndarray  # (H, W, 3) uint8


@functools.cache
def examples() -> tuple[Example, ...]:
    """The gallery: shapes listed in ``assets/manifest.json``, each with a rendered thumbnail."""
    entries = json.loads(MANIFEST_PATH.read_text())
    found = []
    for entry in entries:
        path = ASSETS_DIR / entry["file"]
        shape = load_shape(path, DEFAULT_POINTS, 0)
        caption = entry["name"].split(" (")[0]  # "Chair 0001 (ModelNet10)" -> "Chair 0001"
        found.append(Example(str(path), caption, figures.thumbnail(shape.points)))
    return tuple(found)


def pick_example(evt: gr.SelectData) -> str:
    """Gallery click -> the path of the chosen bundled shape."""
    return examples()[evt.index].path


def teacher_note(status: dict[str, str]) -> str:
    """One line under the teacher selector: which teachers cannot be used here, and the gist of why."""
    unavailable = [f"{name} ({reason.split(';')[0]})" for name, reason in status.items() if reason]
    return "Not available here: " + "; ".join(unavailable) if unavailable else "All teachers are available."


def cleared() -> tuple:
    """Blank panels after the shape is removed: explore, reconstruction, classification (and novelty),
    guidance, spread, surfaces, renders."""
    blank = figures.message_figure("no shape yet")
    result = ExploreResult("Pick a shape from the gallery or upload one.", blank, None, blank, blank, blank,
                           blank, "")
    return (*result, blank, "", None, "", None, *GuidanceResult(blank, blank, ""), blank, blank,
            *SurfaceResult(None, None, None, ""), *RenderResult([], ""))


# ----------------------------------------------------------------------------------- classification
def classify(shape_file: str | None, progress: gr.Progress = gr.Progress()) -> dict[str, float]:  # noqa: B008
    """ModelNet10 class -> confidence for one shape file (the ``/classify`` endpoint)."""
    progress(0.2, desc="features of the shape (first call: fitting the linear probe)")
    with user_errors():
        return evaluation.classify(check_file(shape_file))


def novelty(shape_file: str | None) -> dict:
    """How unlike the ModelNet10 training shapes this shape is (the ``/novelty`` endpoint):
    ``{"score": float, "known": bool, "threshold": float}``, higher score = more novel."""
    with user_errors():
        return evaluation.novelty(check_file(shape_file))


def novelty_markdown(result: dict, num_classes: int) -> str:
    """One sentence above the confidences: whether the classifier's classes apply to this shape at all."""
    numbers = f"novelty score {result['score']:.3g}, threshold {result['threshold']:.3g}"
    if result["known"]:
        return f"Looks like the ModelNet10 training shapes ({numbers})."
    return (f"**Not one of the {num_classes} classes this classifier knows** ({numbers}): its features are "
            "unlike the ModelNet10 training shapes, so read the confidences below as the nearest known "
            "classes, not as an answer.")


def classify_panel(shape_file: str | None) -> tuple[dict[str, float] | None, str, dict | None]:
    """The classification panel: novelty verdict, confidences, or what is missing to compute them."""
    try:
        with user_errors():
            confidences, verdict = evaluation.classify_with_novelty(check_file(shape_file))
    except gr.Error as err:
        return None, f"**{err.message}**", None
    source = f"Linear probe on frozen features: {evaluation.probe_description()}."
    return confidences, f"{novelty_markdown(verdict, len(confidences))}\n\n{source}", verdict


# ----------------------------------------------------------------------------------- few-shot
def support_classes() -> list[str]:
    """Class names of the bundled support shapes."""
    return support_set().classes


def few_shot(classes: list[str] | None, shots: int, seed: int, uploads: list[str] | None,
             shape_file: str | None, progress: gr.Progress = gr.Progress()  # noqa: B008
             ) -> tuple[str, dict[str, float] | None, go.Figure]:
    """Run one N-way K-shot episode (the ``/few_shot`` endpoint): summary, prediction, embedding plot."""
    progress(0.2, desc="features of the support shapes (first call only)")
    with user_errors():
        current = check_file(shape_file) if shape_file else None
        result = evaluation.run_few_shot(classes or [], int(shots), int(seed), uploads or [], current)
    plot = figures.embedding_figure(result.coords, result.labels, result.is_query, result.classes,
                                    current=result.current)
    return few_shot_markdown(result, int(shots)), result.prediction, plot


def few_shot_markdown(result: evaluation.FewShotResult, shots: int) -> str:
    """The episode's setting, its query accuracy and the 10-episode protocol number."""
    lines = [f"**{len(result.classes)}-way {shots}-shot** over: {', '.join(result.classes)}."]
    if result.query_accuracy is not None:
        count = int(result.is_query.sum())
        lines.append(f"Accuracy on this episode's {count} queries: **{100 * result.query_accuracy:.1f} %**.")
    if result.protocol is not None:
        p = result.protocol
        lines.append(f"Protocol ({p['folds']} episodes, {p['queries']} queries per class, linear SVM): "
                     f"**{100 * p['mean']:.1f} ± {100 * p['std']:.1f} %**.")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------------- evidence
def evidence_panel() -> evidence.EvidencePanel:
    """The Evidence panel on page load: figure, sentences and table of the ablation record, read afresh (the
    ablation rewrites it as runs finish), or a note saying why there is none."""
    return evidence.panel(evidence.load())


def evidence_record() -> dict:
    """The ``/evidence`` endpoint: the ablation record with "sentences" {"shown", "suggested"} (and a
    "note" when intervals or differences are missing), or only {"note": ...} when there is no record."""
    return evidence.answer(evidence.load())


def warm_up() -> None:
    """Load what the first requests need (on page load): the teacher, the explorer's model and, with a
    checkpoint, the model, the support-shape features and the ModelNet10 probe."""
    get_teacher(DEFAULT_TEACHER)
    paper_model()
    with contextlib.suppress(Unavailable):
        evaluation.modelnet_probe()
        evaluation.support_features()
